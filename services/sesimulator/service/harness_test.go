package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/natsembed"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

// deadline bounds every wait: generous, for a loaded 2-core machine.
const deadline = 30 * time.Second

// harness is an embedded nats-server plus the se-simulator run in-process,
// both restartable on the same directories.
type harness struct {
	t        testing.TB
	natsDir  string
	dataDir  string
	cfg      service.Config
	ns       *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	httpBase string
	stop     func()
}

func newHarness(t testing.TB, configure func(*service.Config)) *harness {
	t.Helper()
	h := &harness{t: t, natsDir: t.TempDir(), dataDir: t.TempDir()}
	h.cfg = service.Config{EnrolmentGrace: 15 * time.Second, CacheCards: 64}
	if configure != nil {
		configure(&h.cfg)
	}
	h.startNATS()
	h.startService()
	t.Cleanup(h.shutdown)
	return h
}

func (h *harness) startNATS() {
	h.t.Helper()
	ns, err := natsembed.Start(natsembed.Config{Port: -1, StoreDir: h.natsDir})
	if err != nil {
		h.t.Fatal(err)
	}
	h.ns = ns
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		h.t.Fatal(err)
	}
	h.nc = nc
	if h.js, err = jetstream.New(nc); err != nil {
		h.t.Fatal(err)
	}
}

// testLog forwards warnings and errors of the service to the test log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (h *harness) startService() {
	h.t.Helper()
	cfg := h.cfg
	bound := make(chan string, 1)
	cfg.Kit = servicekit.Config{Name: service.Name, NATSURL: h.ns.ClientURL(), DataDir: h.dataDir,
		HTTPAddr: "127.0.0.1:0", HTTPBound: bound, Workers: 4,
		Log: slog.New(slog.NewTextHandler(testLog{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, cfg) }()
	select {
	case addr := <-bound:
		h.httpBase = "http://" + addr
	case err := <-done:
		cancel()
		h.t.Fatalf("service did not start: %v", err)
	case <-time.After(deadline):
		cancel()
		h.t.Fatal("service did not bind its HTTP address in time")
	}
	h.stop = func() {
		cancel()
		select {
		case err := <-done:
			// A stop right after the start can cancel the router while it
			// still creates its consumers: that is a clean stop too.
			if err != nil && !errors.Is(err, context.Canceled) {
				h.t.Errorf("service run: %v", err)
			}
		case <-time.After(deadline):
			h.t.Error("service did not stop in time")
		}
	}
}

// restart stops the service and the NATS server and starts both again on
// the same bbolt file and JetStream store.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.nc.Close()
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
	h.startNATS()
	h.startService()
}

func (h *harness) shutdown() {
	if h.stop != nil {
		h.stop()
	}
	h.nc.Close()
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
}

// eventually polls cond until it holds or the deadline passes.
func (h *harness) eventually(what string, cond func() (bool, string)) {
	h.t.Helper()
	end := time.Now().Add(deadline)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(end) {
			h.t.Fatalf("timed out waiting for %s; last state: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// publish sends an event as the upstream service would; msgID overrides
// Nats-Msg-Id (simulating a redelivery past the dedup window) when set.
func (h *harness) publish(subject string, ev event.Event, msgID string) uint64 {
	h.t.Helper()
	m, err := bus.Encode(subject, ev)
	if err != nil {
		h.t.Fatal(err)
	}
	if msgID != "" {
		m.Header.Set(bus.HeaderMsgID, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	ack, err := h.js.PublishMsg(ctx, m)
	if err != nil {
		h.t.Fatal(err)
	}
	return ack.Sequence
}

func (h *harness) enrol(rec events.SERecord) uint64 {
	h.t.Helper()
	ev, err := bus.NewEvent(bus.NewID(), topology.ServiceSourcePrefix+"registry", events.TypeRegistrySE, rec.SEID, rec)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.publish(topology.RegistrySE(rec.SEID), ev, "")
}

// executeEvent builds the execute event of a script as the MNO adapter sends it.
func (h *harness) executeEvent(seID, conversationID, scriptID string, commands ...string) event.Event {
	h.t.Helper()
	ex := events.SEExecute{Request: events.RequestRef{SPID: cardtest.SPID, RequestID: "req-" + scriptID, Op: topology.OpSendScript},
		ConversationID: conversationID, ScriptID: scriptID, SEID: seID, MNO: "mno-a", Commands: commands}
	ev, err := bus.NewEvent(bus.NewID(), topology.ServiceSourcePrefix+"mnoadapter", events.TypeSEExecute, seID, ex)
	if err != nil {
		h.t.Fatal(err)
	}
	ev.SetExtension(bus.ExtCorrelationID, "req-"+scriptID)
	return ev
}

// executed is one SEExecuted event read back from the stream.
type executed struct {
	Event  event.Event
	Result events.SEExecuted
}

// executedEvents reads every SEExecuted of an SE from the steps stream.
func (h *harness) executedEvents(seID string) []executed {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, topology.StreamSteps.Name,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{topology.SEExecuted(seID)}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []executed
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			h.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := bus.Decode(m.Headers(), m.Data())
			if err != nil {
				h.t.Fatalf("executed event does not decode: %v", err)
			}
			var r events.SEExecuted
			if err := json.Unmarshal(ev.Data(), &r); err != nil {
				h.t.Fatal(err)
			}
			out = append(out, executed{Event: ev, Result: r})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			h.t.Fatal(err)
		}
		if n == 0 {
			return out
		}
	}
}

// waitExecuted waits for the result of a script and returns it.
func (h *harness) waitExecuted(seID, scriptID string) executed {
	h.t.Helper()
	var found executed
	h.eventually("result of script "+scriptID, func() (bool, string) {
		all := h.executedEvents(seID)
		for _, e := range all {
			if e.Result.ScriptID == scriptID {
				found = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d results for SE %s", len(all), seID)
	})
	return found
}

// waitConsumed waits until a consumer acknowledged every message up to seq.
func (h *harness) waitConsumed(c topology.Consumer, seq uint64) {
	h.t.Helper()
	h.eventually(c.Name+" to pass sequence "+fmt.Sprint(seq), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := h.js.Consumer(ctx, c.Stream, c.Name)
		if err != nil {
			return false, err.Error()
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream >= seq, fmt.Sprintf("ack floor %d", info.AckFloor.Stream)
	})
}

// getJSON fetches an HTTP resource; it returns the status code.
func (h *harness) getJSON(path string, out any) int {
	h.t.Helper()
	resp, err := http.Get(h.httpBase + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// waitCard waits until the SE's card is visible through the HTTP API.
func (h *harness) waitCard(seID string) {
	h.t.Helper()
	h.eventually("card of SE "+seID, func() (bool, string) {
		code := h.getJSON("/v1/cards/"+seID, nil)
		return code == http.StatusOK, fmt.Sprintf("HTTP %d", code)
	})
}

// sws returns the status words of a result's responses.
func sws(t *testing.T, r events.SEExecuted) []string {
	t.Helper()
	out := make([]string, len(r.Responses))
	for i, x := range r.Responses {
		out[i] = fmt.Sprintf("%04X", cardtest.SW(t, x))
	}
	return out
}
