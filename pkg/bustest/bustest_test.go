package bustest_test

import (
	"context"
	"testing"
	"time"

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

	m := bustest.NextMessage(t, s.JS, topology.StreamSteps.Name, topology.SEExecute("0A01"), 10*time.Second)
	ev, err := bus.Decode(m.Headers(), m.Data())
	if err != nil || ev.ID() != "e-1" || ev.Source() != bustest.Source || ev.Subject() != "0A01" ||
		bus.StringExtension(ev, bus.ExtCorrelationID) != "corr-e-1" || m.Headers().Get(bus.HeaderMsgID) != "e-1" {
		t.Fatalf("first message %v %v (%v)", m.Headers(), ev, err)
	}
	if n := bustest.CountMessages(t, s.JS, topology.StreamSteps.Name, topology.SEExecute("*")); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
	if n := bustest.CountMessages(t, s.JS, topology.StreamSteps.Name, ""); n != 3 {
		t.Errorf("count of the stream %d, want 3", n)
	}
	if got := bustest.Collect(t, s.JS, topology.StreamSteps.Name, ""); len(got) != 3 || got[2].Subject() != topology.SEExecuted("0A01") {
		t.Errorf("collected %d messages", len(got))
	}
	bustest.Eventually(t, 10*time.Second, "two recorded messages", func() bool { return len(rec.Messages()) == 2 })
	rec.Stop()

	url := s.URL()
	s.Restart(t)
	if s.URL() != url {
		t.Errorf("URL %s after restart, was %s", s.URL(), url)
	}
	if n := bustest.CountMessages(t, s.JS, topology.StreamSteps.Name, ""); n != 3 {
		t.Errorf("count after restart %d, want 3", n)
	}
}

func TestStartService(t *testing.T) {
	stopped := make(chan struct{})
	svc := bustest.StartService(t, func(ctx context.Context, bound chan<- string) error {
		bound <- "127.0.0.1:1"
		<-ctx.Done()
		close(stopped)
		return nil
	})
	if svc.Addr != "127.0.0.1:1" {
		t.Errorf("addr %q", svc.Addr)
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
