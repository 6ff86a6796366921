// Package service wires the script router: configuration from the
// environment, the bus consumers, the bbolt store and the HTTP routes.
package service

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/keycustody"
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
	DefaultTemporaryKeyTTL   = 72 * time.Hour
)

// DemoKEK is the public demo key-encryption key that seals temporary keys at
// rest when SCRIPTROUTER_KEK is not set ("tsmhub-scriptrouter-demo-kek-32b"
// in ASCII). Fine for the embedded demo, never for a deployment: the service
// logs a warning at start when it is in use.
const DemoKEK = "74736D6875622D736372697074726F757465722D64656D6F2D6B656B2D333262"

// Config configures the script router. Environment variables in brackets are
// read by ConfigFromEnv; zero values get the defaults in Run.
type Config struct {
	// Kit holds the settings every service shares: NATS_URL (default
	// nats://127.0.0.1:4222), DATA_DIR (default ./data/scriptrouter),
	// HTTP_ADDR (default 127.0.0.1:8082), STREAM_REPLICAS (default 1),
	// CONSUMER_WORKERS (default 32), LOG_LEVEL (default info), PARTITIONS
	// (default 1) and PARTITION_REBALANCE_INTERVAL (default 1s): the state
	// is partitioned by SE (pkg/partition) and replicas sharing DATA_DIR
	// split the partitions between them (docs/operations.md, Scaling).
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
	// IssuerMasterKey diversifies (GP kdf3 over each card's KDD) the keys of
	// the central SD the router opens its secure channel with; the same key
	// as the se-simulator's card factory [SCRIPTROUTER_ISSUER_MASTER_KEY, hex
	// AES-128/192/256; default keycustody.DemoIssuerMasterKey, with a warning].
	IssuerMasterKey []byte
	// KEK seals the temporary keys of SP SDs at rest (AES-256-GCM)
	// [SCRIPTROUTER_KEK, 64 hex digits; default DemoKEK, with a warning].
	KEK []byte
	// KeyExchangeKey unwraps the SP key-transport keys of the registry's SP
	// records; the same key as REGISTRY_KEY_EXCHANGE_KEY
	// [SCRIPTROUTER_KEY_EXCHANGE_KEY, hex AES key; default
	// keycustody.DemoKeyExchangeKey, with a warning].
	KeyExchangeKey []byte
	// TemporaryKeyTTL is how long the router keeps temporary keys the SP has
	// not rotated [SCRIPTROUTER_TEMPORARY_KEY_TTL, default 72h].
	TemporaryKeyTTL time.Duration
}

// ConfigFromEnv reads the configuration from the environment.
func ConfigFromEnv() (Config, error) {
	kit, err := servicekit.FromEnv(Name, DefaultHTTPAddr)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Kit: kit}
	if err := servicekit.PartitionsFromEnv(&cfg.Kit); err != nil {
		return cfg, err
	}
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
	if cfg.TemporaryKeyTTL, err = ops.EnvDuration("SCRIPTROUTER_TEMPORARY_KEY_TTL", DefaultTemporaryKeyTTL); err != nil {
		return cfg, err
	}
	if cfg.TemporaryKeyTTL <= 0 {
		return cfg, fmt.Errorf("SCRIPTROUTER_TEMPORARY_KEY_TTL must be positive (a Go duration such as 72h)")
	}
	for _, k := range []struct {
		name string
		dst  *[]byte
	}{{"SCRIPTROUTER_ISSUER_MASTER_KEY", &cfg.IssuerMasterKey}, {"SCRIPTROUTER_KEK", &cfg.KEK},
		{"SCRIPTROUTER_KEY_EXCHANGE_KEY", &cfg.KeyExchangeKey}} {
		v := ops.Env(k.name, "")
		if v == "" {
			continue // the demo default, set with a warning in Run
		}
		if *k.dst, err = keycustody.ParseAESKey(k.name, v); err != nil {
			return cfg, err
		}
	}
	if cfg.KEK != nil && len(cfg.KEK) != 32 {
		return cfg, fmt.Errorf("SCRIPTROUTER_KEK must be an AES-256 key (64 hex digits), got %d bytes", len(cfg.KEK))
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
	if c.TemporaryKeyTTL <= 0 {
		c.TemporaryKeyTTL = DefaultTemporaryKeyTTL
	}
}

// demoKeys fills the keys left unset with the public demo keys and returns
// the names of the settings that use one.
func (c *Config) demoKeys() ([]string, error) {
	var demo []string
	if len(c.IssuerMasterKey) == 0 {
		c.IssuerMasterKey = bytes.Clone(keycustody.DemoIssuerMasterKey)
		demo = append(demo, "SCRIPTROUTER_ISSUER_MASTER_KEY")
	}
	if len(c.KEK) == 0 {
		k, err := keycustody.ParseAESKey("DemoKEK", DemoKEK)
		if err != nil {
			return nil, err
		}
		c.KEK = k
		demo = append(demo, "SCRIPTROUTER_KEK")
	}
	if len(c.KeyExchangeKey) == 0 {
		c.KeyExchangeKey = bytes.Clone(keycustody.DemoKeyExchangeKey)
		demo = append(demo, "SCRIPTROUTER_KEY_EXCHANGE_KEY")
	}
	return demo, nil
}

// Run runs the script router until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	cfg.applyDefaults()
	demo, err := cfg.demoKeys()
	if err != nil {
		return err
	}
	sealer, err := adapters.NewKeySealer(cfg.KEK)
	if err != nil {
		return fmt.Errorf("SCRIPTROUTER_KEK: %w", err)
	}
	cfg.Kit.Buckets = append(cfg.Kit.Buckets, adapters.Buckets...)
	kit, err := servicekit.StartPartitioned(ctx, cfg.Kit)
	if err != nil {
		return err
	}
	for _, name := range demo {
		kit.Log.Warn("using the public demo key: set " + name + " for anything but a demo")
	}
	// Per partition (by SE): scripts in flight, summaries, card states, key
	// custody, the central sessions; the registry projection is kept whole
	// in every partition.
	type part struct {
		app   *app.App
		store *adapters.Store
	}
	metrics := ports.NewMetrics(kit.Ops.Registry, func() float64 {
		n := 0
		for _, p := range kit.OwnedPartitions() {
			n += p.Value.(*part).store.InFlightCount()
		}
		return float64(n)
	})
	(&ports.HTTP{
		ForSE: func(seID string) (*app.App, error) {
			p, n := kit.PartitionOf(seID)
			if p == nil {
				return nil, servicekit.ErrNotOwned(n)
			}
			return p.Value.(*part).app, nil
		},
		Owned: func() ([]*app.App, bool) {
			ps := kit.OwnedPartitions()
			apps := make([]*app.App, 0, len(ps))
			for _, p := range ps {
				apps = append(apps, p.Value.(*part).app)
			}
			return apps, len(ps) == kit.PartitionCount()
		},
	}).Routes(kit.Ops.Router)
	return kit.RunPartitioned(ctx, func(p *servicekit.Partition) error {
		store := adapters.NewStore(p.Store, adapters.OutboxConfig{})
		application := app.New(app.Config{
			DefaultLimits:   domain.Limits{MaxAPDUs: cfg.MaxAPDUsPerScript, MaxBytes: cfg.MaxScriptBytes},
			IssuerMasterKey: cfg.IssuerMasterKey, KeyExchangeKey: cfg.KeyExchangeKey, Sealer: sealer,
			TemporaryKeyTTL: cfg.TemporaryKeyTTL,
		}, store)
		p.Value = &part{app: application, store: store}
		handlers := &ports.Handlers{App: application, Schemas: kit.Schemas, Log: p.Log, Metrics: metrics}
		p.Handle(topology.ScriptRouterRequested, handlers.Requested)
		p.Handle(topology.ScriptRouterExecuted, handlers.Executed)
		p.HandleAll(topology.ScriptRouterRegistry, handlers.Registry)
		// Summaries of completed scripts only serve the HTTP API.
		// Temporary keys the SP did not rotate in time are erased (custody "expired").
		p.Go(kit.Pruner("script summaries", cfg.SummaryRetention, store.PruneSummaries))
		p.Go(kit.Pruner("conversation card states", cfg.SummaryRetention, store.PruneCardStates))
		p.Go(kit.Pruner("expired temporary keys", cfg.TemporaryKeyTTL, store.EraseExpiredKeys))
		return nil
	})
}
