// Package bus carries CloudEvents over NATS JetStream for every tsmhub
// service: binary-mode encoding with Nats-Msg-Id = ce-id, durable pull
// consumers with explicit acks after the effect is committed, an idempotent
// inbox and a transactional outbox in bbolt, and dead-lettering with the reason.
//
// The cloudevents sdk-go is used for the event model and its validation only:
// its JetStream protocol binding acks on hand-off (at-most-once), so transport
// and acknowledgement live here, on nats.go's jetstream package.
package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Header names used besides the ce-* attributes.
const (
	HeaderMsgID           = "Nats-Msg-Id"
	HeaderContentType     = "content-type"
	ContentTypeJSON       = "application/json"
	ContentTypeStructured = "application/cloudevents+json"
	// ExtCorrelationID links a response (and every internal step) to the SP
	// request's ce-id.
	ExtCorrelationID = "correlationid"
)

// NewEvent builds a CloudEvent with a fresh id, the current time and JSON data.
func NewEvent(id, source, typ, subject string, data any) (event.Event, error) {
	ev := event.New(event.CloudEventsVersionV1)
	ev.SetID(id)
	ev.SetSource(source)
	ev.SetType(typ)
	if subject != "" {
		ev.SetSubject(subject)
	}
	ev.SetTime(time.Now().UTC())
	if err := ev.SetData(ContentTypeJSON, data); err != nil {
		return ev, fmt.Errorf("encode data of %s: %w", typ, err)
	}
	return ev, nil
}

// Encode turns an event into a NATS message in binary content mode: each
// attribute in a ce-<name> header, the data as the body, and Nats-Msg-Id set to
// the event id so JetStream deduplicates re-publishes.
func Encode(subject string, ev event.Event) (*nats.Msg, error) {
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("invalid event for %s: %w", subject, err)
	}
	m := nats.NewMsg(subject)
	h := m.Header
	h.Set("ce-specversion", ev.SpecVersion())
	h.Set("ce-id", ev.ID())
	h.Set("ce-source", ev.Source())
	h.Set("ce-type", ev.Type())
	if s := ev.Subject(); s != "" {
		h.Set("ce-subject", s)
	}
	if t := ev.Time(); !t.IsZero() {
		h.Set("ce-time", t.UTC().Format(time.RFC3339Nano))
	}
	if ct := ev.DataContentType(); ct != "" {
		h.Set("ce-datacontenttype", ct)
	}
	if ds := ev.DataSchema(); ds != "" {
		h.Set("ce-dataschema", ds)
	}
	for name, v := range ev.Extensions() {
		h.Set("ce-"+name, fmt.Sprint(v))
	}
	h.Set(HeaderMsgID, ev.ID())
	m.Data = ev.Data()
	return m, nil
}

// ErrNotCloudEvent marks a message that carries no recognisable CloudEvent.
var ErrNotCloudEvent = errors.New("not a CloudEvent: no ce-specversion header and content-type is not application/cloudevents+json")

// headerLookup reads headers case-insensitively: hand-written clients (the nats
// CLI, scripts) do not agree on the case of ce-* names.
type headerLookup map[string]string

func newHeaderLookup(h nats.Header) headerLookup {
	l := make(headerLookup, len(h))
	for k, v := range h {
		if len(v) > 0 {
			l[strings.ToLower(k)] = v[0]
		}
	}
	return l
}

// Decode reads a CloudEvent from a NATS message in binary mode (ce-* headers;
// a plain content-type header is accepted in place of ce-datacontenttype) or
// structured mode (content-type application/cloudevents+json). The returned
// event may still fail ev.Validate(): callers decide how to report that.
func Decode(h nats.Header, body []byte) (event.Event, error) {
	hl := newHeaderLookup(h)
	if _, ok := hl["ce-specversion"]; !ok {
		if strings.HasPrefix(strings.ToLower(hl[HeaderContentType]), ContentTypeStructured) {
			var ev event.Event
			if err := json.Unmarshal(body, &ev); err != nil {
				return ev, fmt.Errorf("structured CloudEvent: %w", err)
			}
			return ev, nil
		}
		ev := event.New(event.CloudEventsVersionV1)
		// Keep what can be told (id, source) so a caller can still answer.
		ev.SetID(hl["ce-id"])
		ev.SetSource(hl["ce-source"])
		ev.SetType(hl["ce-type"])
		ev.DataEncoded = body
		return ev, ErrNotCloudEvent
	}
	ev := event.New(event.CloudEventsVersionV1)
	var errs []error
	if v := hl["ce-specversion"]; v != event.CloudEventsVersionV1 {
		errs = append(errs, fmt.Errorf("ce-specversion %q is not supported (use 1.0)", v))
	}
	ev.SetID(hl["ce-id"])
	ev.SetSource(hl["ce-source"])
	ev.SetType(hl["ce-type"])
	if v, ok := hl["ce-subject"]; ok {
		ev.SetSubject(v)
	}
	if v, ok := hl["ce-time"]; ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("ce-time %q is not RFC 3339", v))
		} else {
			ev.SetTime(t)
		}
	}
	if v, ok := hl["ce-dataschema"]; ok {
		ev.SetDataSchema(v)
	}
	ct := hl["ce-datacontenttype"]
	if ct == "" {
		ct = hl[HeaderContentType]
	}
	if ct != "" {
		ev.SetDataContentType(ct)
	}
	for k, v := range hl {
		if !strings.HasPrefix(k, "ce-") {
			continue
		}
		switch name := k[3:]; name {
		case "specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype":
		default:
			if validExtensionName(name) {
				ev.SetExtension(name, v)
			}
		}
	}
	ev.DataEncoded = body
	return ev, errors.Join(errs...)
}

// validExtensionName follows CloudEvents: lowercase letters and digits only.
func validExtensionName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// StringExtension returns an extension attribute as a string ("" if absent).
func StringExtension(ev event.Event, name string) string {
	v, ok := ev.Extensions()[name]
	if !ok {
		return ""
	}
	return fmt.Sprint(v)
}

// NewID returns a unique event id.
func NewID() string { return nuid.Next() }

// Outgoing is an event to publish on a subject.
type Outgoing struct {
	Subject string
	Event   event.Event
}
