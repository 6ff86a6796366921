package bustest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
)

// Source is the ce-source of an Event that names none.
const Source = "urn:tsm:svc:test"

// Event is a CloudEvent as a test writes it, with JSON data.
type Event struct {
	ID          string // ce-id; empty: a new unique id
	Source      string // ce-source; empty: Source
	Type        string // ce-type
	Subject     string // ce-subject; empty: none
	Correlation string // the correlation id extension; empty: none
	Data        any
	// MsgID overrides Nats-Msg-Id (the ce-id), for a re-publish that the
	// stream's duplicate window must not absorb.
	MsgID string
}

// Msg encodes the event for a NATS subject as bus.Encode does (binary mode,
// Nats-Msg-Id = ce-id). It reports errors rather than failing the test, for
// use on goroutines other than the test's, such as a consumer's callback.
func (e Event) Msg(subject string) (*nats.Msg, error) {
	id, source := e.ID, e.Source
	if id == "" {
		id = bus.NewID()
	}
	if source == "" {
		source = Source
	}
	ev, err := bus.NewEvent(id, source, e.Type, e.Subject, e.Data)
	if err != nil {
		return nil, err
	}
	if e.Correlation != "" {
		ev.SetExtension(bus.ExtCorrelationID, e.Correlation)
	}
	m, err := bus.Encode(subject, ev)
	if err == nil && e.MsgID != "" {
		m.Header.Set(bus.HeaderMsgID, e.MsgID)
	}
	return m, err
}

// Encode is Msg that fails the test on an error.
func Encode(t testing.TB, subject string, e Event) *nats.Msg {
	t.Helper()
	m, err := e.Msg(subject)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Publish publishes the event on subject and returns the stream's ack.
func Publish(t testing.TB, js jetstream.JetStream, subject string, e Event) *jetstream.PubAck {
	t.Helper()
	return PublishMsg(t, js, Encode(t, subject, e))
}

// PublishMsg publishes a message as it is (a test may have spoiled it) and
// returns the stream's ack.
func PublishMsg(t testing.TB, js jetstream.JetStream, m *nats.Msg) *jetstream.PubAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatalf("publish %s: %v", m.Subject, err)
	}
	return ack
}
