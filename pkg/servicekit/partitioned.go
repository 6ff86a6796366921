package servicekit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/partition"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// partitionOpenTimeout bounds the wait for a partition's store lock: a
// partition still held by its previous owner is tried again next round.
const partitionOpenTimeout = 200 * time.Millisecond

// partitionPullExpiry bounds how long a partition's consumer stays stalled on
// a pull request the server lost: with P partitions a replica creates P times
// as many consumers at start, and on a three-node cluster a pull sent to a
// consumer whose raft group was still settling went unanswered for the
// client's default 30 s.
const partitionPullExpiry = 6 * time.Second

// PartitionsFromEnv reads PARTITIONS (default 1) and
// PARTITION_REBALANCE_INTERVAL (default 1s) into cfg. Only services whose
// state is partitioned by SE (conversation, script router) call it.
func PartitionsFromEnv(cfg *Config) error {
	var err error
	if cfg.Partitions, err = ops.EnvInt("PARTITIONS", 1); err != nil {
		return err
	}
	if cfg.Partitions < 1 || cfg.Partitions > 1024 {
		return fmt.Errorf("PARTITIONS=%d: want 1 to 1024 (at least the most replicas you will run; fixed for the deployment's lifetime)", cfg.Partitions)
	}
	if cfg.RebalanceInterval, err = ops.EnvDuration("PARTITION_REBALANCE_INTERVAL", time.Second); err != nil {
		return err
	}
	if cfg.RebalanceInterval <= 0 {
		return fmt.Errorf("PARTITION_REBALANCE_INTERVAL=%s: want a positive duration such as 1s", cfg.RebalanceInterval)
	}
	return nil
}

// StartPartitioned connects and creates the streams like Start, but opens no
// store: RunPartitioned opens the stores of the partitions this process takes.
func StartPartitioned(ctx context.Context, cfg Config) (*Kit, error) {
	if cfg.Partitions < 1 {
		cfg.Partitions = 1
	}
	return connect(ctx, cfg)
}

// Partition is one partition of a partitioned service, as the process that
// owns it runs it: its own store (outbox relay and inbox pruner included),
// its own router and its own background tasks.
type Partition struct {
	// Index is k, Count is P.
	Index, Count int
	// Store is the partition's bbolt file, DATA_DIR/p<k>/<service>.db
	// (DATA_DIR/<service>.db when P is 1).
	Store *bus.Store
	// Kit is the process's kit (schemas, logger, ops server, JetStream).
	Kit *Kit
	// Log names the partition.
	Log *slog.Logger
	// Value is the service's own per-partition state (its use cases, for
	// the HTTP API).
	Value any

	router *bus.Router
	tasks  []func(context.Context)
	// routes counts the consumers Handle and HandleAll added; created counts
	// those the router has created (or taken over) since the partition was
	// acquired. The partition serves once both agree.
	routes   int
	created  atomic.Int32
	acquired time.Time
}

// Serving reports whether every consumer of the partition has been created
// (with a leader, partition.Takeover), i.e. whether its messages flow.
func (p *Partition) Serving() bool { return int(p.created.Load()) >= p.routes }

// Handle runs h on consumer c for this partition: the durable name gets the
// suffix -p<k> (when P > 1) and messages of other partitions are
// acknowledged without reaching h (partition.Filter).
func (p *Partition) Handle(c topology.Consumer, h bus.Handler) {
	h = partition.Filter(c, p.Index, p.Count, h)
	c.Name = partition.ConsumerName(c.Name, p.Index, p.Count)
	p.routes++
	p.router.Handle(c, h)
}

// HandleAll runs h on consumer c for this partition with every message (a
// projection each partition keeps whole, such as the script router's view of
// the registry).
func (p *Partition) HandleAll(c topology.Consumer, h bus.Handler) {
	c.Name = partition.ConsumerName(c.Name, p.Index, p.Count)
	p.routes++
	p.router.Handle(c, h)
}

// Go runs task while this process owns the partition (sweepers, pruners);
// its context ends when the partition is released.
func (p *Partition) Go(task func(context.Context)) { p.tasks = append(p.tasks, task) }

// NewID makes an id that carries this partition (partition.NewID).
func (p *Partition) NewID(prefix string) string { return partition.NewID(prefix, p.Index, p.Count) }

// partitions are the partitions this process owns.
type partitions struct {
	mu    sync.RWMutex
	owned map[int]*Partition
	mgr   *partition.Manager
}

// PartitionCount is P (1 for a kit that is not partitioned).
func (k *Kit) PartitionCount() int { return max(k.Config.Partitions, 1) }

// PartitionOf returns the partition of key and whether this process owns
// it (nil when it does not: another replica serves it).
func (k *Kit) PartitionOf(key string) (*Partition, int) {
	n := partition.Of(key, k.PartitionCount())
	k.parts.mu.RLock()
	defer k.parts.mu.RUnlock()
	return k.parts.owned[n], n
}

// OwnedPartitions returns the partitions this process owns, by index.
func (k *Kit) OwnedPartitions() []*Partition {
	k.parts.mu.RLock()
	defer k.parts.mu.RUnlock()
	ps := make([]*Partition, 0, len(k.parts.owned))
	for _, p := range k.parts.owned {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Index < ps[j].Index })
	return ps
}

// ErrNotOwned says which partition serves a key another replica owns; the
// HTTP APIs answer it with 404.
func ErrNotOwned(n int) error {
	return fmt.Errorf("served by another replica (partition %d is not owned by this one; ask the others, or wait for a rebalance)", n)
}

// RunPartitioned serves until ctx ends: it joins the replicas sharing
// DATA_DIR, takes and releases partitions as they rebalance (pkg/partition),
// and runs the HTTP server. setup builds a partition the process has just
// taken: use cases over p.Store, handlers with p.Handle, tasks with p.Go;
// an error gives the partition back. /readyz is ready once the member is
// registered and every partition it owns is serving (its consumers created,
// each with a leader): a standby without partitions is ready; a replica that
// has just taken partitions is not ready until their messages flow. On the
// three-node compose cluster creating a partition's four new consumers one
// after the other took 2-2.5 s (each waits for its leader), more under load,
// and requests sent meanwhile waited for them; they are created concurrently
// (bus.RouterConfig.CreateConcurrently).
func (k *Kit) RunPartitioned(ctx context.Context, setup func(p *Partition) error) error {
	n := k.PartitionCount()
	mgr, err := partition.Join(partition.Config{Dir: k.Config.DataDir, Partitions: n,
		Interval: k.Config.RebalanceInterval, Log: k.Log, Open: func(i int) (func(context.Context) error, error) {
			return k.openPartition(i, n, setup)
		}})
	if err != nil {
		k.NC.Close()
		return err
	}
	k.parts.mgr = mgr
	k.Ops.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_partitions_owned",
			Help: "Partitions of this service's state this replica owns."},
			func() float64 { return float64(len(mgr.Owned())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_partitions_serving",
			Help: "Partitions this replica owns whose consumers are all created (their messages flow)."},
			func() float64 { return float64(k.servingPartitions()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tsm_partitions_acquired_total",
			Help: "Partitions this replica has taken since it started (from a departed or rebalancing replica, or at start)."},
			func() float64 { return float64(mgr.Acquired()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_partition_members",
			Help: "Live replicas sharing this service's data directory, as of the last rebalance."},
			func() float64 { return float64(mgr.Members()) }))
	k.Ops.AddReadiness("partitions", func(context.Context) error {
		var waiting []int
		for _, p := range k.OwnedPartitions() {
			if !p.Serving() {
				waiting = append(waiting, p.Index)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("partitions %v: consumers still being created", waiting)
		}
		return nil
	})
	// The first round before serving: a lone replica (and P = 1) owns its
	// store by the time it is ready, as an unpartitioned service does.
	mgr.Rebalance(ctx)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { mgr.Run(ctx) })
	wg.Go(func() {
		if err := k.Ops.Serve(ctx, k.Config.HTTPAddr, k.Config.HTTPBound); err != nil {
			errc <- fmt.Errorf("http: %w", err)
			cancel()
		}
	})
	k.Log.Info("service started", "http", k.Config.HTTPAddr, "nats", k.Config.NATSURL, "data", k.Config.DataDir,
		"partitions", n, "member", mgr.ID(), "owned", mgr.Owned())
	wg.Wait()
	k.NC.Close()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// openPartition opens partition i's store (failing fast while another
// replica holds it), builds it with setup and returns its run function.
func (k *Kit) openPartition(i, n int, setup func(p *Partition) error) (func(context.Context) error, error) {
	path := filepath.Join(partition.Dir(k.Config.DataDir, i, n), k.Config.DBFile)
	store, err := bus.OpenStore(bus.StoreConfig{Path: path, Buckets: k.Config.Buckets, OpenTimeout: partitionOpenTimeout})
	if err != nil {
		return nil, err
	}
	log := k.Log
	if n > 1 {
		log = log.With("partition", i)
	}
	p := &Partition{Index: i, Count: n, Store: store, Kit: k, Log: log, acquired: time.Now()}
	create := func(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
		cons, err := partition.Takeover(ctx, js, stream, cfg)
		if err == nil && int(p.created.Add(1)) == p.routes {
			log.Info("partition serving", "consumers", p.routes, "after", time.Since(p.acquired).Round(time.Millisecond).String())
		}
		return cons, err
	}
	p.router = bus.NewRouter(bus.RouterConfig{JetStream: k.JS, Log: log, Workers: k.Config.Workers,
		Metrics: k.Metrics, CreateConsumer: create, PullExpiry: partitionPullExpiry, CreateConcurrently: true})
	if err := setup(p); err != nil {
		store.Close()
		return nil, fmt.Errorf("partition %d: %w", i, err)
	}
	k.parts.mu.Lock()
	if k.parts.owned == nil {
		k.parts.owned = map[int]*Partition{}
	}
	k.parts.owned[i] = p
	k.parts.mu.Unlock()
	return func(ctx context.Context) error {
		err := p.run(ctx)
		k.parts.mu.Lock()
		delete(k.parts.owned, i)
		k.parts.mu.Unlock()
		store.Close()
		return err
	}, nil
}

// servingPartitions counts the owned partitions that serve (Partition.Serving).
func (k *Kit) servingPartitions() int {
	n := 0
	for _, p := range k.OwnedPartitions() {
		if p.Serving() {
			n++
		}
	}
	return n
}

// run serves the partition until ctx ends or its router fails: router, relay,
// inbox pruner and tasks; it returns once all of them have returned.
func (p *Partition) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		if err := p.router.Run(ctx); err != nil && ctx.Err() == nil {
			rerr = fmt.Errorf("router: %w", err)
		}
		cancel()
	})
	wg.Go(func() { p.Store.RunInboxPruner(ctx, 14*24*time.Hour, p.Log) })
	wg.Go(func() { p.Store.RunRelay(ctx, p.Kit.JS, p.Log) })
	for _, task := range p.tasks {
		wg.Go(func() { task(ctx) })
	}
	wg.Wait()
	if rerr != nil && !errors.Is(rerr, context.Canceled) {
		return rerr
	}
	return nil
}
