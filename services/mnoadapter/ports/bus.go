// Package ports connects the MNO adapter's use cases to the outside: the bus
// handlers of its two consumers, its HTTP route and its metrics.
package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/mnoadapter/app"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
)

// Handlers are the bus handlers of one adapter instance.
type Handlers struct {
	MNOID   string
	App     *app.App
	Schemas *bus.Schemas
	Log     *slog.Logger
	Metrics *Metrics
}

// Deliver handles events.MNODeliver (consumer topology.MNOAdapterDeliver).
func (h *Handlers) Deliver(ctx context.Context, d *bus.Delivery) error {
	var req events.MNODeliver
	if err := d.DecodeAs(events.TypeMNODeliver, &req); err != nil {
		return bus.Permanent(err)
	}
	// tsm.mno.<mnoId>.<seId>.deliver
	if tok := d.Token(2); tok != h.MNOID {
		return bus.Permanent(fmt.Errorf("subject %s is for MNO %s, this adapter serves %s", d.Subject, tok, h.MNOID))
	}
	if !topology.ValidSEID(req.SEID) || d.Token(3) != req.SEID {
		return bus.Permanent(fmt.Errorf("subject %s names SE %s but the event is for SE %q", d.Subject, d.Token(3), req.SEID))
	}
	if req.ScriptID == "" {
		return bus.Permanent(errors.New("scriptId is empty"))
	}
	log := h.Log.With("seId", req.SEID, "conversationId", req.ConversationID, "scriptId", req.ScriptID)
	stepErr := h.Schemas.CheckEvent(d.Event, log)
	corr := bus.StringExtension(d.Event, bus.ExtCorrelationID)
	if corr == "" {
		corr = req.Request.RequestID
	}
	msg := app.Message{Inbox: topology.MNOAdapterDeliver(h.MNOID).Name, EventID: d.Event.ID(), CorrelationID: corr}
	res, err := h.App.Deliver(ctx, msg, req, d.Timestamp, stepErr)
	if err != nil {
		return err
	}
	h.Metrics.delivered(res)
	switch res.Outcome {
	case domain.OutcomeDelivered:
		log.Info("script delivered to the SE", "commands", len(req.Commands), "latency", res.Latency)
	case domain.OutcomeDuplicate:
		log.Info("duplicate deliver ignored", "eventId", d.Event.ID())
	default:
		log.Info("script not delivered", "outcome", res.Outcome, "code", res.Error.Code)
	}
	return nil
}

// Registry handles events.MNORecord (consumer topology.MNOAdapterRegistry).
// A record that cannot be read is dead-lettered: nobody waits for an answer.
func (h *Handlers) Registry(ctx context.Context, d *bus.Delivery) error {
	var rec events.MNORecord
	if err := d.DecodeAs(events.TypeRegistryMNO, &rec); err != nil {
		return bus.Permanent(err)
	}
	if err := h.Schemas.CheckEvent(d.Event, h.Log); err != nil {
		return bus.Permanent(err)
	}
	msg := app.Message{Inbox: topology.MNOAdapterRegistry(h.MNOID).Name, EventID: d.Event.ID()}
	res, err := h.App.ApplyMNORecord(ctx, msg, d.StreamSeq, rec)
	if errors.Is(err, app.ErrOtherMNO) {
		return bus.Permanent(err)
	}
	if err != nil {
		return err
	}
	h.Log.Info("MNO record", "outcome", res.Outcome, "latencyMs", rec.LatencyMs,
		"maxApdusPerScript", rec.MaxAPDUsPerScript, "otaCarrier", rec.OTACarrier)
	return nil
}
