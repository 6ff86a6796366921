package ports

import (
	"context"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"

	"github.com/tsmhub/tsmhub/services/conversation/adapters"
	"github.com/tsmhub/tsmhub/services/conversation/app"
)

// Sweeper expires conversations and waiting begins whose time ran out. Each SE
// is swept in its own transaction, through the same use case and outbox as
// every other change, and a sweep re-checks the state it acts on, so running
// it twice (or next to a handler touching the same SE) is harmless.
type Sweeper struct {
	App      *app.Service
	Store    *bus.Store
	Interval time.Duration
	Log      *slog.Logger
	Metrics  *Metrics
}

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
				s.Log.Warn("expiry sweep failed, retrying at the next tick", "error", err)
				if s.Metrics != nil {
					s.Metrics.sweepErr.Inc()
				}
			}
		}
	}
}

// SweepOnce expires what ran out by now.
func (s *Sweeper) SweepOnce(ctx context.Context) error {
	now := time.Now().UTC()
	if s.App.Now != nil {
		now = s.App.Now().UTC()
	}
	var ses []string
	err := s.Store.DB().View(func(tx *bolt.Tx) error {
		var err error
		ses, err = adapters.NewRepository(tx).SEsToSweep(now)
		return err
	})
	if err != nil {
		return err
	}
	for _, seID := range ses {
		if ctx.Err() != nil {
			return nil
		}
		var report app.Report
		err := s.Store.Update(func(tx *bus.Tx) error {
			var err error
			report, err = s.App.Sweep(adapters.NewUnitOfWork(tx), seID)
			return err
		})
		if err != nil {
			return err
		}
		observe(s.Log, s.Metrics, report)
	}
	return nil
}
