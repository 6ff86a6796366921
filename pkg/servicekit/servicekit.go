// Package servicekit wires what every tsmhub service runs: the NATS
// connection and streams, the service's bbolt store with its outbox relay, the
// bus router, the schema set, and the HTTP ops server. A service's own
// `service` package builds its use cases on a Kit and registers handlers.
package servicekit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/ops"
)

// Config is the common configuration of a service (environment variables in
// brackets, read by FromEnv).
type Config struct {
	// Name of the service: registry, conversation, scriptrouter, mnoadapter, sesimulator.
	Name string
	// NATSURL to connect to [NATS_URL, default nats://127.0.0.1:4222].
	NATSURL string
	// DataDir holds the service's bbolt file [DATA_DIR, default ./data/<name>].
	DataDir string
	// DBFile is the bbolt file name inside DataDir (default <name>.db).
	DBFile string
	// HTTPAddr serves ops endpoints and the service's API [HTTP_ADDR].
	HTTPAddr string
	// StreamReplicas for the streams this service creates [STREAM_REPLICAS, default 1].
	StreamReplicas int
	// Workers per consumer [CONSUMER_WORKERS, default 32].
	Workers int
	// SkipInternalSchemas stops validating consumed internal events (tsmhub.*
	// types) against their JSON Schemas; SP requests are validated either way.
	// FromEnv sets it unless VALIDATE_INTERNAL_EVENTS is true [default false:
	// skipped]. The zero value validates everything, as the services' tests
	// want; see bus.Schemas.SetCheckInternal for why production skips it.
	SkipInternalSchemas bool
	// Buckets the service keeps in its bbolt file.
	Buckets []string
	// Log is the service logger (default: ops.NewLogger(Name)).
	Log *slog.Logger
	// HTTPBound, if set, receives the bound HTTP address (tests use port 0).
	HTTPBound chan<- string
	// Partitions is the fixed number of partitions of a partitioned service's
	// state (RunPartitioned) [PARTITIONS, default 1; read by
	// PartitionsFromEnv]. See pkg/partition and docs/operations.md, Scaling.
	Partitions int
	// RebalanceInterval is how often a partitioned service's replicas
	// rebalance their partitions [PARTITION_REBALANCE_INTERVAL, default 1s].
	RebalanceInterval time.Duration
}

// FromEnv fills the common fields from the environment; defaultHTTP is the
// service's default address (DESIGN.md section 7).
func FromEnv(name, defaultHTTP string) (Config, error) {
	cfg := Config{
		Name:     name,
		NATSURL:  ops.Env("NATS_URL", "nats://127.0.0.1:4222"),
		DataDir:  ops.Env("DATA_DIR", filepath.Join("data", name)),
		HTTPAddr: ops.Env("HTTP_ADDR", defaultHTTP),
	}
	var err error
	if cfg.StreamReplicas, err = ops.EnvInt("STREAM_REPLICAS", 1); err != nil {
		return cfg, err
	}
	if cfg.Workers, err = ops.EnvInt("CONSUMER_WORKERS", 32); err != nil {
		return cfg, err
	}
	switch v := ops.Env("VALIDATE_INTERNAL_EVENTS", "false"); v {
	case "true", "1":
	case "false", "0":
		cfg.SkipInternalSchemas = true
	default:
		return cfg, fmt.Errorf("VALIDATE_INTERNAL_EVENTS=%q: set true or false", v)
	}
	return cfg, nil
}

// Kit is a started service runtime. A partitioned service's Kit
// (StartPartitioned) has no Store and no Router of its own: each partition it
// owns has them (Partition).
type Kit struct {
	Config  Config
	Log     *slog.Logger
	NC      *nats.Conn
	JS      jetstream.JetStream
	Store   *bus.Store
	Router  *bus.Router
	Schemas *bus.Schemas
	Ops     *ops.Server
	Metrics *bus.Metrics

	parts partitions
}

// Start connects, creates the streams, opens the store and prepares the router.
func Start(ctx context.Context, cfg Config) (*Kit, error) {
	k, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(k.Config.DataDir, k.Config.DBFile), Buckets: k.Config.Buckets})
	if err != nil {
		k.NC.Close()
		return nil, err
	}
	k.Store = store
	k.Router = bus.NewRouter(bus.RouterConfig{JetStream: k.JS, Log: k.Log, Workers: k.Config.Workers, Metrics: k.Metrics})
	return k, nil
}

// connect connects, creates the streams and prepares the ops server.
func connect(ctx context.Context, cfg Config) (*Kit, error) {
	if cfg.Log == nil {
		cfg.Log = ops.NewLogger(cfg.Name)
	}
	if cfg.DBFile == "" {
		cfg.DBFile = cfg.Name + ".db"
	}
	schemas, err := bus.LoadSchemas()
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	schemas.SetCheckInternal(!cfg.SkipInternalSchemas)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	nc, js, err := bus.Connect(cctx, cfg.NATSURL, "tsmhub-"+cfg.Name, cfg.Log)
	if err != nil {
		return nil, err
	}
	if err := ensureStreams(cctx, js, cfg.StreamReplicas); err != nil {
		nc.Close()
		return nil, err
	}
	srv := ops.NewServer()
	metrics := bus.NewMetrics(srv.Registry)
	k := &Kit{Config: cfg, Log: cfg.Log, NC: nc, JS: js, Schemas: schemas, Ops: srv, Metrics: metrics}
	srv.AddReadiness("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	return k, nil
}

// ensureStreams retries while a clustered server elects leaders.
func ensureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for {
		// Each attempt gets its own short deadline: a request a (re)forming
		// cluster never answers must not use up the whole start-up budget.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := bus.EnsureStreams(actx, js, replicas)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create streams: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Run serves until ctx ends: router, outbox relay and HTTP server. It closes
// everything before returning.
func (k *Kit) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(4)
	go func() {
		defer wg.Done()
		// Twice the streams' retention: no redelivery can be older.
		k.Store.RunInboxPruner(ctx, 14*24*time.Hour, k.Log)
	}()
	go func() {
		defer wg.Done()
		if err := k.Router.Run(ctx); err != nil {
			errc <- fmt.Errorf("router: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		k.Store.RunRelay(ctx, k.JS, k.Log)
	}()
	go func() {
		defer wg.Done()
		if err := k.Ops.Serve(ctx, k.Config.HTTPAddr, k.Config.HTTPBound); err != nil {
			errc <- fmt.Errorf("http: %w", err)
			cancel()
		}
	}()
	k.Log.Info("service started", "http", k.Config.HTTPAddr, "nats", k.Config.NATSURL, "data", k.Config.DataDir)
	wg.Wait()
	k.Store.Close()
	k.NC.Close()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// RunWith is Run with tasks (sweepers, pruners) running alongside: each gets a
// context that ends when Run returns, and RunWith returns once they have
// returned too. A stop through ctx while the router still creates its
// consumers, which the router reports as context.Canceled, is a clean stop.
func (k *Kit) RunWith(ctx context.Context, tasks ...func(context.Context)) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, task := range tasks {
		wg.Go(func() { task(runCtx) })
	}
	err := k.Run(runCtx)
	cancel()
	wg.Wait()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Pruner returns a task for RunWith that calls prune with the cutoff
// now - retention every quarter of retention (at least a second and at most
// ten minutes apart) and logs what it pruned; what names the entries.
func (k *Kit) Pruner(what string, retention time.Duration, prune func(cutoff time.Time) (int, error)) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(max(min(retention/4, 10*time.Minute), time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n, err := prune(time.Now().Add(-retention))
				if err != nil {
					k.Log.Warn("pruning "+what+" failed", "error", err)
				} else if n > 0 {
					k.Log.Info("pruned "+what, "count", n)
				}
			}
		}
	}
}
