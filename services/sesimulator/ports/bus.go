// Package ports adapts the outside world to the se-simulator's use cases:
// bus handlers that decode CloudEvents and call the app, and the HTTP API
// for operators and test harnesses.
package ports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// BusHandlers are the se-simulator's bus consumers.
type BusHandlers struct {
	// App runs the use cases.
	App *app.App
	// Schemas validates event data when the event type has a schema.
	Schemas *bus.Schemas
	// Log receives the schema warnings (JSON locations only); nil means
	// slog.Default().
	Log *slog.Logger
}

func (h BusHandlers) logger() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// Register attaches the handlers to their consumers.
func (h BusHandlers) Register(r *bus.Router) {
	r.Handle(topology.SESimulatorRegistry, h.SERecord)
	r.Handle(topology.SESimulatorExecute, h.Execute)
}

// decode checks a delivery's envelope and unmarshals its data into v. Every
// error is permanent: a message that does not decode never will.
func (h BusHandlers) decode(d *bus.Delivery, wantType string, v any) error {
	if d.DecodeErr != nil {
		return bus.Permanent(fmt.Errorf("not a valid CloudEvent: %v", d.DecodeErr))
	}
	if err := d.Event.Validate(); err != nil {
		return bus.Permanent(fmt.Errorf("invalid CloudEvent attributes: %v", err))
	}
	if t := d.Event.Type(); t != wantType {
		return bus.Permanent(fmt.Errorf("unexpected ce-type %q on %s: want %s", t, d.Subject, wantType))
	}
	data := d.Event.Data()
	// Schema failures name JSON locations only: the reason travels in a
	// dead-letter header and must not carry data values.
	if err := h.Schemas.CheckEvent(d.Event, h.logger()); err != nil {
		return bus.Permanent(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return bus.Permanent(fmt.Errorf("%s data does not decode: %v", wantType, err))
	}
	return nil
}

// SERecord handles tsm.reg.se.<seId>: the SE gets a card if it has none.
func (h BusHandlers) SERecord(ctx context.Context, d *bus.Delivery) error {
	var rec events.SERecord
	if err := h.decode(d, events.TypeRegistrySE, &rec); err != nil {
		return err
	}
	if token := d.Token(3); rec.SEID != token {
		return bus.Permanent(fmt.Errorf("record of SE %q published on the subject of SE %q", rec.SEID, token))
	}
	_, err := h.App.Enrol(ctx, app.EnrolCommand{EventID: d.Event.ID(), Record: rec})
	if errors.Is(err, domain.ErrRejectedRecord) || errors.Is(err, app.ErrInvalid) {
		return bus.Permanent(err)
	}
	return err
}

// Execute handles tsm.se.<seId>.execute: the script runs on the card and
// the result is emitted on tsm.se.<seId>.executed.
func (h BusHandlers) Execute(ctx context.Context, d *bus.Delivery) error {
	var ex events.SEExecute
	if err := h.decode(d, events.TypeSEExecute, &ex); err != nil {
		return err
	}
	token := d.Token(2)
	if !topology.ValidSEID(token) {
		return bus.Permanent(fmt.Errorf("subject %s does not carry an SE id", d.Subject))
	}
	if ex.SEID != token {
		return bus.Permanent(fmt.Errorf("execute event for SE %q published on the subject of SE %q", ex.SEID, token))
	}
	if ex.ConversationID == "" {
		return bus.Permanent(fmt.Errorf("execute event for SE %s has no conversationId", ex.SEID))
	}
	storedAt := d.Timestamp
	if storedAt.IsZero() {
		storedAt = d.Event.Time()
	}
	if storedAt.IsZero() {
		storedAt = time.Now()
	}
	err := h.App.Execute(ctx, app.ExecuteCommand{
		EventID:         d.Event.ID(),
		StoredAt:        storedAt,
		CorrelationID:   bus.StringExtension(d.Event, bus.ExtCorrelationID),
		Request:         ex.Request,
		ConversationID:  ex.ConversationID,
		ScriptID:        ex.ScriptID,
		SEID:            ex.SEID,
		Commands:        ex.Commands,
		ContinueOnError: ex.ContinueOnError,
	})
	if errors.Is(err, app.ErrInvalid) {
		return bus.Permanent(err)
	}
	return err
}
