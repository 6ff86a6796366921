package servicekit_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
)

// RunWith runs a pruner alongside the kit, stops it with the kit and reports
// a stop through the context as clean.
func TestRunWithPruner(t *testing.T) {
	srv := bustest.StartJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kit, err := servicekit.Start(ctx, servicekit.Config{Name: "kittest", NATSURL: srv.URL(), DataDir: t.TempDir(),
		HTTPAddr: "127.0.0.1:0", Workers: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var cutoffAge atomic.Int64
	prune := func(cutoff time.Time) (int, error) {
		cutoffAge.Store(int64(time.Since(cutoff)))
		calls.Add(1)
		return 1, nil
	}
	var stopped atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- kit.RunWith(ctx, kit.Pruner("test entries", 4*time.Second, prune), func(ctx context.Context) {
			<-ctx.Done()
			stopped.Store(true)
		})
	}()
	bustest.Eventually(t, 30*time.Second, "a prune", func() bool { return calls.Load() > 0 })
	if age := time.Duration(cutoffAge.Load()); age < 4*time.Second || age > 30*time.Second {
		t.Errorf("cutoff %s before now, want 4s", age)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil || !stopped.Load() {
			t.Errorf("RunWith returned %v, tasks stopped: %v", err, stopped.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunWith did not return")
	}
}
