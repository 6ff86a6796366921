// Package spport is the SP-facing port shared by the services that answer SP
// TSM requests: it checks a request's CloudEvents attributes against its
// subject, validates the data against the published JSON Schema, enforces
// validitySeconds, and makes every request idempotent by (spId, ce-id): a
// request re-sent with a processed ce-id gets the original response again and
// is never executed twice.
package spport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// Request is a parsed SP request.
type Request struct {
	Ref events.RequestRef
	// Event is the request as received.
	Event event.Event
	// ReceivedAt is when the requests stream stored it.
	ReceivedAt time.Time
	// ValidUntil is zero when the request set no validitySeconds.
	ValidUntil time.Time
}

// Key is the idempotency key: spId/ce-id, or the stream sequence when the
// request had no ce-id.
func (r *Request) Key() string { return r.Ref.Key() }

// Decode unmarshals the request data into v; unknown fields were already
// rejected by the schema.
func (r *Request) Decode(v any) error { return json.Unmarshal(r.Event.Data(), v) }

// Port parses and answers SP requests for one consumer.
type Port struct {
	Schemas *bus.Schemas
	Store   *bus.Store
	// Consumer names the inbox of processed stream messages.
	Consumer string
}

// Parse checks a delivery. It returns the request and nil when it is valid;
// the request and an *contract.Error when it is invalid but the SP can be
// answered; or nil and a permanent error when nobody can be told (the message
// is dead-lettered with the reason).
func (p *Port) Parse(d *bus.Delivery) (*Request, *contract.Error) {
	spID, dir, op, ok := topology.ParseSPSubject(d.Subject)
	if !ok || dir != "req" || !topology.SPIDPattern.MatchString(spID) {
		return nil, nil
	}
	ev := d.Event
	req := &Request{Ref: events.RequestRef{SPID: spID, Op: op, RequestID: ev.ID()}, Event: ev, ReceivedAt: d.Timestamp}
	if req.ReceivedAt.IsZero() {
		req.ReceivedAt = time.Now()
	}
	if req.Ref.RequestID == "" {
		// Still answerable: the SP is known from the subject. The response has
		// no correlation id; the stream sequence keeps the answer idempotent.
		req.Ref.RequestID = "seq-" + strconv.FormatUint(d.StreamSeq, 10)
		return req, contract.Errorf(contract.CodeInvalidArgument, "missing ce-id: set the ce-id header to a unique function call identifier")
	}
	if d.DecodeErr != nil {
		return req, contract.Errorf(contract.CodeInvalidArgument, "not a valid CloudEvent: %v", d.DecodeErr)
	}
	if !topology.KnownOp(op) {
		return req, contract.Errorf(contract.CodeInvalidArgument, "unknown operation %q in subject %s; operations: %v", op, d.Subject, topology.Operations)
	}
	if want := topology.SPSourcePrefix + spID; ev.Source() != want {
		return req, contract.Errorf(contract.CodeInvalidArgument, "ce-source %q does not match the subject: set it to %q", ev.Source(), want)
	}
	if want := "tsm." + op + topology.RequestTypeSuffix; ev.Type() != want {
		return req, contract.Errorf(contract.CodeInvalidArgument, "ce-type %q does not match the subject: set it to %q", ev.Type(), want)
	}
	if err := ev.Validate(); err != nil {
		return req, contract.Errorf(contract.CodeInvalidArgument, "invalid CloudEvent attributes: %v", err)
	}
	if ct := ev.DataMediaType(); ct != "" && ct != bus.ContentTypeJSON {
		return req, contract.Errorf(contract.CodeInvalidArgument, "data content type %q is not supported: send application/json", ct)
	}
	data := ev.Data()
	if len(bytes.TrimSpace(data)) == 0 {
		return req, contract.Errorf(contract.CodeInvalidArgument, "empty body: send the %s request as a JSON object", op)
	}
	if !json.Valid(data) {
		return req, contract.Errorf(contract.CodeInvalidArgument, "body is not valid JSON")
	}
	if err := p.Schemas.Validate(ev.Type(), data); err != nil {
		return req, contract.Errorf(contract.CodeInvalidArgument, "request does not match the %s schema: %v", op, err)
	}
	var common contract.Common
	_ = json.Unmarshal(data, &common)
	if common.ValiditySeconds > 0 {
		start := req.ReceivedAt
		if t := ev.Time(); !t.IsZero() && t.Before(start) {
			start = t
		}
		req.ValidUntil = start.Add(time.Duration(common.ValiditySeconds) * time.Second)
	}
	return req, nil
}

// Response builds the response event to req with body.
func Response(ref events.RequestRef, ceSubject string, body any) (event.Event, error) {
	ev, err := bus.NewEvent(bus.NewID(), topology.CentralSource, "tsm."+ref.Op+topology.ResponseTypeSuffix, ceSubject, body)
	if err != nil {
		return ev, err
	}
	if ref.RequestID != "" && !isSeqID(ref.RequestID) {
		ev.SetExtension(bus.ExtCorrelationID, ref.RequestID)
	}
	return ev, nil
}

func isSeqID(id string) bool { return len(id) > 4 && id[:4] == "seq-" }

// Reply emits body as the response to ref inside tx, remembering it for re-sent requests.
func Reply(tx *bus.Tx, ref events.RequestRef, ceSubject string, body any) error {
	ev, err := Response(ref, ceSubject, body)
	if err != nil {
		return err
	}
	return tx.EmitReply(ref.Key(), topology.SPResponse(ref.SPID, ref.Op), ev)
}

// ReplyError answers ref with a failure.
func ReplyError(tx *bus.Tx, ref events.RequestRef, ceSubject string, cerr *contract.Error) error {
	return Reply(tx, ref, ceSubject, contract.FailureBody{Result: contract.Failure(cerr)})
}

// Resend re-emits responses already sent (new ce-ids, same bodies), for a
// request re-sent with the same ce-id.
func Resend(tx *bus.Tx, replies []bus.StoredReply) error {
	for _, r := range replies {
		ev := r.Event.Clone()
		ev.SetID(bus.NewID())
		ev.SetTime(time.Now().UTC())
		if err := tx.Emit(r.Subject, ev); err != nil {
			return err
		}
	}
	return nil
}

// ErrIgnore can be returned by a Parse caller's filter to ack a message the
// consumer does not own.
var ErrIgnore = errors.New("not for this consumer")

// HandleFunc handles a valid, new, unexpired request inside the transaction.
type HandleFunc func(ctx context.Context, tx *bus.Tx, req *Request) error

// Handle is the idempotent skeleton of every SP request handler: in one
// transaction it skips a stream message already processed, answers invalid
// requests, re-sends the original response to a re-sent ce-id, answers
// expired requests, and otherwise calls fn.
func (p *Port) Handle(ctx context.Context, d *bus.Delivery, ceSubject func(*Request) string, fn HandleFunc) error {
	return p.handle(ctx, d, ceSubject, fn, false)
}

// HandleForward is Handle for a request this service passes on to another
// service which answers it (the registry resolving begin-conversation): the
// request key is not claimed here, so a re-sent request is passed on again
// and the answering service re-sends its original response; responses this
// service sent itself (errors) are re-sent from here.
func (p *Port) HandleForward(ctx context.Context, d *bus.Delivery, ceSubject func(*Request) string, fn HandleFunc) error {
	return p.handle(ctx, d, ceSubject, fn, true)
}

func (p *Port) handle(ctx context.Context, d *bus.Delivery, ceSubject func(*Request) string, fn HandleFunc, forward bool) error {
	req, cerr := p.Parse(d)
	if req == nil {
		return bus.Permanent(fmt.Errorf("subject %s is not tsm.sp.<spId>.req.<op> with a valid spId: nobody to answer", d.Subject))
	}
	return p.Store.Update(func(tx *bus.Tx) error {
		fresh, err := tx.MarkProcessed(p.Consumer, "seq-"+strconv.FormatUint(d.StreamSeq, 10))
		if err != nil || !fresh {
			return err
		}
		var replies []bus.StoredReply
		seen := false
		if forward {
			replies, err = tx.Replies(req.Key())
			seen = len(replies) > 0
		} else {
			replies, seen, err = tx.AcceptRequest(req.Key())
		}
		if err != nil {
			return err
		}
		if seen {
			return Resend(tx, replies)
		}
		subj := ""
		if ceSubject != nil && cerr == nil {
			subj = ceSubject(req)
		}
		if cerr != nil {
			return ReplyError(tx, req.Ref, subj, cerr)
		}
		if !req.ValidUntil.IsZero() && time.Now().After(req.ValidUntil) {
			return ReplyError(tx, req.Ref, subj, contract.Errorf(contract.CodeExpired,
				"the request was not processed within its validitySeconds"))
		}
		return fn(ctx, tx, req)
	})
}
