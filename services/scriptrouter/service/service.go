// Package service wires the script router: configuration from the
// environment, the bus consumers, the bbolt store and the HTTP routes.
package service

import (
	"context"
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/adapters"
	"github.com/tsmhub/tsmhub/services/scriptrouter/app"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
	"github.com/tsmhub/tsmhub/services/scriptrouter/ports"
)

// Name of the service (logs, data directory, event source).
const Name = "scriptrouter"

// DefaultHTTPAddr is the script router's HTTP address in the embedded run.
const DefaultHTTPAddr = "127.0.0.1:8082"

// Defaults of the script router's own settings.
const (
	DefaultMaxAPDUsPerScript = 256
	DefaultMaxScriptBytes    = 64 * 1024
	DefaultSummaryRetention  = 24 * time.Hour
)

// Config configures the script router. Environment variables in brackets are
// read by ConfigFromEnv; zero values get the defaults in Run.
type Config struct {
	// Kit holds the settings every service shares: NATS_URL (default
	// nats://127.0.0.1:4222), DATA_DIR (default ./data/scriptrouter),
	// HTTP_ADDR (default 127.0.0.1:8082), STREAM_REPLICAS (default 1),
	// CONSUMER_WORKERS (default 32), LOG_LEVEL (default info).
	Kit servicekit.Config
	// MaxAPDUsPerScript applies to scripts whose conversation set no limit
	// [SCRIPT_MAX_APDUS, default 256]. Conversations normally carry the MNO's.
	MaxAPDUsPerScript int
	// MaxScriptBytes (sum of the decoded C-APDU lengths) applies to scripts
	// whose conversation set no limit [SCRIPT_MAX_BYTES, default 65536].
	MaxScriptBytes int
	// SummaryRetention is how long GET /v1/scripts/{scriptId} still answers for
	// a completed script [SCRIPT_SUMMARY_RETENTION, default 24h]. Scripts in
	// flight are kept until their result arrives, whatever this says. The
	// card state of a conversation (authorization) is kept as long after its
	// last script.
	SummaryRetention time.Duration
}

// ConfigFromEnv reads the configuration from the environment.
func ConfigFromEnv() (Config, error) {
	kit, err := servicekit.FromEnv(Name, DefaultHTTPAddr)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Kit: kit}
	if cfg.MaxAPDUsPerScript, err = ops.EnvInt("SCRIPT_MAX_APDUS", DefaultMaxAPDUsPerScript); err != nil {
		return cfg, err
	}
	if cfg.MaxScriptBytes, err = ops.EnvInt("SCRIPT_MAX_BYTES", DefaultMaxScriptBytes); err != nil {
		return cfg, err
	}
	if cfg.SummaryRetention, err = ops.EnvDuration("SCRIPT_SUMMARY_RETENTION", DefaultSummaryRetention); err != nil {
		return cfg, err
	}
	if cfg.MaxAPDUsPerScript < 0 || cfg.MaxScriptBytes < 0 || cfg.SummaryRetention < 0 {
		return cfg, fmt.Errorf("SCRIPT_MAX_APDUS, SCRIPT_MAX_BYTES and SCRIPT_SUMMARY_RETENTION must not be negative")
	}
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.Kit.Name == "" {
		c.Kit.Name = Name
	}
	if c.Kit.HTTPAddr == "" {
		c.Kit.HTTPAddr = DefaultHTTPAddr
	}
	if c.MaxAPDUsPerScript <= 0 {
		c.MaxAPDUsPerScript = DefaultMaxAPDUsPerScript
	}
	if c.MaxScriptBytes <= 0 {
		c.MaxScriptBytes = DefaultMaxScriptBytes
	}
	if c.SummaryRetention <= 0 {
		c.SummaryRetention = DefaultSummaryRetention
	}
}

// Run runs the script router until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	cfg.applyDefaults()
	cfg.Kit.Buckets = append(cfg.Kit.Buckets, adapters.Buckets...)
	kit, err := servicekit.Start(ctx, cfg.Kit)
	if err != nil {
		return err
	}
	store := adapters.NewStore(kit.Store, adapters.OutboxConfig{})
	application := app.New(app.Config{
		DefaultLimits: domain.Limits{MaxAPDUs: cfg.MaxAPDUsPerScript, MaxBytes: cfg.MaxScriptBytes},
	}, store)
	metrics := ports.NewMetrics(kit.Ops.Registry, func() float64 { return float64(store.InFlightCount()) })
	handlers := &ports.Handlers{App: application, Schemas: kit.Schemas, Log: kit.Log, Metrics: metrics}
	kit.Router.Handle(topology.ScriptRouterRequested, handlers.Requested)
	kit.Router.Handle(topology.ScriptRouterExecuted, handlers.Executed)
	kit.Router.Handle(topology.ScriptRouterRegistry, handlers.Registry)
	(&ports.HTTP{App: application}).Routes(kit.Ops.Router)

	// Summaries of completed scripts only serve the HTTP API.
	return kit.RunWith(ctx, kit.Pruner("script summaries", cfg.SummaryRetention, store.PruneSummaries),
		kit.Pruner("conversation card states", cfg.SummaryRetention, store.PruneCardStates))
}
