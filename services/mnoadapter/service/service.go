// Package service wires one MNO adapter instance: configuration from the
// environment, the bus consumers of its MNO, the bbolt store and the HTTP
// route. Run one process per MNO.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/mnoadapter/adapters"
	"github.com/tsmhub/tsmhub/services/mnoadapter/app"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
	"github.com/tsmhub/tsmhub/services/mnoadapter/ports"
)

// Name of the service (logs, data directory).
const Name = "mnoadapter"

// DefaultHTTPAddr is the adapter's HTTP address in the embedded run. A second
// adapter on the same host needs its own HTTP_ADDR.
const DefaultHTTPAddr = "127.0.0.1:8083"

// DefaultDeliveryRetention keeps the delivery bookkeeping as long as the steps
// stream keeps the deliver events (7 days).
const DefaultDeliveryRetention = 7 * 24 * time.Hour

// Config configures one MNO adapter instance. Environment variables in
// brackets are read by ConfigFromEnv.
type Config struct {
	// Kit holds the settings every service shares: NATS_URL (default
	// nats://127.0.0.1:4222), DATA_DIR (default ./data/mnoadapter), HTTP_ADDR
	// (default 127.0.0.1:8083), STREAM_REPLICAS (default 1), CONSUMER_WORKERS
	// (default 32; deliveries to different SEs wait on the bearer in
	// parallel up to this many), LOG_LEVEL (default info). The bbolt file is
	// mnoadapter-<MNO_ID>.db, so adapters of several MNOs can share DATA_DIR.
	Kit servicekit.Config
	// MNOID is the MNO this instance delivers for [MNO_ID, required; the demo
	// MNOs are mno-a and mno-b].
	MNOID string
	// Latency is the OTA bearer delay of every delivery [MNO_LATENCY, a Go
	// duration such as 250ms; default: the latencyMs of the MNO's registry
	// record, else 0]. Used only when LatencySet.
	Latency    time.Duration
	LatencySet bool
	// RateLimit is how many scripts per second the bearer accepts, as a token
	// bucket [MNO_RATE_LIMIT, default 0 = unlimited; fractions allowed].
	RateLimit float64
	// RateBurst is the token bucket's size: scripts that may go out back to
	// back [MNO_RATE_BURST, default 1].
	RateBurst int
	// MaxAPDUsPerScript overrides the MNO record's maxApdusPerScript
	// [MNO_MAX_APDUS, default 0 = take the record's; a record without one
	// means no limit]. Longer scripts are answered SCRIPT_TOO_LARGE.
	MaxAPDUsPerScript int
	// DeliveryRetention is how long the bookkeeping of a handled deliver
	// event is kept [MNO_DELIVERY_RETENTION, default 168h].
	DeliveryRetention time.Duration
}

// ConfigFromEnv reads the configuration from the environment.
func ConfigFromEnv() (Config, error) {
	kit, err := servicekit.FromEnv(Name, DefaultHTTPAddr)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Kit: kit, MNOID: os.Getenv("MNO_ID")}
	if v := os.Getenv("MNO_LATENCY"); v != "" {
		if cfg.Latency, err = ops.EnvDuration("MNO_LATENCY", 0); err != nil {
			return cfg, err
		}
		cfg.LatencySet = true
	}
	if v := os.Getenv("MNO_RATE_LIMIT"); v != "" {
		if cfg.RateLimit, err = strconv.ParseFloat(v, 64); err != nil {
			return cfg, fmt.Errorf("MNO_RATE_LIMIT=%q: want scripts per second, such as 5 or 0.5", v)
		}
	}
	if cfg.RateBurst, err = ops.EnvInt("MNO_RATE_BURST", 1); err != nil {
		return cfg, err
	}
	if cfg.MaxAPDUsPerScript, err = ops.EnvInt("MNO_MAX_APDUS", 0); err != nil {
		return cfg, err
	}
	if cfg.DeliveryRetention, err = ops.EnvDuration("MNO_DELIVERY_RETENTION", DefaultDeliveryRetention); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func (c *Config) validate() error {
	switch {
	case c.MNOID == "":
		return errors.New("MNO_ID is required: the id of the MNO this adapter delivers for (mno-a, mno-b in the demo)")
	case !topology.ValidToken(c.MNOID) || !topology.SPIDPattern.MatchString(c.MNOID):
		return fmt.Errorf("MNO_ID=%q: use lowercase letters, digits and dashes (at most 32)", c.MNOID)
	case c.Latency < 0:
		return errors.New("MNO_LATENCY must not be negative")
	case c.RateLimit < 0:
		return errors.New("MNO_RATE_LIMIT must not be negative")
	case c.RateBurst < 0 || c.MaxAPDUsPerScript < 0 || c.DeliveryRetention < 0:
		return errors.New("MNO_RATE_BURST, MNO_MAX_APDUS and MNO_DELIVERY_RETENTION must not be negative")
	}
	return nil
}

func (c *Config) applyDefaults() {
	if c.Kit.Name == "" {
		c.Kit.Name = Name
	}
	if c.Kit.HTTPAddr == "" {
		c.Kit.HTTPAddr = DefaultHTTPAddr
	}
	if c.Kit.DBFile == "" {
		c.Kit.DBFile = Name + "-" + c.MNOID + ".db"
	}
	if c.Kit.Log == nil {
		c.Kit.Log = ops.NewLogger(Name).With("mno", c.MNOID)
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 1
	}
	if c.DeliveryRetention <= 0 {
		c.DeliveryRetention = DefaultDeliveryRetention
	}
}

// Run runs the adapter for cfg.MNOID until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg.applyDefaults()
	cfg.Kit.Buckets = append(cfg.Kit.Buckets, adapters.Buckets...)
	kit, err := servicekit.Start(ctx, cfg.Kit)
	if err != nil {
		return err
	}
	store := adapters.NewStore(kit.Store, adapters.OutboxConfig{MNOID: cfg.MNOID})
	application := app.New(app.Config{MNOID: cfg.MNOID, Overrides: domain.Overrides{
		Latency: cfg.Latency, LatencySet: cfg.LatencySet, MaxAPDUsPerScript: cfg.MaxAPDUsPerScript,
		RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
	}}, store)
	metrics := ports.NewMetrics(kit.Ops.Registry, ports.MetricsConfig{MNOID: cfg.MNOID, JS: kit.JS, App: application})
	handlers := &ports.Handlers{MNOID: cfg.MNOID, App: application, Schemas: kit.Schemas, Log: kit.Log, Metrics: metrics}
	kit.Router.Handle(topology.MNOAdapterDeliver(cfg.MNOID), handlers.Deliver)
	kit.Router.Handle(topology.MNOAdapterRegistry(cfg.MNOID), handlers.Registry)
	(&ports.HTTP{App: application}).Routes(kit.Ops.Router)

	return kit.RunWith(ctx, kit.Pruner("delivery bookkeeping", cfg.DeliveryRetention, store.PruneDeliveries))
}
