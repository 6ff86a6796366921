package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/natsembed"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/mnoadapter/service"
)

// deadline bounds every wait; generous for a loaded 2-core machine.
const deadline = 30 * time.Second

// env is one embedded NATS server, one MNO adapter (for mno-a) and a recorder
// of every message on the subjects the tests watch.
type env struct {
	t        *testing.T
	js       jetstream.JetStream
	httpAddr string
	mu       sync.Mutex
	msgs     []jetstream.Msg
	// changed is poked on every recorded message so waits wake up at once.
	changed chan struct{}
	// schemas checks every recorded event against its published schema;
	// invalid holds what failed, reported by the next matching call.
	schemas *bus.Schemas
	invalid []string
}

func newEnv(t *testing.T, mutate func(*service.Config)) *env {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, js: js, changed: make(chan struct{}, 1), schemas: schemas}
	cons, err := js.OrderedConsumer(ctx, topology.StreamSteps.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"tsm.se.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e.record(m)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	dlq, err := js.OrderedConsumer(ctx, topology.StreamDeadLetters.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dlq.Consume(func(m jetstream.Msg) {
		e.record(m)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dc.Stop)

	bound := make(chan string, 1)
	cfg := service.Config{MNOID: mno, LatencySet: true}
	cfg.Kit.Name = service.Name
	cfg.Kit.NATSURL = ns.ClientURL()
	cfg.Kit.DataDir = t.TempDir()
	cfg.Kit.HTTPAddr = "127.0.0.1:0"
	cfg.Kit.HTTPBound = bound
	cfg.Kit.Workers = 4
	cfg.Kit.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mutate != nil {
		mutate(&cfg)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("service.Run: %v", err)
			}
		case <-time.After(deadline):
			t.Error("service did not stop")
		}
	})
	select {
	case e.httpAddr = <-bound:
	case err := <-done:
		t.Fatalf("service.Run: %v", err)
	case <-time.After(deadline):
		t.Fatal("service did not start")
	}
	return e
}

// publish sends data as a CloudEvent of type ceType with ce-id id and a
// correlation id; msgID overrides Nats-Msg-Id (a re-publish beyond the
// stream's duplicate window) when not empty.
func (e *env) publish(subject, ceType, id, msgID string, data any) {
	e.t.Helper()
	ev, err := bus.NewEvent(id, "urn:tsm:svc:test", ceType, "", data)
	if err != nil {
		e.t.Fatal(err)
	}
	ev.SetExtension(bus.ExtCorrelationID, "corr-"+id)
	m, err := bus.Encode(subject, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if msgID != "" {
		m.Header.Set(bus.HeaderMsgID, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) record(m jetstream.Msg) {
	e.mu.Lock()
	e.msgs = append(e.msgs, m)
	if ceType := m.Headers().Get("ce-type"); m.Headers().Get(bus.HeaderDLQReason) == "" && e.schemas.Has(ceType) {
		if err := e.schemas.Validate(ceType, m.Data()); err != nil {
			e.invalid = append(e.invalid, m.Subject()+": "+err.Error())
		}
	}
	e.mu.Unlock()
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// matching returns the recorded messages on subject for which keep is true.
func (e *env) matching(subject string, keep func(jetstream.Msg) bool) []jetstream.Msg {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, inv := range e.invalid {
		e.t.Errorf("emitted event does not match its schema: %s", inv)
	}
	e.invalid = nil
	var out []jetstream.Msg
	for _, m := range e.msgs {
		if m.Subject() == subject && (keep == nil || keep(m)) {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits until at least n matching messages were recorded, checking
// again whenever a message arrives, up to the deadline.
func (e *env) waitFor(subject string, n int, keep func(jetstream.Msg) bool) []jetstream.Msg {
	e.t.Helper()
	timeout := time.NewTimer(deadline)
	defer timeout.Stop()
	for {
		got := e.matching(subject, keep)
		if len(got) >= n {
			return got
		}
		select {
		case <-e.changed:
		case <-timeout.C:
			e.t.Fatalf("waited %s for %d message(s) on %s, got %d", deadline, n, subject, len(got))
		}
	}
}

// forScript keeps messages whose data names scriptID.
func forScript(scriptID string) func(jetstream.Msg) bool {
	return func(m jetstream.Msg) bool {
		var v struct {
			ScriptID string `json:"scriptId"`
		}
		return json.Unmarshal(m.Data(), &v) == nil && v.ScriptID == scriptID
	}
}

// eventually polls cond until it holds, up to the deadline (for state only
// visible over HTTP).
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(deadline)
	defer timeout.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout.C:
			e.t.Fatalf("waited %s for %s", deadline, what)
		}
	}
}

// getJSON fetches path from the service's HTTP API.
func (e *env) getJSON(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get("http://" + e.httpAddr + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			e.t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}
