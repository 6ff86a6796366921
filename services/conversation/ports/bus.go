// Package ports connects the conversation use cases to the outside: bus
// handlers for the three consumers, the expiry sweeper, and the operators'
// HTTP API.
package ports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/spport"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/conversation/adapters"
	"github.com/tsmhub/tsmhub/services/conversation/app"
	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// Handlers are the bus handlers of the conversation service.
type Handlers struct {
	App     *app.Service
	Store   *bus.Store
	Schemas *bus.Schemas
	// Requests is the SP request port of the ConversationRequests consumer.
	Requests *spport.Port
	Log      *slog.Logger
	Metrics  *Metrics
	// NewProcedureID makes procedure ids (pr-<id>).
	NewProcedureID func() string
}

// Register attaches the handlers to their consumers.
func (h *Handlers) Register(r *bus.Router) {
	r.Handle(topology.ConversationBegins, h.Begin)
	r.Handle(topology.ConversationRequests, h.Request)
	r.Handle(topology.ConversationScriptCompleted, h.ScriptCompleted)
	r.Handle(topology.ConversationProcedures, h.Procedure)
}

// decodeInternal reads an internal event of type want into v. Anything that
// cannot be read is a permanent error: the message is dead-lettered with the
// reason, never retried and never dropped.
func (h *Handlers) decodeInternal(d *bus.Delivery, want string, v any) error {
	var raw json.RawMessage
	if err := d.DecodeAs(want, &raw); err != nil {
		return bus.Permanent(err)
	}
	// Schema failures name JSON locations only: the reason travels in a
	// dead-letter header and must not carry data values.
	if err := h.Schemas.CheckEvent(d.Event, h.Log); err != nil {
		return bus.Permanent(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return bus.Permanent(fmt.Errorf("%s data: %w", want, err))
	}
	return nil
}

// validRef reports whether a request reference names an SP request that can
// be answered.
func validRef(ref events.RequestRef) bool {
	return topology.SPIDPattern.MatchString(ref.SPID) && ref.RequestID != "" && topology.ValidToken(ref.Op)
}

// operatorRef reports whether a request reference names an operator
// procedure (POST /v1/ses/{seId}/status or /audit): no SP, an operation id.
func operatorRef(ref events.RequestRef) bool {
	return ref.SPID == "" && ref.RequestID != "" && topology.ValidToken(ref.RequestID) &&
		(ref.Op == events.OpSEStatus || ref.Op == events.OpAudit)
}

// finish turns a use case's error into the handler's result and, once it
// committed, logs and counts what it did.
func (h *Handlers) finish(err error, r app.Report) error {
	if err != nil {
		if errors.Is(err, app.ErrUnprocessable) {
			return bus.Permanent(err)
		}
		return err
	}
	observe(h.Log, h.Metrics, r)
	return nil
}

// Begin opens (or queues, or refuses) a conversation the registry resolved.
// Idempotent twice over: by event id (redelivery, re-publish) and by the SP's
// request key (the SP re-sent its begin with the same ce-id: the stored
// response is sent again; while it waits for the SE nothing is sent).
func (h *Handlers) Begin(_ context.Context, d *bus.Delivery) error {
	var ev events.ConversationBegin
	if err := h.decodeInternal(d, events.TypeConvBegin, &ev); err != nil {
		return err
	}
	if !validRef(ev.Request) || ev.Request.Op != topology.OpBeginConversation {
		return bus.Permanent(fmt.Errorf("begin event %s names no answerable begin-conversation request (spId %q, op %q)",
			d.Event.ID(), ev.Request.SPID, ev.Request.Op))
	}
	b := beginRequest(ev)
	seToken := d.Token(2)
	var report app.Report
	err := h.Store.Update(func(tx *bus.Tx) error {
		report = app.Report{}
		if first, err := acceptForwarded(tx, topology.ConversationBegins.Name, d.Event.ID(), ev.Request); err != nil || !first {
			return err
		}
		if !topology.ValidSEID(b.SEID) || b.SEID != seToken {
			// The SE must be the one whose subject token ordered this event.
			report.Refused = append(report.Refused, app.Refusal{Op: ev.Request.Op, Code: contract.CodeInternalError})
			return spport.ReplyError(tx, ev.Request, "", contract.Errorf(contract.CodeInternalError,
				"the SE of this request could not be resolved consistently; retry later"))
		}
		var err error
		report, err = h.App.Begin(adapters.NewUnitOfWork(tx), b)
		return err
	})
	if err == nil && b.SEID != seToken {
		h.Log.Error("begin event names another SE than its subject", "subject", d.Subject, "seId", b.SEID, "eventId", d.Event.ID())
	}
	return h.finish(err, report)
}

// beginRequest maps the registry's event to the domain's begin.
func beginRequest(ev events.ConversationBegin) domain.BeginRequest {
	return domain.BeginRequest{
		Request: ev.Request, SEID: ev.SE.SEID, MNOID: ev.MNO.MNOID, OTACarrier: ev.MNO.OTACarrier,
		MNOMaxAPDUsPerScript: ev.MNO.MaxAPDUsPerScript, TargetAID: ev.Params.TargetAID,
		RequestedOperation: ev.Params.RequestedOperation, ServiceID: ev.Params.ServiceID,
		ServiceQualifier: ev.Params.ServiceQualifier, ScriptFormat: ev.Params.ScriptFormat, ValidUntil: ev.ValidUntil,
	}
}

// conversationSubject is the ce-subject of a response to send-script or
// end-conversation: the conversation concerned.
func conversationSubject(req *spport.Request) string {
	var body struct {
		ConversationID string `json:"conversationId"`
	}
	_ = req.Decode(&body)
	return body.ConversationID
}

// Request handles the SP's send-script and end-conversation requests. The
// port makes them idempotent by spId/ce-id and answers malformed or expired
// ones; a re-sent send-script whose script still runs is absorbed.
func (h *Handlers) Request(ctx context.Context, d *bus.Delivery) error {
	var report app.Report
	err := h.Requests.Handle(ctx, d, conversationSubject, func(_ context.Context, tx *bus.Tx, req *spport.Request) error {
		report = app.Report{}
		uow := adapters.NewUnitOfWork(tx)
		var err error
		switch req.Ref.Op {
		case topology.OpSendScript:
			var body contract.SendScriptRequest
			if err := req.Decode(&body); err != nil {
				return spport.ReplyError(tx, req.Ref, "", contract.Errorf(contract.CodeInvalidArgument,
					"send-script body: %v", err))
			}
			report, err = h.App.SendScript(uow, req.Ref, app.SendScript{
				ConversationID: body.ConversationID, Commands: body.Commands, Securing: body.Securing,
				ContinueOnError: body.ContinueOnError, ValidUntil: req.ValidUntil,
			})
		case topology.OpEndConversation:
			var body contract.EndConversationRequest
			if err := req.Decode(&body); err != nil {
				return spport.ReplyError(tx, req.Ref, "", contract.Errorf(contract.CodeInvalidArgument,
					"end-conversation body: %v", err))
			}
			report, err = h.App.End(uow, req.Ref, body.ConversationID, body.Outcome)
		default:
			return spport.ReplyError(tx, req.Ref, "", contract.Errorf(contract.CodeInvalidArgument,
				"operation %s is not handled here", req.Ref.Op))
		}
		return err
	})
	return h.finish(err, report)
}

// ScriptCompleted answers the SP's send-script with the script's response and
// frees the conversation for its next script. Idempotent by event id, and by
// script: a second completion of an answered script changes nothing.
func (h *Handlers) ScriptCompleted(_ context.Context, d *bus.Delivery) error {
	var ev events.ScriptCompleted
	if err := h.decodeInternal(d, events.TypeScriptCompleted, &ev); err != nil {
		return err
	}
	if !(validRef(ev.Request) || operatorRef(ev.Request)) || ev.ConversationID == "" || ev.ScriptID == "" {
		return bus.Permanent(fmt.Errorf("script completion %s names no conversation, script or answerable request", d.Event.ID()))
	}
	var report app.Report
	err := h.Store.Update(func(tx *bus.Tx) error {
		report = app.Report{}
		fresh, err := tx.MarkProcessed(topology.ConversationScriptCompleted.Name, d.Event.ID())
		if err != nil || !fresh {
			return err
		}
		report, err = h.App.CompleteScript(adapters.NewUnitOfWork(tx), app.ScriptDone{
			Request: ev.Request, ConversationID: ev.ConversationID, ScriptID: ev.ScriptID, SEID: ev.SEID, Response: ev.Response,
			TemporaryKeys: ev.TemporaryKeys, KeysRotated: ev.KeysRotated,
		})
		return err
	})
	return h.finish(err, report)
}

// Procedure runs (or queues, or refuses) a procedure the registry found
// eligible. Idempotent by event id and by request key: an SP request re-sent
// with the same ce-id gets its stored response again (nothing while the
// procedure runs), and an operator operation id runs once.
func (h *Handlers) Procedure(_ context.Context, d *bus.Delivery) error {
	var ev events.ProcedureRequested
	if err := h.decodeInternal(d, events.TypeProcedureRequested, &ev); err != nil {
		return err
	}
	operator := operatorRef(ev.Request)
	if !operator && !validRef(ev.Request) {
		return bus.Permanent(fmt.Errorf("procedure event %s names no answerable request (spId %q, op %q)",
			d.Event.ID(), ev.Request.SPID, ev.Request.Op))
	}
	seToken := d.Token(2)
	p := app.NewProcedure(h.NewProcedureID(), ev)
	var report app.Report
	err := h.Store.Update(func(tx *bus.Tx) error {
		report = app.Report{}
		if first, err := acceptForwarded(tx, topology.ConversationProcedures.Name, d.Event.ID(), ev.Request); err != nil || !first {
			return err
		}
		if !topology.ValidSEID(p.SEID) || p.SEID != seToken {
			if operator {
				return bus.Permanent(fmt.Errorf("procedure event %s names SE %q on subject %s", d.Event.ID(), p.SEID, d.Subject))
			}
			report.Refused = append(report.Refused, app.Refusal{Op: ev.Request.Op, Code: contract.CodeInternalError})
			return spport.ReplyError(tx, ev.Request, "", contract.Errorf(contract.CodeInternalError,
				"the SE of this request could not be resolved consistently; retry later"))
		}
		copyP := *p
		var err error
		report, err = h.App.RequestProcedure(adapters.NewUnitOfWork(tx), &copyP)
		return err
	})
	return h.finish(err, report)
}

// acceptForwarded is the first part of every forwarded SP request's
// transaction: an event already processed changes nothing, and a request
// already answered (the same spId/ce-id forwarded again) gets its stored
// responses again. first is true when the use case should run.
func acceptForwarded(tx *bus.Tx, consumer, eventID string, req events.RequestRef) (first bool, err error) {
	fresh, err := tx.MarkProcessed(consumer, eventID)
	if err != nil || !fresh {
		return false, err
	}
	replies, seen, err := tx.AcceptRequest(req.Key())
	if err != nil {
		return false, err
	}
	if seen {
		return false, spport.Resend(tx, replies)
	}
	return true, nil
}
