package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Config configures a Manager.
type Config struct {
	// Dir is the data directory the replicas share; the member files live in
	// Dir/members.
	Dir string
	// Partitions is P, the fixed number of partitions (at least 1).
	Partitions int
	// Interval between rebalance rounds [PARTITION_REBALANCE_INTERVAL,
	// default 1s].
	Interval time.Duration
	// Log receives ownership changes.
	Log *slog.Logger
	// Open takes partition k: it opens the partition's store, failing within
	// a short time while another process holds it, and returns the function
	// that runs the partition. Run returns once ctx has ended and the
	// partition is released (consumers stopped, in-flight handlers finished,
	// background tasks stopped, store closed), or earlier with an error, after
	// releasing it too.
	Open func(k int) (run func(ctx context.Context) error, err error)
}

// Manager keeps this process's share of the partitions.
type Manager struct {
	cfg Config
	me  *member

	mu      sync.Mutex
	owned   map[int]*owned
	members int
	moves   int // partitions acquired since start
}

type owned struct {
	cancel  context.CancelFunc
	done    chan struct{}
	release bool // being released
}

// Join registers this process as a member of the replicas sharing cfg.Dir.
func Join(cfg Config) (*Manager, error) {
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("PARTITIONS=%d: want at least 1", cfg.Partitions)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	me, err := join(cfg.Dir)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, me: me, owned: map[int]*owned{}}, nil
}

// ID is this member's id (the name of its member file).
func (m *Manager) ID() string { return m.me.id }

// Owned returns the partitions this process runs now, sorted (partitions
// being released are left out).
func (m *Manager) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []int
	for k, o := range m.owned {
		if !o.release {
			ks = append(ks, k)
		}
	}
	sort.Ints(ks)
	return ks
}

// Acquired counts the partitions this process has taken since it started.
func (m *Manager) Acquired() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.moves
}

// Members is the number of live members at the last rebalance round.
func (m *Manager) Members() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members
}

// Target returns the partitions member i of n aims at: {k : k mod n == i}.
func Target(i, n, partitions int) []int {
	var ks []int
	for k := 0; k < partitions && n > 0; k++ {
		if k%n == i {
			ks = append(ks, k)
		}
	}
	return ks
}

// Run rebalances every interval until ctx ends, then releases every
// partition and leaves. The first round runs at once.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Rebalance(ctx)
		select {
		case <-ctx.Done():
			m.releaseAll()
			m.me.leave()
			return
		case <-t.C:
		}
	}
}

// Rebalance runs one round: release what is no longer this member's target,
// try to take what is.
func (m *Manager) Rebalance(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if err := m.me.ensure(); err != nil {
		m.cfg.Log.Warn("partition membership: cannot register", "error", err)
		return
	}
	ids, err := m.me.live()
	if err != nil {
		m.cfg.Log.Warn("partition membership: cannot list members", "error", err)
		return
	}
	i := sort.SearchStrings(ids, m.me.id)
	want := map[int]bool{}
	for _, k := range Target(i, len(ids), m.cfg.Partitions) {
		want[k] = true
	}
	m.mu.Lock()
	if m.members != len(ids) {
		m.cfg.Log.Info("partition members changed", "members", len(ids), "index", i, "target", Target(i, len(ids), m.cfg.Partitions))
	}
	m.members = len(ids)
	for k, o := range m.owned {
		if !want[k] && !o.release {
			o.release = true
			o.cancel()
			m.cfg.Log.Info("releasing partition", "partition", k)
		}
	}
	var try []int
	for k := range want {
		if _, ok := m.owned[k]; !ok {
			try = append(try, k)
		}
	}
	m.mu.Unlock()
	sort.Ints(try)
	for _, k := range try {
		if ctx.Err() != nil {
			return
		}
		m.acquire(ctx, k)
	}
}

func (m *Manager) acquire(ctx context.Context, k int) {
	run, err := m.cfg.Open(k)
	if err != nil {
		// Still held by its previous owner (it releases it, or dies): next round.
		m.cfg.Log.Debug("partition not acquired yet", "partition", k, "error", err)
		return
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o := &owned{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.owned[k] = o
	m.moves++
	m.mu.Unlock()
	m.cfg.Log.Info("acquired partition", "partition", k)
	go func() {
		defer close(o.done)
		err := run(pctx)
		m.mu.Lock()
		delete(m.owned, k)
		m.mu.Unlock()
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			m.cfg.Log.Error("partition stopped", "partition", k, "error", err)
			return
		}
		m.cfg.Log.Info("released partition", "partition", k)
	}()
}

// releaseAll stops every partition and waits until each is released.
func (m *Manager) releaseAll() {
	m.mu.Lock()
	var dones []chan struct{}
	for _, o := range m.owned {
		o.release = true
		o.cancel()
		dones = append(dones, o.done)
	}
	m.mu.Unlock()
	for _, d := range dones {
		<-d
	}
}
