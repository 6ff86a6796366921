package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/pkg/topology"
)

// Delivery is one message handed to a handler: the raw NATS message, the
// decoded event (when it could be decoded) and JetStream metadata.
type Delivery struct {
	Subject string
	Header  nats.Header
	Data    []byte
	// Event is the decoded CloudEvent; check DecodeErr first.
	Event event.Event
	// DecodeErr is set when the message is not a valid CloudEvent.
	DecodeErr error
	// StreamSeq and NumDelivered come from the JetStream metadata.
	StreamSeq    uint64
	NumDelivered uint64
	// Timestamp is when the stream stored the message.
	Timestamp time.Time
	msg       jetstream.Msg
}

// Token returns subject token i ("" if out of range).
func (d *Delivery) Token(i int) string {
	t := strings.Split(d.Subject, ".")
	if i < 0 || i >= len(t) {
		return ""
	}
	return t[i]
}

// DecodeAs checks that the delivery is a valid CloudEvent of type ceType and
// unmarshals its data into v. An error means the message can never be handled
// (the same bytes will never decode better): dead-letter it with Permanent.
func (d *Delivery) DecodeAs(ceType string, v any) error {
	if d.DecodeErr != nil {
		return fmt.Errorf("not a CloudEvent: %w", d.DecodeErr)
	}
	if err := d.Event.Validate(); err != nil {
		return fmt.Errorf("invalid CloudEvent: %w", err)
	}
	if t := d.Event.Type(); t != ceType {
		return fmt.Errorf("ce-type %q on %s: want %q", t, d.Subject, ceType)
	}
	if err := json.Unmarshal(d.Event.Data(), v); err != nil {
		return fmt.Errorf("data of %s: %w", ceType, err)
	}
	return nil
}

// Handler processes one delivery. Return nil once the effect is committed;
// Permanent(err) to dead-letter the message at once; any other error is
// retried in place (same order slot) and dead-lettered after MaxDeliver tries.
type Handler func(ctx context.Context, d *Delivery) error

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: the message goes to the dead
// letter stream with err's text as the reason. The text must name no key value.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// JetStream is the client; Conn is its connection (for DLQ publishes).
	JetStream jetstream.JetStream
	// Log receives one line per failure; never message bodies.
	Log *slog.Logger
	// Workers per consumer: messages with the same ordering key always go to
	// the same worker, so per-SE order holds while SEs proceed in parallel.
	Workers int
	// AckWait for the consumers; in-flight messages are kept alive with
	// InProgress well before it.
	AckWait time.Duration
	// RetryDelays is the in-place retry schedule for transient errors.
	RetryDelays []time.Duration
	// Metrics, if set, receives handler counters and durations.
	Metrics *Metrics
	// ShutdownGrace is how long in-flight handlers may run after Run's
	// context ends before their own context is cancelled (default 5s).
	ShutdownGrace time.Duration
	// CreateConsumer, if set, creates or updates each durable consumer in
	// place of JetStream.CreateOrUpdateConsumer (pkg/partition uses it to take
	// a partition's consumers over from their ack floor).
	CreateConsumer func(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	// PullExpiry, if set, is the expiry of each pull request (heartbeats at a
	// third of it) instead of the client's default of 30 s: a lost pull
	// request stalls the consumer for about two heartbeats.
	PullExpiry time.Duration
	// CreateConcurrently, if set, creates the consumers all at once, each
	// starting as soon as it exists, instead of one after the other: on a
	// three-node cluster each new consumer waits for its raft group's leader
	// (partition.Takeover), and a partition's consumers then serve after the
	// slowest one rather than after the sum. A creation error stops the others
	// and Run returns it.
	CreateConcurrently bool
}

// Router runs named handlers on durable pull consumers.
type Router struct {
	cfg    RouterConfig
	routes []route
}

type route struct {
	consumer topology.Consumer
	handler  Handler
}

// NewRouter returns a Router with defaults filled in.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 10 * time.Second
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = topology.Backoff
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	return &Router{cfg: cfg}
}

// Handle registers a handler for a consumer declared in topology.
func (r *Router) Handle(c topology.Consumer, h Handler) {
	r.routes = append(r.routes, route{consumer: c, handler: h})
}

// EnsureStreams creates or updates every stream of the topology.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas <= 0 {
		replicas = 1
	}
	for _, s := range topology.Streams {
		cfg := jetstream.StreamConfig{
			Name:              s.Name,
			Description:       s.Description,
			Subjects:          s.Subjects,
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			MaxAge:            s.MaxAge,
			Duplicates:        s.Duplicates,
			Replicas:          replicas,
			MaxMsgsPerSubject: s.MaxMsgsPerSubject,
		}
		if cfg.MaxMsgsPerSubject == 0 {
			cfg.MaxMsgsPerSubject = -1
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("stream %s: %w", s.Name, err)
		}
	}
	return nil
}

// Run creates the consumers and processes messages until ctx ends. It returns
// after every in-flight handler has finished.
func (r *Router) Run(ctx context.Context) error {
	if r.cfg.CreateConcurrently {
		return r.runConcurrently(ctx)
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(r.routes))
	for _, rt := range r.routes {
		cons, err := r.create(ctx, rt)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting: a clean shutdown
			}
			return fmt.Errorf("consumer %s: %w", rt.consumer.Name, err)
		}
		w := newConsumerRun(r, rt, cons)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// create creates or updates rt's durable consumer (RouterConfig.CreateConsumer).
func (r *Router) create(ctx context.Context, rt route) (jetstream.Consumer, error) {
	create := r.cfg.CreateConsumer
	if create == nil {
		create = func(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
			return js.CreateOrUpdateConsumer(ctx, stream, cfg)
		}
	}
	return create(ctx, r.cfg.JetStream, rt.consumer.Stream, jetstream.ConsumerConfig{
		Durable:        rt.consumer.Name,
		Description:    rt.consumer.Description,
		FilterSubjects: rt.consumer.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     -1, // the router counts attempts itself and dead-letters
		MaxAckPending:  4096,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
}

// runConcurrently is Run with RouterConfig.CreateConcurrently: every consumer
// is created in its own goroutine and runs as soon as it exists. The first
// error (creation or run) stops the others; Run returns it.
func (r *Router) runConcurrently(ctx context.Context) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, len(r.routes))
	for _, rt := range r.routes {
		wg.Go(func() {
			cons, err := r.create(runCtx, rt)
			if err != nil {
				if runCtx.Err() == nil {
					errc <- fmt.Errorf("consumer %s: %w", rt.consumer.Name, err)
					stop()
				}
				return
			}
			if err := newConsumerRun(r, rt, cons).run(runCtx); err != nil && runCtx.Err() == nil {
				errc <- err
				stop()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		if ctx.Err() != nil {
			return nil // stopped by the caller meanwhile: a clean shutdown
		}
		return err
	default:
		return nil
	}
}

type consumerRun struct {
	r       *Router
	rt      route
	cons    jetstream.Consumer
	workers []chan jetstream.Msg
	mu      sync.Mutex
	pending map[jetstream.Msg]struct{}
}

func newConsumerRun(r *Router, rt route, cons jetstream.Consumer) *consumerRun {
	w := &consumerRun{r: r, rt: rt, cons: cons, pending: map[jetstream.Msg]struct{}{}}
	for i := 0; i < r.cfg.Workers; i++ {
		w.workers = append(w.workers, make(chan jetstream.Msg, 64))
	}
	return w
}

func (w *consumerRun) run(ctx context.Context) error {
	var wg sync.WaitGroup
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	// At shutdown a handler gets ShutdownGrace to finish its current step;
	// then its context is cancelled (a handler waiting on a slow bearer gives
	// up and the message is redelivered later).
	go func() {
		<-ctx.Done()
		select {
		case <-workCtx.Done():
		case <-time.After(w.r.cfg.ShutdownGrace):
			stopWork()
		}
	}()
	for i := range w.workers {
		wg.Add(1)
		go func(ch chan jetstream.Msg) {
			defer wg.Done()
			for m := range ch {
				w.process(workCtx, ctx, m)
				w.mu.Lock()
				delete(w.pending, m)
				w.mu.Unlock()
			}
		}(w.workers[i])
	}
	// Keep in-flight messages alive: a message waiting behind a slow one of the
	// same SE must not be redelivered to another instance meanwhile.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.r.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.mu.Lock()
				for m := range w.pending {
					_ = m.InProgress()
				}
				w.mu.Unlock()
			}
		}
	}()
	opts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(256)}
	if e := w.r.cfg.PullExpiry; e > 0 {
		// A pull request the server lost (sent to a consumer whose new raft
		// group was not serving yet) is noticed after two missed heartbeats.
		opts = append(opts, jetstream.PullExpiry(e), jetstream.PullHeartbeat(e/3))
	}
	iter, err := w.cons.Messages(opts...)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		iter.Stop()
	}()
	for {
		m, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				break
			}
			w.r.cfg.Log.Warn("consumer: fetch failed", "consumer", w.rt.consumer.Name, "error", err)
			continue
		}
		if ctx.Err() != nil {
			// Stopping: hand the message back without processing it.
			_ = m.NakWithDelay(shutdownRedeliveryDelay)
			continue
		}
		w.mu.Lock()
		w.pending[m] = struct{}{}
		w.mu.Unlock()
		w.workers[w.stripe(m)] <- m
	}
	for _, ch := range w.workers {
		close(ch)
	}
	wg.Wait()
	return nil
}

// stripe picks the worker of m: messages with the same ordering key always go
// to the same worker, one at a time, in stream order.
func (w *consumerRun) stripe(m jetstream.Msg) int {
	key := OrderingKey(w.rt.consumer, m.Subject(), m.Headers(), m.Data())
	// FNV-1a, inline: no allocation per message.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(len(w.workers)))
}

// OrderingKey is the key whose messages consumer c processes strictly in
// order: the value of the first of c.OrderingFields present in the event data
// when c names fields (SP requests: conversation id, SE id, MSI), else subject
// token c.OrderingToken (the SE id of internal steps), else the whole subject.
// A message of a consumer with OrderingFields that carries none of them (an
// invalid request, or an operation that names no SE) is keyed by its ce-id,
// which spreads such messages over the workers: their relative order does
// not matter, and each is idempotent by itself.
func OrderingKey(c topology.Consumer, subject string, h nats.Header, body []byte) string {
	if len(c.OrderingFields) > 0 {
		v, id := dataField(h, body, c.OrderingFields)
		switch {
		case v != "":
			return v
		case id != "":
			return "ce-id:" + id
		default:
			return subject
		}
	}
	if i := c.OrderingToken; i >= 0 {
		rest := subject
		for n := 0; ; n++ {
			dot := strings.IndexByte(rest, '.')
			if n == i {
				if dot < 0 {
					return rest
				}
				return rest[:dot]
			}
			if dot < 0 {
				break // fewer tokens: the whole subject
			}
			rest = rest[dot+1:]
		}
	}
	return subject
}

// dataField returns the first non-empty top-level string field of fields in
// the event data of a binary-mode or structured-mode CloudEvent, and the
// event's id. It reads only what ordering needs: a body that is not a JSON
// object simply has no fields (the handler reports what is wrong with it).
func dataField(h nats.Header, body []byte, fields []string) (value, id string) {
	data := body
	id = headerValue(h, "ce-id")
	if headerValue(h, "ce-specversion") == "" &&
		strings.HasPrefix(strings.ToLower(headerValue(h, HeaderContentType)), ContentTypeStructured) {
		var env struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(body, &env) != nil {
			return "", id
		}
		data, id = env.Data, env.ID
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return "", id
	}
	for _, f := range fields {
		var v string
		if raw, ok := top[f]; ok && json.Unmarshal(raw, &v) == nil && v != "" {
			return v, id
		}
	}
	return "", id
}

// headerValue reads a header case-insensitively (hand-written clients do not
// agree on the case of ce-* names).
func headerValue(h nats.Header, name string) string {
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

// process runs the handler with in-place retries, then acks, or dead-letters.
// ctx is handed to the handler and is not cancelled at shutdown, so a handler
// finishes its transaction; stop ends the retries and leaves queued messages
// to be redelivered.
func (w *consumerRun) process(ctx, stop context.Context, m jetstream.Msg) {
	if stop.Err() != nil {
		_ = m.NakWithDelay(shutdownRedeliveryDelay)
		return
	}
	d := &Delivery{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), msg: m}
	if md, err := m.Metadata(); err == nil {
		d.StreamSeq, d.NumDelivered, d.Timestamp = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	d.Event, d.DecodeErr = Decode(d.Header, d.Data)
	name := w.rt.consumer.Name
	var lastErr error
	attempts := w.rt.consumer.MaxDeliver
	if attempts <= 0 {
		attempts = topology.DefaultMaxDeliver
	}
	if d.NumDelivered > uint64(attempts*redeliveryFactor) {
		// Redelivered by the server far more often than we retry in place:
		// the process handling it keeps dying. Stop the loop and keep the
		// message. Restarts and shutdowns also count as deliveries, hence the
		// margin over the in-place attempts.
		w.deadLetter(ctx, d, fmt.Errorf("delivered %d times without being acknowledged", d.NumDelivered))
		return
	}
	for attempt := 1; attempt <= attempts; attempt++ {
		start := time.Now()
		err := callHandler(ctx, w.rt.handler, d)
		w.r.cfg.Metrics.observe(name, err, time.Since(start))
		if err == nil {
			if ackErr := m.Ack(); ackErr != nil {
				// Not fatal: the message comes back and the inbox absorbs it.
				w.r.cfg.Log.Warn("consumer: ack failed", "consumer", name, "seq", d.StreamSeq, "error", ackErr)
			}
			return
		}
		lastErr = err
		if IsPermanent(err) || stop.Err() != nil || attempt == attempts {
			break
		}
		delay := w.r.cfg.RetryDelays[min(attempt-1, len(w.r.cfg.RetryDelays)-1)]
		w.r.cfg.Log.Warn("consumer: handler failed, retrying", "consumer", name, "subject", d.Subject,
			"seq", d.StreamSeq, "attempt", attempt, "retryIn", delay, "error", err)
		_ = m.InProgress()
		select {
		case <-stop.Done():
		case <-time.After(delay):
		}
		if stop.Err() != nil {
			break
		}
	}
	if stop.Err() != nil && !IsPermanent(lastErr) {
		// Shutting down: leave the message for redelivery, nothing is lost.
		_ = m.NakWithDelay(shutdownRedeliveryDelay)
		return
	}
	w.deadLetter(ctx, d, lastErr)
}

func callHandler(ctx context.Context, h Handler, d *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panic: %v", r))
			slog.Error("handler panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	return h(ctx, d)
}

// shutdownRedeliveryDelay keeps a message handed back at shutdown from
// bouncing straight back to the stopping consumer; another instance (or this
// one after its restart) gets it a moment later.
const shutdownRedeliveryDelay = time.Second

// redeliveryFactor bounds server redeliveries (crashes, restarts) at this
// many times the in-place attempts before a message is dead-lettered.
const redeliveryFactor = 4

// Dead-letter headers added to the original message.
const (
	HeaderDLQReason     = "Tsm-Dlq-Reason"
	HeaderDLQSubject    = "Tsm-Dlq-Subject"
	HeaderDLQStream     = "Tsm-Dlq-Stream"
	HeaderDLQStreamSeq  = "Tsm-Dlq-Stream-Seq"
	HeaderDLQConsumer   = "Tsm-Dlq-Consumer"
	HeaderDLQDeliveries = "Tsm-Dlq-Deliveries"
)

// deadLetter copies the message to tsm.dlq.<service>.<consumer> with the reason
// and terminates it. If the DLQ publish fails, the message is nak'ed instead:
// it is never acked without a trace.
func (w *consumerRun) deadLetter(ctx context.Context, d *Delivery, reason error) {
	c := w.rt.consumer
	m := nats.NewMsg(topology.DeadLetter(c.Service, c.Name))
	for k, v := range d.Header {
		if k == HeaderMsgID {
			continue
		}
		m.Header[k] = v
	}
	text := "unknown"
	if reason != nil {
		text = reason.Error()
	}
	if len(text) > 1024 {
		text = text[:1024]
	}
	m.Header.Set(HeaderDLQReason, text)
	m.Header.Set(HeaderDLQSubject, d.Subject)
	m.Header.Set(HeaderDLQStream, c.Stream)
	m.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(d.StreamSeq, 10))
	m.Header.Set(HeaderDLQConsumer, c.Name)
	m.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(d.NumDelivered, 10))
	m.Data = d.Data
	id := fmt.Sprintf("dlq-%s-%s-%d", c.Stream, c.Name, d.StreamSeq)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := w.r.cfg.JetStream.PublishMsg(pctx, m, jetstream.WithMsgID(id)); err != nil {
		w.r.cfg.Log.Error("consumer: dead-letter publish failed, message kept for redelivery",
			"consumer", c.Name, "seq", d.StreamSeq, "error", err)
		_ = d.msg.NakWithDelay(5 * time.Second)
		return
	}
	w.r.cfg.Metrics.deadLettered(c.Name)
	w.r.cfg.Log.Error("consumer: message dead-lettered", "consumer", c.Name, "subject", d.Subject,
		"seq", d.StreamSeq, "reason", text)
	_ = d.msg.TermWithReason(truncate(text, 200))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Metrics are the Prometheus series of the router.
type Metrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dlq      *prometheus.CounterVec
}

// NewMetrics registers the router's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_handler_messages_total",
			Help: "Messages handled, by consumer and result (ok, retry, permanent)."}, []string{"consumer", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tsm_handler_duration_seconds",
			Help: "Handler duration by consumer.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)},
			[]string{"consumer"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_dead_letters_total",
			Help: "Messages sent to the dead-letter stream, by consumer."}, []string{"consumer"}),
	}
	reg.MustRegister(m.handled, m.duration, m.dlq)
	return m
}

func (m *Metrics) observe(consumer string, err error, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "retry"
		if IsPermanent(err) {
			result = "permanent"
		}
	}
	m.handled.WithLabelValues(consumer, result).Inc()
	m.duration.WithLabelValues(consumer).Observe(d.Seconds())
}

func (m *Metrics) deadLettered(consumer string) {
	if m == nil {
		return
	}
	m.dlq.WithLabelValues(consumer).Inc()
}
