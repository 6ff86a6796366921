// Package service wires the registry: configuration from the environment,
// the service kit (NATS, streams, bbolt store with outbox relay, router, ops
// HTTP), the admin API, the SP request consumer and the content consumer.
package service

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/spport"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/registry/adapters"
	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/ports"
)

// Name of the service (bbolt file, logs, dead-letter subjects).
const Name = "registry"

// DefaultHTTPAddr is the admin API's default address (DESIGN.md section 7).
const DefaultHTTPAddr = "127.0.0.1:8080"

// DemoKEK is the key-encryption key used when REGISTRY_KEK is not set: it is
// public (it is in this file), so SP keys sealed under it are protected only
// against a casual look at the bbolt file. Fine for the embedded demo, never
// for a deployment; the service logs a warning at start when it is in use.
const DemoKEK = "7473 6d68 7562 2d64 656d 6f2d 6b65 6b2d 6e6f 742d 666f 722d 7072 6f64 7563 7469"

// Config is the registry's configuration. Environment variables, read by
// ConfigFromEnv, are in brackets.
type Config struct {
	// Kit is the common service configuration:
	//   NATS_URL          NATS server [default nats://127.0.0.1:4222]
	//   DATA_DIR          directory of registry.db [default ./data/registry]
	//   HTTP_ADDR         admin API and /healthz, /readyz, /metrics [default 127.0.0.1:8080]
	//   STREAM_REPLICAS   replicas of the streams created at start [default 1]
	//   CONSUMER_WORKERS  parallel handlers of the SP request consumer [default 32]
	//   LOG_LEVEL         debug, info, warn or error [default info]
	Kit servicekit.Config
	// KEK is the AES-256 key-encryption key that seals SP key-transport keys
	// at rest [REGISTRY_KEK, 64 hex digits; default: DemoKEK, with a warning].
	KEK []byte
	// KEKIsDemo is true when KEK is DemoKEK.
	KEKIsDemo bool
	// KeyExchangeKey wraps SP key-transport keys in the published SP records
	// for the script router, which holds the same key
	// [REGISTRY_KEY_EXCHANGE_KEY = SCRIPTROUTER_KEY_EXCHANGE_KEY, hex AES key
	// of 16, 24 or 32 bytes; default: keycustody.DemoKeyExchangeKey, with a
	// warning].
	KeyExchangeKey []byte
	// KeyExchangeKeyIsDemo is true when KeyExchangeKey is the demo key.
	KeyExchangeKeyIsDemo bool
	// ImportBatchSize is the number of SEs per transaction of a bulk import
	// [REGISTRY_IMPORT_BATCH_SIZE, default 2000].
	ImportBatchSize int
	// ImportMaxErrors bounds the per-line errors an import reports; every
	// failed line is still counted [REGISTRY_IMPORT_MAX_ERRORS, default 1000].
	ImportMaxErrors int
	// Now is the clock (tests); time.Now when nil. Not from the environment.
	Now func() time.Time
}

// ConfigFromEnv reads the configuration from the environment.
func ConfigFromEnv() (Config, error) {
	kit, err := servicekit.FromEnv(Name, DefaultHTTPAddr)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Kit: kit}
	kekHex := ops.Env("REGISTRY_KEK", "")
	if kekHex == "" {
		kekHex, cfg.KEKIsDemo = DemoKEK, true
	}
	if cfg.KEK, err = ParseKEK(kekHex); err != nil {
		return Config{}, fmt.Errorf("REGISTRY_KEK: %w", err)
	}
	if v := ops.Env("REGISTRY_KEY_EXCHANGE_KEY", ""); v != "" {
		if cfg.KeyExchangeKey, err = keycustody.ParseAESKey("REGISTRY_KEY_EXCHANGE_KEY", v); err != nil {
			return Config{}, err
		}
	}
	if cfg.ImportBatchSize, err = ops.EnvInt("REGISTRY_IMPORT_BATCH_SIZE", app.DefaultImportBatchSize); err != nil {
		return Config{}, err
	}
	if cfg.ImportMaxErrors, err = ops.EnvInt("REGISTRY_IMPORT_MAX_ERRORS", app.DefaultImportMaxErrors); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ParseKEK decodes a hex AES-256 key (spaces allowed between digit groups).
func ParseKEK(s string) ([]byte, error) {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			clean = append(clean, s[i])
		}
	}
	k, err := hex.DecodeString(string(clean))
	if err != nil {
		return nil, fmt.Errorf("not hex: set 64 hex digits (an AES-256 key)")
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("%d bytes: set 64 hex digits (an AES-256 key)", len(k))
	}
	return k, nil
}

// Run starts the registry and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.KEK) == 0 {
		k, err := ParseKEK(DemoKEK)
		if err != nil {
			return err
		}
		cfg.KEK, cfg.KEKIsDemo = k, true
	}
	if len(cfg.KeyExchangeKey) == 0 {
		cfg.KeyExchangeKey, cfg.KeyExchangeKeyIsDemo = keycustody.DemoKeyExchangeKey, true
	}
	cipher, err := adapters.NewKeyCipher(cfg.KEK)
	if err != nil {
		return err
	}
	cfg.Kit.Name = Name
	if cfg.Kit.HTTPAddr == "" {
		cfg.Kit.HTTPAddr = DefaultHTTPAddr
	}
	cfg.Kit.Buckets = append(cfg.Kit.Buckets, adapters.Buckets()...)
	kit, err := servicekit.Start(ctx, cfg.Kit)
	if err != nil {
		return err
	}
	if cfg.KEKIsDemo {
		kit.Log.Warn("REGISTRY_KEK is not set: SP key-transport keys are sealed under the PUBLIC DEMO key-encryption key. " +
			"Anyone with the bbolt file can read them. Set REGISTRY_KEK (64 hex digits) for anything but a demo.")
	}
	if cfg.KeyExchangeKeyIsDemo {
		kit.Log.Warn("REGISTRY_KEY_EXCHANGE_KEY is not set: SP key-transport keys are published wrapped under the PUBLIC DEMO " +
			"key-exchange key. Anyone reading the bus can unwrap them. Set REGISTRY_KEY_EXCHANGE_KEY (and the same " +
			"SCRIPTROUTER_KEY_EXCHANGE_KEY) for anything but a demo.")
	}
	repo := adapters.NewRepository(kit.Store, cipher, cfg.KeyExchangeKey)
	// SP records published before they carried the wrapped key-transport key,
	// or wrapped under another key-exchange key, are published again now.
	republished, unreadable, err := repo.RepublishSPRecords()
	if err != nil {
		return fmt.Errorf("republish SP records: %w", err)
	}
	if republished > 0 {
		kit.Log.Info("SP records republished with the key-transport key wrapped under the current key-exchange key",
			"sps", republished)
	}
	if len(unreadable) > 0 {
		kit.Log.Warn("SP key-transport keys that do not open under REGISTRY_KEK: their records are not republished; PUT these SPs again",
			"sps", unreadable)
	}
	reg := app.New(repo, cfg.Now)
	api := &ports.HTTP{Registry: reg, Log: kit.Log,
		Import: app.ImportConfig{BatchSize: cfg.ImportBatchSize, MaxErrors: cfg.ImportMaxErrors}}
	api.Routes(kit.Ops.Router)
	requests := &ports.SPRequests{
		Port:     &spport.Port{Schemas: kit.Schemas, Store: kit.Store, Consumer: topology.RegistryRequests.Name},
		Registry: reg, Repo: repo, Log: kit.Log,
	}
	kit.Router.Handle(topology.RegistryRequests, requests.Handle)
	content := &ports.Content{Store: kit.Store, Schemas: kit.Schemas, Registry: reg, Repo: repo, Log: kit.Log}
	kit.Router.Handle(topology.RegistryContent, content.Handle)
	return kit.Run(ctx)
}
