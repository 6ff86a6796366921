package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// With CreateConcurrently the consumers are created at the same time (a slow
// creation does not hold the others back) and each handles its messages.
func TestRouterCreatesConsumersConcurrently(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	publish(t, js, topology.SEExecute("SE01"), "c-1", map[string]int{"i": 1})
	var inCreate, maxInCreate atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	r := bus.NewRouter(bus.RouterConfig{JetStream: js, Workers: 2, CreateConcurrently: true,
		CreateConsumer: func(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
			n := inCreate.Add(1)
			for {
				m := maxInCreate.Load()
				if n <= m || maxInCreate.CompareAndSwap(m, n) {
					break
				}
			}
			if n == 3 {
				once.Do(func() { close(release) })
			}
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			inCreate.Add(-1)
			return js.CreateOrUpdateConsumer(ctx, stream, cfg)
		}})
	var handled [3]atomic.Int32
	for i, name := range []string{"conc-a", "conc-b", "conc-c"} {
		r.Handle(testConsumer(name), func(context.Context, *bus.Delivery) error {
			handled[i].Add(1)
			return nil
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	bustest.Eventually(t, 20*time.Second, "the message handled by each consumer", func() bool {
		return handled[0].Load() == 1 && handled[1].Load() == 1 && handled[2].Load() == 1
	})
	if m := maxInCreate.Load(); m != 3 {
		t.Errorf("at most %d consumers were being created at once, want 3", m)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// A consumer that cannot be created stops the others, and Run returns why.
func TestRouterConcurrentCreateErrorStopsRun(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	boom := errors.New("boom")
	r := bus.NewRouter(bus.RouterConfig{JetStream: js, Workers: 1, CreateConcurrently: true,
		CreateConsumer: func(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
			if cfg.Durable == "conc-bad" {
				return nil, boom
			}
			return js.CreateOrUpdateConsumer(ctx, stream, cfg)
		}})
	r.Handle(testConsumer("conc-good"), func(context.Context, *bus.Delivery) error { return nil })
	r.Handle(testConsumer("conc-bad"), func(context.Context, *bus.Delivery) error { return nil })
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("Run returned %v, want boom", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after a creation error")
	}
}
