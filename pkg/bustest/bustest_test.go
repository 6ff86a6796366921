package bustest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

func TestPublishReadAndRestart(t *testing.T) {
	s := bustest.StartJetStream(t)
	rec := bustest.Record(t, s.JS, topology.StreamSteps.Name, topology.SEExecute("*"))
	for _, id := range []string{"e-1", "e-2"} {
		bustest.Publish(t, s.JS, topology.SEExecute("0A01"), bustest.Event{ID: id, Type: "tsmhub.test.v1", Subject: "0A01",
			Correlation: "corr-" + id, Data: map[string]string{"id": id}})
	}
	bustest.Publish(t, s.JS, topology.SEExecuted("0A01"), bustest.Event{Type: "tsmhub.test.v1", Data: 1})
	// The same ce-id again: absorbed by the duplicate window unless MsgID differs.
	bustest.Publish(t, s.JS, topology.SEExecute("0A01"), bustest.Event{ID: "e-1", Type: "tsmhub.test.v1", Data: 1})
	bustest.Publish(t, s.JS, topology.SEExecute("0A01"), bustest.Event{ID: "e-1", Type: "tsmhub.test.v1", Data: 1, MsgID: "e-1-again"})

	m := bustest.NextMessage(t, s.JS, topology.StreamSteps.Name, topology.SEExecute("0A01"), 10*time.Second)
	ev, err := bus.Decode(m.Headers(), m.Data())
	if err != nil || ev.ID() != "e-1" || ev.Source() != bustest.Source || ev.Subject() != "0A01" ||
		bus.StringExtension(ev, bus.ExtCorrelationID) != "corr-e-1" || m.Headers().Get(bus.HeaderMsgID) != "e-1" {
		t.Fatalf("first message %v %v (%v)", m.Headers(), ev, err)
	}
	if n := bustest.CountMessages(t, s.JS, topology.StreamSteps.Name, topology.SEExecute("*")); n != 3 {
		t.Errorf("count %d, want 3", n)
	}
	if n := bustest.CountMessages(t, s.JS, topology.StreamSteps.Name, ""); n != 4 {
		t.Errorf("count of the stream %d, want 4", n)
	}
	if got := bustest.Collect(t, s.JS, topology.StreamSteps.Name, ""); len(got) != 4 || got[2].Subject() != topology.SEExecuted("0A01") {
		t.Errorf("collected %d messages", len(got))
	}
	bustest.Eventually(t, 10*time.Second, "three recorded messages", func() bool { return len(rec.Messages()) == 3 })
	if got := rec.Wait(t, 10*time.Second, "e-2", 1, func(m jetstream.Msg) bool { return m.Headers().Get("ce-id") == "e-2" }); len(got) != 1 {
		t.Errorf("waited for %d messages", len(got))
	}
	rec.Stop()

	url := s.URL()
	s.Restart(t)
	if s.URL() != url {
		t.Errorf("URL %s after restart, was %s", s.URL(), url)
	}
	if n := bustest.CountMessages(t, s.JS, topology.StreamSteps.Name, ""); n != 4 {
		t.Errorf("count after restart %d, want 4", n)
	}
}

func TestStartService(t *testing.T) {
	stopped := make(chan struct{})
	svc := bustest.StartService(t, func(ctx context.Context, bound chan<- string) error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/empty" {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			fmt.Fprint(w, `{"n":7}`)
		})}
		go func() { <-ctx.Done(); srv.Close() }()
		bound <- l.Addr().String()
		_ = srv.Serve(l)
		close(stopped)
		return nil
	})
	var v struct{ N int }
	if code := svc.GetJSON(t, "/x", &v); code != http.StatusOK || v.N != 7 {
		t.Errorf("GET /x: %d %+v", code, v)
	}
	if code := svc.GetJSON(t, "/empty", &v); code != http.StatusNotFound {
		t.Errorf("GET /empty: %d", code)
	}
	svc.Stop(t)
	select {
	case <-stopped:
	default:
		t.Error("Stop returned before run")
	}
	svc.Stop(t)
}

func TestEventuallyReport(t *testing.T) {
	n := 0
	bustest.EventuallyReport(t, 10*time.Second, "three polls", func() (bool, string) {
		n++
		return n == 3, ""
	})
	var buf bustest.Buffer
	_, _ = buf.Write([]byte("x"))
	if buf.String() != "x" {
		t.Errorf("buffer %q", buf.String())
	}
}
