// Package service wires the conversation service: configuration, the shared
// service kit (NATS, streams, store, router, ops HTTP), the use cases, the bus
// handlers, the expiry sweeper and the operators' HTTP API.
package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/spport"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/conversation/adapters"
	"github.com/tsmhub/tsmhub/services/conversation/app"
	"github.com/tsmhub/tsmhub/services/conversation/domain"
	"github.com/tsmhub/tsmhub/services/conversation/ports"
)

// Name of the service (consumers, data directory, logs).
const Name = "conversation"

// DefaultHTTPAddr is the service's default HTTP address (DESIGN.md section 7).
const DefaultHTTPAddr = "127.0.0.1:8081"

// Config of the conversation service. Environment variables, read by
// ConfigFromEnv, in brackets:
//
//   - Kit: NATS_URL (nats://127.0.0.1:4222), DATA_DIR (./data/conversation),
//     HTTP_ADDR (127.0.0.1:8081), STREAM_REPLICAS (1), CONSUMER_WORKERS (32),
//     LOG_LEVEL (info), PARTITIONS (1), PARTITION_REBALANCE_INTERVAL (1s).
//     The state is partitioned by SE (pkg/partition): replicas sharing
//     DATA_DIR split the partitions between them (docs/operations.md,
//     Scaling).
//   - MaxScripts [CONV_MAX_SCRIPTS, default 16]: scripts an SP may run in one
//     conversation; the next one is refused NOT_ALLOWED.
//   - DefaultMaxAPDUsPerScript [CONV_MAX_APDUS_PER_SCRIPT, default 32]: the
//     per-script APDU limit when the MNO record sets none.
//   - MaxScriptBytes [CONV_MAX_SCRIPT_BYTES, default 0 = by carrier: 8192
//     for https, 1024 for sms]: the script size limit for every carrier when set.
//   - TTL [CONV_TTL, default 5m]: how long a conversation stays open; it is
//     then expired, its SE freed and its SP notified (conversation-expired).
//   - SweepInterval [CONV_SWEEP_INTERVAL, default 1s]: how often expired
//     conversations and waiting begins past their validitySeconds are looked for.
type Config struct {
	Kit                      servicekit.Config
	MaxScripts               int
	DefaultMaxAPDUsPerScript int
	MaxScriptBytes           int
	TTL                      time.Duration
	SweepInterval            time.Duration
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
	if cfg.MaxScripts, err = ops.EnvInt("CONV_MAX_SCRIPTS", domain.DefaultMaxScripts); err != nil {
		return cfg, err
	}
	if cfg.DefaultMaxAPDUsPerScript, err = ops.EnvInt("CONV_MAX_APDUS_PER_SCRIPT", domain.DefaultMaxAPDUsPerScript); err != nil {
		return cfg, err
	}
	if cfg.MaxScriptBytes, err = ops.EnvInt("CONV_MAX_SCRIPT_BYTES", 0); err != nil {
		return cfg, err
	}
	if cfg.TTL, err = ops.EnvDuration("CONV_TTL", domain.DefaultTTL); err != nil {
		return cfg, err
	}
	if cfg.SweepInterval, err = ops.EnvDuration("CONV_SWEEP_INTERVAL", time.Second); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	switch {
	case c.MaxScripts < 0:
		return fmt.Errorf("CONV_MAX_SCRIPTS=%d: want a positive number", c.MaxScripts)
	case c.DefaultMaxAPDUsPerScript < 0:
		return fmt.Errorf("CONV_MAX_APDUS_PER_SCRIPT=%d: want a positive number", c.DefaultMaxAPDUsPerScript)
	case c.MaxScriptBytes < 0:
		return fmt.Errorf("CONV_MAX_SCRIPT_BYTES=%d: want 0 (carrier default) or a positive number", c.MaxScriptBytes)
	case c.TTL < 0:
		return fmt.Errorf("CONV_TTL=%s: want a positive duration", c.TTL)
	case c.SweepInterval < 0:
		return fmt.Errorf("CONV_SWEEP_INTERVAL=%s: want a positive duration", c.SweepInterval)
	}
	return nil
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.Kit.Name == "" {
		cfg.Kit.Name = Name
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Second
	}
	cfg.Kit.Buckets = append(cfg.Kit.Buckets, adapters.Buckets...)
	kit, err := servicekit.StartPartitioned(ctx, cfg.Kit)
	if err != nil {
		return err
	}
	metrics := ports.NewMetrics(kit.Ops.Registry)
	// One HTTP API for the process: a conversation is read from the store of
	// its partition when this replica owns it.
	(&ports.HTTP{StoreFor: func(key string) (*bus.Store, error) {
		p, n := kit.PartitionOf(key)
		if p == nil {
			return nil, servicekit.ErrNotOwned(n)
		}
		return p.Store, nil
	}}).Routes(kit.Ops.Router)
	err = kit.RunPartitioned(ctx, func(p *servicekit.Partition) error {
		// Everything of an SE lives in its partition: the conversations and
		// waiting begins on it, its procedures, its instance states. Ids made
		// here carry the partition, so send-script and end-conversation find
		// it from the conversation id alone.
		svc := &app.Service{
			Policy: domain.Policy{
				MaxScripts: cfg.MaxScripts, DefaultMaxAPDUsPerScript: cfg.DefaultMaxAPDUsPerScript,
				MaxScriptBytes: cfg.MaxScriptBytes, TTL: cfg.TTL,
			},
			NewConversationID: func() string { return p.NewID("cv") },
			NewScriptID:       func() string { return p.NewID("sc") },
		}
		handlers := &ports.Handlers{
			App: svc, Store: p.Store, Schemas: kit.Schemas, Log: p.Log, Metrics: metrics,
			Requests:       &spport.Port{Schemas: kit.Schemas, Store: p.Store, Consumer: topology.ConversationRequests.Name},
			NewProcedureID: func() string { return p.NewID("pr") },
		}
		p.Handle(topology.ConversationBegins, handlers.Begin)
		p.Handle(topology.ConversationRequests, handlers.Request)
		p.Handle(topology.ConversationScriptCompleted, handlers.ScriptCompleted)
		p.Handle(topology.ConversationProcedures, handlers.Procedure)
		sweeper := &ports.Sweeper{App: svc, Store: p.Store, Interval: cfg.SweepInterval, Log: p.Log, Metrics: metrics}
		p.Go(sweeper.Run)
		return nil
	})
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
