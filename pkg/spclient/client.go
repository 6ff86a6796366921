// Package spclient is what an SP TSM (and tsmhub's own tests and tsmctl) use
// to talk to tsmhub over NATS JetStream, following public contract v1
// (DESIGN.md section 4).
//
// A Client publishes each request as a binary-mode CloudEvent (ce-id = the
// function call identifier, ce-source urn:tsm:sp:<spId>, ce-type
// tsm.<op>.request) to tsm.sp.<spId>.req.<op> with Nats-Msg-Id = ce-id, and
// waits for the response whose ce-correlationid is that ce-id.
//
// Responses are read by ONE ordered consumer per client on the responses
// stream (filter tsm.sp.<spId>.res.>), started at New from the stream's
// current end, which hands each response to the call waiting for its
// correlation id. Any number of calls can be in flight at once without a
// consumer per call. Responses that arrived while the SP was offline (before
// New) are found with Lookup; notifications are read with Notifications.
//
// Call is the raw level: it returns an error only when no response could be
// obtained, and the Reply carries the status. The typed helpers (GetSEID,
// GetSEData, BeginConversation, SendScript, EndConversation, PrePersonalize
// and the service life-cycle operations) also return a *FailedError when the
// status is Failed or Expired.
//
// The SCP03 helper in this package (SecureChannel) runs an end-to-end secure
// channel with the SP's own security domain across the scripts of a
// conversation, as an SP TSM does.
package spclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// DefaultTimeout bounds a Call whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// setupTimeout bounds the JetStream API calls of New, Lookup and
// Notifications when the caller gave no deadline.
const setupTimeout = 10 * time.Second

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets how long Call waits for a response when its context has
// no deadline (default DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// CallOption configures one Call.
type CallOption func(*callConfig)

type callConfig struct {
	requestID string
}

// WithRequestID sets the request's ce-id (the SP's function call identifier)
// instead of a fresh one. Re-sending a request with an id tsmhub already
// processed returns the original response again without executing it twice.
func WithRequestID(id string) CallOption {
	return func(c *callConfig) { c.requestID = id }
}

// Client talks to tsmhub as one SP. It is safe for concurrent use.
type Client struct {
	js      jetstream.JetStream
	spID    string
	timeout time.Duration

	mu       sync.Mutex
	closed   bool
	byID     map[string][]*Pending
	matchers map[*Pending]struct{}

	consume jetstream.ConsumeContext
}

// New starts a client for spID: it checks the responses stream and starts the
// client's response subscription at the stream's current end, so every
// response published from now on reaches the call waiting for it. Close the
// client when done.
func New(js jetstream.JetStream, spID string, opts ...Option) (*Client, error) {
	if !topology.SPIDPattern.MatchString(spID) {
		return nil, fmt.Errorf("spclient: SP id %q does not match %s", spID, topology.SPIDPattern)
	}
	c := &Client{js: js, spID: spID, timeout: DefaultTimeout,
		byID: map[string][]*Pending{}, matchers: map[*Pending]struct{}{}}
	for _, o := range opts {
		o(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	start, err := c.streamEnd(ctx)
	if err != nil {
		return nil, err
	}
	// An explicit start sequence rather than DeliverNew: if the ordered
	// consumer is re-created (reconnect, missed heartbeats) before it
	// delivered anything, DeliverNew would skip responses published in the
	// gap, a start sequence does not.
	cons, err := js.OrderedConsumer(ctx, topology.StreamResponses.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{topology.SPResponse(spID, ">")},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return nil, fmt.Errorf("spclient: response consumer on %s: %w", topology.StreamResponses.Name, err)
	}
	cc, err := cons.Consume(c.dispatch)
	if err != nil {
		return nil, fmt.Errorf("spclient: consume responses: %w", err)
	}
	c.consume = cc
	return c, nil
}

// streamEnd returns the sequence the next message of the responses stream
// will get.
func (c *Client) streamEnd(ctx context.Context) (uint64, error) {
	s, err := c.js.Stream(ctx, topology.StreamResponses.Name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, fmt.Errorf("spclient: stream %s not found: tsmhub creates it when its services start", topology.StreamResponses.Name)
		}
		return 0, fmt.Errorf("spclient: stream %s: %w", topology.StreamResponses.Name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("spclient: stream %s info: %w", topology.StreamResponses.Name, err)
	}
	return info.State.LastSeq + 1, nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// SPID returns the SP id the client speaks for.
func (c *Client) SPID() string { return c.spID }

// Close stops the response subscription; pending calls end with ErrClosed.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for id, ps := range c.byID {
		for _, p := range ps {
			p.fail(ErrClosed)
		}
		delete(c.byID, id)
	}
	for p := range c.matchers {
		p.fail(ErrClosed)
		delete(c.matchers, p)
	}
	c.mu.Unlock()
	if c.consume != nil {
		c.consume.Stop()
	}
}

// ErrClosed is returned by calls pending when the client was closed.
var ErrClosed = errors.New("spclient: client closed")

// ErrTimeout matches (errors.Is) every *TimeoutError.
var ErrTimeout = errors.New("spclient: no response in time")

// TimeoutError says which request got no response in time.
type TimeoutError struct {
	Op        string
	RequestID string
	After     time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("spclient: no response to %s request %s within %s: is tsmhub running? "+
		"A late response stays in the responses stream: fetch it with Lookup(%q)",
		e.Op, e.RequestID, e.After.Round(time.Millisecond), e.RequestID)
}

// Is makes errors.Is(err, ErrTimeout) and errors.Is(err,
// context.DeadlineExceeded) true.
func (e *TimeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

// Reply is a response received from tsmhub.
type Reply struct {
	// ID, Type, Subject (ce-subject: the SE or conversation concerned) and
	// CorrelationID (the request's ce-id) are the CloudEvents attributes.
	ID            string
	Type          string
	Subject       string
	CorrelationID string
	// NATSSubject is tsm.sp.<spId>.res.<op>; Op is its last token.
	NATSSubject string
	Op          string
	// StreamSeq and Time locate the response in the responses stream.
	StreamSeq uint64
	Time      time.Time
	// Header holds the NATS headers as received; Body the JSON data.
	Header nats.Header
	Body   []byte
	// Result is the decoded status and error of the body.
	Result contract.Result
	// CloudEvent is the decoded event.
	CloudEvent event.Event
	// DecodeErr is set when the message is not a valid CloudEvent or its body
	// not a JSON object with a status.
	DecodeErr error
}

// Decode unmarshals the body into v.
func (r *Reply) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("spclient: decode %s response %s: %w", r.Op, r.ID, err)
	}
	return nil
}

// OK reports whether the status is Executed-Success or Executed-WithWarning.
func (r *Reply) OK() bool { return Succeeded(r.Result) }

// Err returns a *FailedError when the status is not a success, nil otherwise.
func (r *Reply) Err() error {
	if r.OK() {
		return nil
	}
	return &FailedError{Op: r.Op, RequestID: r.CorrelationID, Result: r.Result}
}

// Succeeded reports whether a result is Executed-Success or
// Executed-WithWarning.
func Succeeded(r contract.Result) bool {
	return r.Status == contract.StatusSuccess || r.Status == contract.StatusWithWarning
}

// FailedError is a response whose status is Failed or Expired (or missing).
// It unwraps to the response's *contract.Error when there is one.
type FailedError struct {
	Op        string
	RequestID string
	Result    contract.Result
}

func (e *FailedError) Error() string {
	status := string(e.Result.Status)
	if status == "" {
		status = "no status"
	}
	if e.Result.Error == nil {
		return fmt.Sprintf("%s request %s: %s", e.Op, e.RequestID, status)
	}
	return fmt.Sprintf("%s request %s: %s: %s: %s", e.Op, e.RequestID, status, e.Result.Error.Code, e.Result.Error.Message)
}

// Unwrap returns the contract error, so errors.As(err, &*contract.Error) works.
func (e *FailedError) Unwrap() error {
	if e.Result.Error == nil {
		return nil
	}
	return e.Result.Error
}

// Code returns the error code ("" when the response carried none).
func (e *FailedError) Code() contract.Code {
	if e.Result.Error == nil {
		return ""
	}
	return e.Result.Error.Code
}

// newReply decodes a message of the responses stream.
func newReply(subject string, h nats.Header, body []byte, seq uint64, ts time.Time) *Reply {
	r := &Reply{NATSSubject: subject, StreamSeq: seq, Time: ts, Header: h, Body: body}
	if _, _, name, ok := topology.ParseSPSubject(subject); ok {
		r.Op = name
	}
	ev, err := bus.Decode(h, body)
	r.CloudEvent = ev
	r.ID, r.Type, r.Subject = ev.ID(), ev.Type(), ev.Subject()
	r.CorrelationID = bus.StringExtension(ev, bus.ExtCorrelationID)
	if err != nil {
		r.DecodeErr = err
		return r
	}
	if err := json.Unmarshal(body, &r.Result); err != nil {
		r.DecodeErr = fmt.Errorf("response body: %w", err)
	}
	return r
}

// Pending is a registered wait for one response. Register it before the
// request is published so the response cannot be missed.
type Pending struct {
	c         *Client
	requestID string
	match     func(*Reply) bool
	ch        chan *Reply
	errc      chan error
	once      sync.Once
}

func (p *Pending) deliver(r *Reply) {
	p.once.Do(func() { p.ch <- r })
}

func (p *Pending) fail(err error) {
	p.once.Do(func() { p.errc <- err })
}

// Wait blocks until the response arrives or ctx ends, then unregisters.
func (p *Pending) Wait(ctx context.Context) (*Reply, error) {
	defer p.Cancel()
	select {
	case r := <-p.ch:
		return r, nil
	case err := <-p.errc:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Cancel unregisters the wait; it is safe to call more than once.
func (p *Pending) Cancel() {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.match != nil {
		delete(c.matchers, p)
		return
	}
	ps := c.byID[p.requestID]
	for i, q := range ps {
		if q == p {
			ps = append(ps[:i], ps[i+1:]...)
			break
		}
	}
	if len(ps) == 0 {
		delete(c.byID, p.requestID)
	} else {
		c.byID[p.requestID] = ps
	}
}

func (c *Client) register(p *Pending) *Pending {
	p.c = c
	p.ch = make(chan *Reply, 1)
	p.errc = make(chan error, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		p.fail(ErrClosed)
		return p
	}
	if p.match != nil {
		c.matchers[p] = struct{}{}
	} else {
		c.byID[p.requestID] = append(c.byID[p.requestID], p)
	}
	return p
}

// Expect registers a wait for the response whose ce-correlationid is
// requestID. Call it before publishing the request.
func (c *Client) Expect(requestID string) *Pending {
	return c.register(&Pending{requestID: requestID})
}

// ExpectMatch registers a wait for the first response match accepts, e.g. the
// answer to a request published without ce-id (it has no correlation id).
func (c *Client) ExpectMatch(match func(*Reply) bool) *Pending {
	return c.register(&Pending{match: match})
}

// dispatch hands one response to the calls waiting for it. A response nobody
// waits for (a late one, a re-sent one) stays in the stream for Lookup.
func (c *Client) dispatch(m jetstream.Msg) {
	var seq uint64
	var ts time.Time
	if md, err := m.Metadata(); err == nil {
		seq, ts = md.Sequence.Stream, md.Timestamp
	}
	r := newReply(m.Subject(), m.Headers(), m.Data(), seq, ts)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.CorrelationID != "" {
		for _, p := range c.byID[r.CorrelationID] {
			p.deliver(r)
		}
		delete(c.byID, r.CorrelationID)
	}
	for p := range c.matchers {
		if p.match(r) {
			p.deliver(r)
			delete(c.matchers, p)
		}
	}
}

// Call sends op with request as its JSON data and waits for the response.
// When response is non-nil the body is decoded into it. The error is non-nil
// only when no usable response came (publish failure, timeout, closed client,
// undecodable body); check the Reply's Result (or Reply.Err) for the status.
func (c *Client) Call(ctx context.Context, op string, request, response any, opts ...CallOption) (*Reply, error) {
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
	}
	id := cfg.requestID
	if id == "" {
		id = bus.NewID()
	}
	ev, err := bus.NewEvent(id, topology.SPSourcePrefix+c.spID, "tsm."+op+topology.RequestTypeSuffix, "", request)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w", err)
	}
	msg, err := bus.Encode(topology.SPRequest(c.spID, op), ev)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w", err)
	}
	timeout := c.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	p := c.Expect(id)
	defer p.Cancel()
	if c.isClosed() {
		return nil, ErrClosed
	}
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	if err != nil {
		return nil, fmt.Errorf("spclient: publish %s request %s: %w", op, id, err)
	}
	var r *Reply
	if ack.Duplicate {
		// JetStream absorbed the re-sent request (same Nats-Msg-Id within the
		// requests stream's short duplicate window): the original request's
		// response is, or will be, in the responses stream.
		r, err = c.Lookup(ctx, id, LookupOp(op))
		if err != nil {
			r = nil
		}
	}
	if r == nil {
		r, err = p.Wait(ctx)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &TimeoutError{Op: op, RequestID: id, After: timeout}
		}
		return nil, fmt.Errorf("spclient: %s request %s: %w", op, id, err)
	}
	if r.DecodeErr != nil {
		return r, fmt.Errorf("spclient: %s response %s: %w", op, r.ID, r.DecodeErr)
	}
	if response != nil {
		if err := r.Decode(response); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Publish sends a raw request (headers and body exactly as given) to
// tsm.sp.<spId>.req.<op>: for tests of malformed requests and for what a
// stock client such as the nats CLI sends. No Nats-Msg-Id is added: include
// one in header to have JetStream deduplicate re-sends. The returned Pending waits for the
// response correlated with that ce-id or, without ce-id, for the first
// response to op that carries no correlation id.
func (c *Client) Publish(ctx context.Context, op string, header nats.Header, body []byte) (*Pending, error) {
	m := nats.NewMsg(topology.SPRequest(c.spID, op))
	for k, v := range header {
		m.Header[k] = append([]string(nil), v...)
	}
	m.Data = body
	id := headerValue(m.Header, "ce-id")
	var p *Pending
	if id != "" {
		p = c.Expect(id)
	} else {
		subject := topology.SPResponse(c.spID, op)
		p = c.ExpectMatch(func(r *Reply) bool { return r.NATSSubject == subject && r.CorrelationID == "" })
	}
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		p.Cancel()
		return nil, fmt.Errorf("spclient: publish raw %s request: %w", op, err)
	}
	return p, nil
}

// headerValue reads a header case-insensitively, as tsmhub's decoder does.
func headerValue(h nats.Header, name string) string {
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}
