package servicekit_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// A partitioned replica is ready only once the partitions it owns serve: by
// the first 200 from /readyz every partition's consumer exists on the server.
func TestPartitionedReadyOnceServing(t *testing.T) {
	srv := bustest.StartJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := make(chan string, 1)
	kit, err := servicekit.StartPartitioned(ctx, servicekit.Config{Name: "parttest", NATSURL: srv.URL(),
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", HTTPBound: bound, Workers: 1, Partitions: 2,
		RebalanceInterval: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- kit.RunPartitioned(ctx, func(p *servicekit.Partition) error {
			p.Handle(topology.ConversationBegins, func(context.Context, *bus.Delivery) error { return nil })
			p.HandleAll(topology.ScriptRouterRegistry, func(context.Context, *bus.Delivery) error { return nil })
			return nil
		})
	}()
	var addr string
	select {
	case addr = <-bound:
	case <-time.After(30 * time.Second):
		t.Fatal("no HTTP address")
	}
	bustest.Eventually(t, 30*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if n := len(kit.OwnedPartitions()); n != 2 {
		t.Fatalf("ready owning %d partitions, want 2", n)
	}
	for _, name := range []string{"conversation-begin-p0", "conversation-begin-p1"} {
		if _, err := kit.JS.Consumer(ctx, topology.StreamSteps.Name, name); err != nil {
			t.Errorf("ready, but consumer %s: %v", name, err)
		}
	}
	for _, name := range []string{"scriptrouter-registry-p0", "scriptrouter-registry-p1"} {
		if _, err := kit.JS.Consumer(ctx, topology.ScriptRouterRegistry.Stream, name); err != nil {
			t.Errorf("ready, but consumer %s: %v", name, err)
		}
	}
	for _, p := range kit.OwnedPartitions() {
		if !p.Serving() {
			t.Errorf("partition %d not serving while ready", p.Index)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunPartitioned: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunPartitioned did not return")
	}
}
