package spclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// ErrNotFound is returned by Lookup when the responses stream holds no
// response with the correlation id.
var ErrNotFound = errors.New("spclient: no such response in the responses stream")

// LookupOption narrows a Lookup.
type LookupOption func(*lookupConfig)

type lookupConfig struct {
	since time.Time
	op    string
}

// LookupSince scans only responses stored at or after t.
func LookupSince(t time.Time) LookupOption { return func(c *lookupConfig) { c.since = t } }

// LookupOp scans only responses to op.
func LookupOp(op string) LookupOption { return func(c *lookupConfig) { c.op = op } }

// lookupBatch is how many stored responses one fetch of a Lookup asks for.
const lookupBatch = 256

// Lookup finds a response already stored in the responses stream by its
// correlation id (the request's ce-id): what an SP that was offline when
// tsmhub answered uses to pick up the answer. It scans the SP's responses
// from the oldest retained (or from LookupSince) and returns the first match,
// or ErrNotFound once it reached the end of the stream.
func (c *Client) Lookup(ctx context.Context, correlationID string, opts ...LookupOption) (*Reply, error) {
	var cfg lookupConfig
	for _, o := range opts {
		o(&cfg)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	op := ">"
	if cfg.op != "" {
		op = cfg.op
	}
	occ := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{topology.SPResponse(c.spID, op)},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
	}
	if !cfg.since.IsZero() {
		since := cfg.since
		occ.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		occ.OptStartTime = &since
	}
	cons, err := c.js.OrderedConsumer(ctx, topology.StreamResponses.Name, occ)
	if err != nil {
		return nil, fmt.Errorf("spclient: lookup consumer: %w", err)
	}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		// Nothing stored in the range: no need to wait for an empty fetch.
		return nil, fmt.Errorf("%w: correlation id %s", ErrNotFound, correlationID)
	}
	for {
		// A short wait: when fewer messages than the batch are stored the
		// server holds the request until it expires; NumPending tells the end
		// before that in every case but an empty range.
		batch, err := cons.Fetch(lookupBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, fmt.Errorf("spclient: lookup %s: %w", correlationID, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("spclient: lookup %s: %w", correlationID, err)
			}
			if headerValue(m.Headers(), "ce-"+bus.ExtCorrelationID) == correlationID {
				return newReply(m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream, md.Timestamp), nil
			}
			if md.NumPending == 0 {
				return nil, fmt.Errorf("%w: correlation id %s", ErrNotFound, correlationID)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("spclient: lookup %s: %w", correlationID, err)
		}
		if got == 0 {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("spclient: lookup %s: %w", correlationID, ctx.Err())
			}
			return nil, fmt.Errorf("%w: correlation id %s", ErrNotFound, correlationID)
		}
	}
}

// Notification is an unsolicited message from tsmhub to the SP
// (tsm.sp.<spId>.ntf.<kind>).
type Notification struct {
	// ID, Type (tsm.<kind>.notification) and Subject (ce-subject) are the
	// CloudEvents attributes.
	ID      string
	Type    string
	Subject string
	// NATSSubject is tsm.sp.<spId>.ntf.<kind>; Kind is its last token.
	NATSSubject string
	Kind        string
	StreamSeq   uint64
	Time        time.Time
	Header      nats.Header
	Body        []byte
	CloudEvent  event.Event
	// DecodeErr is set when the message is not a valid CloudEvent.
	DecodeErr error
}

// NotificationOption configures Notifications.
type NotificationOption func(*jetstream.OrderedConsumerConfig)

// NotificationsSince also delivers the notifications stored at or after t
// (by default only those published after the call).
func NotificationsSince(t time.Time) NotificationOption {
	return func(c *jetstream.OrderedConsumerConfig) {
		c.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		c.OptStartTime = &t
		c.OptStartSeq = 0
	}
}

// Notifications delivers the SP's notifications, in stream order, until ctx
// ends; then the channel is closed. By default it starts with the first
// notification published after the call.
func (c *Client) Notifications(ctx context.Context, opts ...NotificationOption) (<-chan Notification, error) {
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	start, err := c.streamEnd(sctx)
	if err != nil {
		return nil, err
	}
	occ := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{topology.SPNotification(c.spID, ">")},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	}
	for _, o := range opts {
		o(&occ)
	}
	cons, err := c.js.OrderedConsumer(sctx, topology.StreamResponses.Name, occ)
	if err != nil {
		return nil, fmt.Errorf("spclient: notification consumer: %w", err)
	}
	out := make(chan Notification, 64)
	var mu sync.RWMutex
	closed := false
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.RLock()
		defer mu.RUnlock()
		if closed {
			return
		}
		n := newNotification(m)
		select {
		case out <- n:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, fmt.Errorf("spclient: consume notifications: %w", err)
	}
	go func() {
		<-ctx.Done()
		cc.Stop()
		mu.Lock()
		closed = true
		close(out)
		mu.Unlock()
	}()
	return out, nil
}

func newNotification(m jetstream.Msg) Notification {
	n := Notification{NATSSubject: m.Subject(), Header: m.Headers(), Body: m.Data()}
	if md, err := m.Metadata(); err == nil {
		n.StreamSeq, n.Time = md.Sequence.Stream, md.Timestamp
	}
	if _, _, name, ok := topology.ParseSPSubject(m.Subject()); ok {
		n.Kind = name
	}
	ev, err := bus.Decode(n.Header, n.Body)
	n.CloudEvent, n.DecodeErr = ev, err
	n.ID, n.Type, n.Subject = ev.ID(), ev.Type(), ev.Subject()
	return n
}
