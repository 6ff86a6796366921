// Package ports connects the script router's use cases to the outside: the
// bus handlers of its three consumers and its HTTP routes.
package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/app"
)

// Handlers are the bus handlers of the script router.
type Handlers struct {
	App     *app.App
	Schemas *bus.Schemas
	Log     *slog.Logger
	Metrics *Metrics
}

// Requested handles events.ScriptRequested (consumer topology.ScriptRouterRequested).
func (h *Handlers) Requested(ctx context.Context, d *bus.Delivery) error {
	var req events.ScriptRequested
	if err := d.DecodeAs(events.TypeScriptRequested, &req); err != nil {
		return bus.Permanent(err)
	}
	if err := checkIDs(d, req.SEID, req.ScriptID); err != nil {
		return bus.Permanent(err)
	}
	log := h.Log.With("seId", req.SEID, "conversationId", req.ConversationID, "scriptId", req.ScriptID,
		"spId", req.Request.SPID)
	stepErr := h.Schemas.CheckEvent(d.Event, log)
	res, err := h.App.RequestScript(ctx, message(topology.ScriptRouterRequested, d, req.Request.RequestID), req, stepErr)
	if err != nil {
		return err
	}
	h.Metrics.record(res)
	log = log.With("commands", res.Commands)
	switch res.Outcome {
	case app.OutcomeRouted:
		if res.Phase != "" {
			log.Info("script routed: opening the central TSM's secure channel", "mno", req.MNO, "phase", res.Phase,
				"procedureStep", procedureStep(req))
		} else {
			log.Info("script routed", "mno", req.MNO)
		}
	case app.OutcomeRejected:
		log.Info("script rejected", "status", res.Status, "code", res.Error.Code)
	default:
		log.Info("duplicate script request ignored", "eventId", d.Event.ID())
	}
	return nil
}

// Executed handles events.SEExecuted (consumer topology.ScriptRouterExecuted).
func (h *Handlers) Executed(ctx context.Context, d *bus.Delivery) error {
	var ex events.SEExecuted
	if err := d.DecodeAs(events.TypeSEExecuted, &ex); err != nil {
		return bus.Permanent(err)
	}
	if err := checkIDs(d, ex.SEID, ex.ScriptID); err != nil {
		return bus.Permanent(err)
	}
	log := h.Log.With("seId", ex.SEID, "conversationId", ex.ConversationID, "scriptId", ex.ScriptID)
	stepErr := h.Schemas.CheckEvent(d.Event, log)
	res, err := h.App.CompleteScript(ctx, message(topology.ScriptRouterExecuted, d, ex.Request.RequestID), ex, stepErr)
	if errors.Is(err, app.ErrScriptNotInFlight) || errors.Is(err, app.ErrSEMismatch) {
		return bus.Permanent(err)
	}
	if err != nil {
		return err
	}
	h.Metrics.record(res)
	switch res.Outcome {
	case app.OutcomeCompleted:
		attrs := []any{"status", res.Status, "commands", res.Commands, "responses", len(ex.Responses)}
		if res.Error != nil {
			attrs = append(attrs, "code", res.Error.Code)
		}
		if res.Phase != "" {
			attrs = append(attrs, "phase", res.Phase)
		}
		if res.TemporaryKeys != 0 {
			attrs = append(attrs, "temporaryKeysKvn", res.TemporaryKeys)
		}
		if res.KeysRotated != 0 {
			attrs = append(attrs, "keysRotated", res.KeysRotated)
		}
		log.Info("script completed", attrs...)
	case app.OutcomeRouted:
		log.Info("secure channel opened: script sent", "phase", res.Phase, "commands", res.Commands)
	default:
		log.Info("duplicate SE result ignored", "eventId", d.Event.ID())
	}
	return nil
}

func procedureStep(req events.ScriptRequested) string {
	if req.Procedure == nil {
		return ""
	}
	return req.Procedure.Step
}

// Registry handles the registry records the router projects (consumer
// topology.ScriptRouterRegistry): SPs (tsm.reg.sp.<spId>), catalog entries
// (tsm.reg.svc.<number>.<version>) and SEs (tsm.reg.se.<seId>).
func (h *Handlers) Registry(ctx context.Context, d *bus.Delivery) error {
	var rec any
	var key string
	switch kind := d.Token(2); kind {
	case "sp":
		var r events.SPRecord
		if err := h.decodeRecord(d, events.TypeRegistrySP, &r); err != nil {
			return err
		}
		if r.SPID == "" || r.SPID != d.Token(3) {
			return bus.Permanent(fmt.Errorf("SP record %q published on %s", r.SPID, d.Subject))
		}
		rec, key = r, r.SPID
	case "svc":
		var r events.ServiceRecord
		if err := h.decodeRecord(d, events.TypeRegistryService, &r); err != nil {
			return err
		}
		if r.SPID == "" || r.Number != d.Token(3) || r.Version != d.Token(4) {
			return bus.Permanent(fmt.Errorf("service record %s.%s of SP %q published on %s", r.Number, r.Version, r.SPID, d.Subject))
		}
		rec, key = r, r.Number+"."+r.Version
	case "se":
		var r events.SERecord
		if err := h.decodeRecord(d, events.TypeRegistrySE, &r); err != nil {
			return err
		}
		if r.SEID == "" || r.SEID != d.Token(3) {
			return bus.Permanent(fmt.Errorf("SE record %q published on %s", r.SEID, d.Subject))
		}
		rec, key = r, r.SEID
	default:
		return bus.Permanent(fmt.Errorf("subject %s is not an SP, service or SE record", d.Subject))
	}
	applied, err := h.App.ApplyRegistry(ctx, app.Message{Inbox: topology.ScriptRouterRegistry.Name, EventID: d.Event.ID()},
		d.StreamSeq, rec)
	if errors.Is(err, app.ErrInvalidRecord) {
		return bus.Permanent(err)
	}
	if err != nil {
		return err
	}
	if applied && d.Token(2) != "se" {
		h.Log.Debug("registry record projected", "kind", d.Token(2), "key", key, "seq", d.StreamSeq)
	}
	return nil
}

// decodeRecord decodes a registry record; every failure is permanent. Schema
// failures name JSON locations only.
func (h *Handlers) decodeRecord(d *bus.Delivery, ceType string, v any) error {
	if err := d.DecodeAs(ceType, v); err != nil {
		return bus.Permanent(err)
	}
	if err := h.Schemas.CheckEvent(d.Event, h.Log); err != nil {
		return bus.Permanent(err)
	}
	return nil
}

// checkIDs makes sure the payload's SE is the one of the subject (per-SE
// ordering relies on it) and that the script can be keyed.
func checkIDs(d *bus.Delivery, seID, scriptID string) error {
	if !topology.ValidSEID(seID) {
		return fmt.Errorf("seId %q is not an uppercase hex CIN", seID)
	}
	if tok := d.Token(2); tok != seID {
		return fmt.Errorf("subject %s names SE %s but the event is for SE %s", d.Subject, tok, seID)
	}
	if scriptID == "" {
		return errors.New("scriptId is empty")
	}
	return nil
}

// message builds the app's view of a delivery. The correlation id falls back
// to the request id, which is what it is by definition.
func message(c topology.Consumer, d *bus.Delivery, requestID string) app.Message {
	corr := bus.StringExtension(d.Event, bus.ExtCorrelationID)
	if corr == "" {
		corr = requestID
	}
	return app.Message{Inbox: c.Name, EventID: d.Event.ID(), CorrelationID: corr}
}

// Metrics are the script router's own series.
type Metrics struct {
	scripts *prometheus.CounterVec
}

// NewMetrics registers the series on reg; inFlight reports the scripts in flight.
func NewMetrics(reg prometheus.Registerer, inFlight func() float64) *Metrics {
	m := &Metrics{scripts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_scriptrouter_scripts_total",
		Help: "Scripts handled, by outcome (routed, rejected, completed, duplicate) and status of the response."},
		[]string{"outcome", "status"})}
	reg.MustRegister(m.scripts, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_scriptrouter_scripts_in_flight",
		Help: "Scripts routed to an MNO adapter and waiting for the SE's result."}, inFlight))
	return m
}

func (m *Metrics) record(res app.Result) {
	if m == nil {
		return
	}
	m.scripts.WithLabelValues(res.Outcome, string(res.Status)).Inc()
}
