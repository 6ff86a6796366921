package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

func testEvent(t *testing.T, id string, data any) bus.Outgoing {
	t.Helper()
	ev, err := bus.NewEvent(id, "urn:tsm:svc:test", "tsmhub.test.v1", "SE01", data)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Outgoing{Event: ev}
}

func TestEncodeDecodeBinaryRoundTrip(t *testing.T) {
	ev := testEvent(t, "id-1", map[string]int{"n": 1}).Event
	ev.SetExtension(bus.ExtCorrelationID, "req-9")
	m, err := bus.Encode("tsm.se.SE01.execute", ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(bus.HeaderMsgID); got != "id-1" {
		t.Fatalf("Nats-Msg-Id = %q, want ce-id", got)
	}
	if m.Header.Get("ce-specversion") != "1.0" || m.Header.Get("ce-type") != "tsmhub.test.v1" {
		t.Fatalf("binary headers missing: %v", m.Header)
	}
	back, err := bus.Decode(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != "id-1" || back.Subject() != "SE01" || bus.StringExtension(back, bus.ExtCorrelationID) != "req-9" {
		t.Fatalf("round trip lost attributes: %v", back)
	}
	if string(back.Data()) != `{"n":1}` {
		t.Fatalf("data = %s", back.Data())
	}
}

func TestDecodeAcceptsPlainContentTypeAndAnyHeaderCase(t *testing.T) {
	h := nats.Header{}
	h["Ce-Specversion"] = []string{"1.0"}
	h["CE-ID"] = []string{"x"}
	h["ce-source"] = []string{"urn:tsm:sp:bank1"}
	h["ce-type"] = []string{"tsm.get-se-id.request"}
	h["content-type"] = []string{"application/json"}
	ev, err := bus.Decode(h, []byte(`{"msi":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID() != "x" || ev.DataContentType() != "application/json" {
		t.Fatalf("decoded %v", ev)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("valid event rejected: %v", err)
	}
}

func TestDecodeStructuredMode(t *testing.T) {
	h := nats.Header{}
	h.Set("content-type", "application/cloudevents+json")
	body := `{"specversion":"1.0","id":"s1","source":"urn:tsm:sp:bank1","type":"tsm.get-se-id.request","datacontenttype":"application/json","data":{"msi":"1"}}`
	ev, err := bus.Decode(h, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID() != "s1" || string(ev.Data()) != `{"msi":"1"}` {
		t.Fatalf("structured decode: %v %s", ev, ev.Data())
	}
}

func TestDecodeRejectsNonCloudEvent(t *testing.T) {
	h := nats.Header{}
	h.Set("ce-id", "abc")
	ev, err := bus.Decode(h, []byte("hello"))
	if !errors.Is(err, bus.ErrNotCloudEvent) {
		t.Fatalf("err = %v, want ErrNotCloudEvent", err)
	}
	if ev.ID() != "abc" {
		t.Fatalf("id not kept for answering: %q", ev.ID())
	}
}

func openStore(t *testing.T, path string) *bus.Store {
	t.Helper()
	s, err := bus.OpenStore(bus.StoreConfig{Path: path, Buckets: []string{"state"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer s.Close()
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.Update(func(tx *bus.Tx) error {
				if err := tx.Bucket([]byte("state")).Put([]byte(fmt.Sprint(i)), []byte("v")); err != nil {
					return err
				}
				if i%10 == 0 {
					return fmt.Errorf("fail %d", i)
				}
				if i%17 == 0 {
					panic("boom")
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	n := 0
	_ = s.DB().View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("state")).Stats().KeyN
		return nil
	})
	want := 0
	for i := 0; i < 200; i++ {
		failed := i%10 == 0 || i%17 == 0
		if failed != (errs[i] != nil) {
			t.Fatalf("tx %d: err = %v", i, errs[i])
		}
		if !failed {
			want++
		}
	}
	if n != want {
		t.Fatalf("committed %d keys, want %d: a failing transaction affected others", n, want)
	}
}

func TestMarkProcessedAndAcceptRequest(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer s.Close()
	var first, second bool
	_ = s.Update(func(tx *bus.Tx) error { first, _ = tx.MarkProcessed("c", "e1"); return nil })
	_ = s.Update(func(tx *bus.Tx) error { second, _ = tx.MarkProcessed("c", "e1"); return nil })
	if !first || second {
		t.Fatalf("MarkProcessed first=%v second=%v", first, second)
	}
	ev := testEvent(t, "r1", map[string]string{"status": "Executed-Success"}).Event
	err := s.Update(func(tx *bus.Tx) error {
		_, seen, err := tx.AcceptRequest("bank1/req1")
		if err != nil || seen {
			return fmt.Errorf("first accept: seen=%v err=%v", seen, err)
		}
		return tx.EmitReply("bank1/req1", "tsm.sp.bank1.res.get-se-id", ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Update(func(tx *bus.Tx) error {
		replies, seen, err := tx.AcceptRequest("bank1/req1")
		if err != nil || !seen || len(replies) != 1 || replies[0].Event.ID() != "r1" {
			t.Errorf("second accept: seen=%v replies=%v err=%v", seen, replies, err)
		}
		return nil
	})
	if got := s.OutboxLen(); got != 1 {
		t.Fatalf("outbox has %d entries, want 1", got)
	}
}

// TestOutboxRelaySurvivesRestart commits events, closes the store before any
// relay ran (a crash after commit), reopens it and checks every event is
// published exactly once, in order.
func TestOutboxRelaySurvivesRestart(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path)
	for i := 0; i < 50; i++ {
		err := s.Update(func(tx *bus.Tx) error {
			ev := testEvent(t, fmt.Sprintf("ev-%03d", i), map[string]int{"i": i}).Event
			return tx.Emit(topology.SEExecute("SE01"), ev)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openStore(t, path)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.RunRelay(ctx, js, nil)
	// Run a second relay on the same store to show duplicates are absorbed.
	go s.RunRelay(ctx, js, nil)
	bustest.Eventually(t, 10*time.Second, "outbox drained", func() bool { return s.OutboxLen() == 0 })
	str, err := js.Stream(ctx, topology.StreamSteps.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := str.Info(ctx)
	if info.State.Msgs != 50 {
		t.Fatalf("stream holds %d messages, want 50 (no loss, no duplicate)", info.State.Msgs)
	}
	for seq := uint64(1); seq <= 50; seq++ {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("ev-%03d", seq-1); m.Header.Get("ce-id") != want {
			t.Fatalf("seq %d is %s, want %s (order)", seq, m.Header.Get("ce-id"), want)
		}
	}
}

func publish(t *testing.T, js jetstream.JetStream, subject, id string, data any) {
	t.Helper()
	bustest.Publish(t, js, subject, bustest.Event{ID: id, Type: "tsmhub.test.v1", Subject: "SE01", Data: data})
}

func testConsumer(name string) topology.Consumer {
	return topology.Consumer{Service: "test", Name: name, Stream: topology.StreamSteps.Name,
		FilterSubjects: []string{"tsm.se.*.execute"}, OrderingToken: 2, MaxDeliver: 3}
}

func runRouter(t *testing.T, js jetstream.JetStream, c topology.Consumer, h bus.Handler) context.CancelFunc {
	t.Helper()
	r := bus.NewRouter(bus.RouterConfig{JetStream: js, Workers: 8, RetryDelays: []time.Duration{time.Millisecond}})
	r.Handle(c, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func TestRouterKeepsPerSEOrderAcrossParallelSEs(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	const ses, per = 20, 25
	for i := 0; i < per; i++ {
		for s := 0; s < ses; s++ {
			publish(t, js, topology.SEExecute(fmt.Sprintf("SE%02d", s)), fmt.Sprintf("e-%d-%d", s, i), map[string]int{"i": i})
		}
	}
	var mu sync.Mutex
	last := map[string]int{}
	var total atomic.Int64
	var violations atomic.Int64
	runRouter(t, js, testConsumer("order"), func(_ context.Context, d *bus.Delivery) error {
		var p struct{ I int }
		if err := json.Unmarshal(d.Event.Data(), &p); err != nil {
			return bus.Permanent(err)
		}
		se := d.Token(2)
		mu.Lock()
		if prev, ok := last[se]; ok && p.I != prev+1 {
			violations.Add(1)
		}
		last[se] = p.I
		mu.Unlock()
		total.Add(1)
		return nil
	})
	bustest.Eventually(t, 20*time.Second, "all messages handled", func() bool { return total.Load() == ses*per })
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d per-SE order violations", v)
	}
}

func TestRouterRetriesThenDeadLetters(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	var transientCalls, permanentCalls, panicCalls, okAfterRetry atomic.Int64
	runRouter(t, js, testConsumer("dlq"), func(_ context.Context, d *bus.Delivery) error {
		switch d.Event.ID() {
		case "always-fails":
			transientCalls.Add(1)
			return errors.New("backend unavailable")
		case "poison":
			permanentCalls.Add(1)
			return bus.Permanent(errors.New("cannot decode payload"))
		case "panics":
			panicCalls.Add(1)
			panic("handler bug")
		case "flaky":
			if okAfterRetry.Add(1) < 2 {
				return errors.New("first try fails")
			}
			return nil
		}
		return nil
	})
	dlq, err := js.OrderedConsumer(context.Background(), topology.StreamDeadLetters.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"always-fails", "poison", "panics", "flaky"} {
		publish(t, js, topology.SEExecute("SE01"), id, map[string]int{})
	}
	reasons := map[string]string{}
	for len(reasons) < 3 {
		m, err := dlq.Next(jetstream.FetchMaxWait(15 * time.Second))
		if err != nil {
			t.Fatalf("waiting for dead letters (have %v): %v", reasons, err)
		}
		reasons[m.Headers().Get("ce-id")] = m.Headers().Get(bus.HeaderDLQReason)
		if m.Subject() != topology.DeadLetter("test", "dlq") {
			t.Fatalf("dead letter subject %s", m.Subject())
		}
	}
	if transientCalls.Load() != 3 {
		t.Fatalf("transient error tried %d times, want MaxDeliver=3", transientCalls.Load())
	}
	if permanentCalls.Load() != 1 || panicCalls.Load() != 1 {
		t.Fatalf("permanent tried %d, panic tried %d; want 1 each", permanentCalls.Load(), panicCalls.Load())
	}
	if reasons["poison"] != "cannot decode payload" || reasons["always-fails"] != "backend unavailable" {
		t.Fatalf("reasons: %v", reasons)
	}
	if _, ok := reasons["flaky"]; ok {
		t.Fatal("a message that succeeded on retry was dead-lettered")
	}
	bustest.Eventually(t, 10*time.Second, "flaky message retried and handled", func() bool { return okAfterRetry.Load() == 2 })
}

// TestRouterRedeliversUnackedAfterRestart stops a router while a message is
// mid-handler (like a crash before the ack) and checks a new router gets it.
func TestRouterRedeliversUnackedAfterRestart(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	c := testConsumer("restart")
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	r := bus.NewRouter(bus.RouterConfig{JetStream: js, Workers: 2, AckWait: time.Second})
	r.Handle(c, func(ctx context.Context, d *bus.Delivery) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-block
		return errors.New("interrupted")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	publish(t, js, topology.SEExecute("SE01"), "m1", map[string]int{})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never started")
	}
	cancel()
	close(block)
	<-done
	got := make(chan string, 4)
	runRouter(t, js, c, func(_ context.Context, d *bus.Delivery) error {
		got <- d.Event.ID()
		return nil
	})
	select {
	case id := <-got:
		if id != "m1" {
			t.Fatalf("got %s", id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("unacked message not redelivered after restart")
	}
}

func TestPruneInboxRemovesOldRecordsOnly(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer s.Close()
	_ = s.Update(func(tx *bus.Tx) error {
		_, err := tx.MarkProcessed("c", "recent")
		return err
	})
	if n, err := s.PruneInbox(time.Hour); err != nil || n != 0 {
		t.Fatalf("pruned %d recent records (err %v)", n, err)
	}
	if ok, _ := s.Processed("c", "recent"); !ok {
		t.Fatal("recent record lost")
	}
	if n, err := s.PruneInbox(-time.Hour); err != nil || n != 1 {
		t.Fatalf("pruned %d records older than the cutoff, want 1 (err %v)", n, err)
	}
	if ok, _ := s.Processed("c", "recent"); ok {
		t.Fatal("pruned record still reported as processed")
	}
}

func TestDeliveryDecodeAs(t *testing.T) {
	ev := testEvent(t, "d-1", map[string]string{"seId": "SE01"}).Event
	var v struct{ SEID string }
	d := &bus.Delivery{Subject: "tsm.se.SE01.execute", Event: ev}
	if err := d.DecodeAs("tsmhub.test.v1", &v); err != nil || v.SEID != "SE01" {
		t.Fatalf("DecodeAs: %v %+v", err, v)
	}
	if err := d.DecodeAs("tsmhub.other.v1", &v); err == nil || !strings.Contains(err.Error(), `want "tsmhub.other.v1"`) {
		t.Errorf("other type: %v", err)
	}
	if err := d.DecodeAs("tsmhub.test.v1", &[]int{}); err == nil || !strings.Contains(err.Error(), "data of tsmhub.test.v1") {
		t.Errorf("data of another shape: %v", err)
	}
	if err := (&bus.Delivery{DecodeErr: bus.ErrNotCloudEvent}).DecodeAs("tsmhub.test.v1", &v); !errors.Is(err, bus.ErrNotCloudEvent) {
		t.Errorf("not a CloudEvent: %v", err)
	}
	bad := ev.Clone()
	bad.SetSource("")
	if err := (&bus.Delivery{Event: bad}).DecodeAs("tsmhub.test.v1", &v); err == nil || !strings.Contains(err.Error(), "invalid CloudEvent") {
		t.Errorf("invalid event: %v", err)
	}
}

func TestSchemasCheckEventNamesLocationsOnly(t *testing.T) {
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	ev, err := bus.NewEvent("c-1", "urn:tsm:sp:bank-a", "tsm.get-se-id.request", "", map[string]string{"msi": "SECRET4711x"})
	if err != nil {
		t.Fatal(err)
	}
	err = schemas.CheckEvent(ev, log)
	if err == nil || !strings.Contains(err.Error(), "tsm.get-se-id.request schema at /msi") {
		t.Fatalf("CheckEvent: %v", err)
	}
	if out := err.Error() + logged.String(); strings.Contains(out, "SECRET4711x") || !strings.Contains(logged.String(), "at=/msi") {
		t.Errorf("error or log quotes the value or lacks the location: %s", out)
	}
	ok, _ := bus.NewEvent("c-2", "urn:tsm:sp:bank-a", "tsm.get-se-id.request", "", map[string]string{"msi": "4915112345678"})
	noSchema := testEvent(t, "c-3", map[string]string{"x": "SECRET"}).Event
	var none *bus.Schemas
	if schemas.CheckEvent(ok, log) != nil || schemas.CheckEvent(noSchema, log) != nil || none.CheckEvent(ev, log) != nil {
		t.Error("valid data, a type without schema or no schemas at all rejected")
	}
}

func TestStoreDeleteWhere(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer s.Close()
	err := s.Update(func(tx *bus.Tx) error {
		for i := 0; i < 10; i++ {
			if err := tx.Bucket([]byte("state")).Put([]byte(fmt.Sprint(i)), []byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteWhere("state", func(_, v []byte) bool { return v[0]%2 == 0 })
	if err != nil || n != 5 {
		t.Fatalf("deleted %d (%v), want 5", n, err)
	}
	var left []string
	_ = s.DB().View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("state")).ForEach(func(k, _ []byte) error { left = append(left, string(k)); return nil })
	})
	if strings.Join(left, ",") != "1,3,5,7,9" {
		t.Errorf("left %v", left)
	}
	if _, err := s.DeleteWhere("nope", func(_, _ []byte) bool { return true }); err == nil {
		t.Error("missing bucket accepted")
	}
}

func TestTypedValidatesDecodesAndDeadLetters(t *testing.T) {
	srv := bustest.StartJetStream(t)
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	type execute struct {
		SEID     string   `json:"seId"`
		Commands []string `json:"commands"`
	}
	got := make(chan execute, 4)
	c := testConsumer("typed")
	runRouter(t, srv.JS, c, bus.Typed(schemas, "tsmhub.se.execute.v1", nil,
		func(_ context.Context, _ *bus.Delivery, ev execute) error {
			got <- ev
			return nil
		}))
	good := map[string]any{"request": map[string]string{"spId": "bank1", "requestId": "r1", "op": "send-script"},
		"conversationId": "cv-1", "scriptId": "sc-1", "seId": "0A01", "mno": "mno-a",
		"commands": []string{"00A4040000"}, "continueOnError": false}
	pub := func(id, ceType string, data any) {
		ev, err := bus.NewEvent(id, "urn:tsm:svc:test", ceType, "0A01", data)
		if err != nil {
			t.Fatal(err)
		}
		m, err := bus.Encode(topology.SEExecute("0A01"), ev)
		if err != nil {
			t.Fatal(err)
		}
		bustest.PublishMsg(t, srv.JS, m)
	}
	pub("typed-good", "tsmhub.se.execute.v1", good)
	pub("typed-bad", "tsmhub.se.execute.v1", map[string]any{"seId": 7})
	pub("typed-wrong", "tsmhub.other.v1", good)
	select {
	case e := <-got:
		if e.SEID != "0A01" || len(e.Commands) != 1 {
			t.Fatalf("decoded %+v", e)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("valid event not handled")
	}
	reasons := map[string]string{}
	bustest.Eventually(t, 15*time.Second, "two dead letters", func() bool {
		for _, m := range bustest.Collect(t, srv.JS, topology.StreamDeadLetters.Name, topology.DeadLetter("test", "typed")) {
			reasons[m.Headers().Get("ce-id")] = m.Headers().Get(bus.HeaderDLQReason)
		}
		return len(reasons) == 2
	})
	if !strings.Contains(reasons["typed-bad"], "schema") || strings.Contains(reasons["typed-bad"], "7") {
		t.Fatalf("schema failure reason %q (must name the location, not the value)", reasons["typed-bad"])
	}
	if !strings.Contains(reasons["typed-wrong"], "ce-type") {
		t.Fatalf("wrong type reason %q", reasons["typed-wrong"])
	}
	if len(got) != 0 {
		t.Fatal("an invalid event reached the handler")
	}
}
