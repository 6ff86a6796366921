// Package service wires the se-simulator: configuration from the
// environment, the service kit (NATS, streams, bbolt store, router, ops
// HTTP), the fleet storage, the use cases, and the bus and HTTP ports.
package service

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/adapters"
	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports/vpcd"
)

// Name is the service name (logs, data directory, dead-letter subjects).
const Name = "sesimulator"

// DefaultHTTPAddr is the se-simulator's HTTP address (DESIGN.md 7).
const DefaultHTTPAddr = "127.0.0.1:8084"

// DemoStateKEK is the default key-encryption key of card states at rest
// (60..7F). It is public: use it only for the embedded demo run.
var DemoStateKEK = domain.SecretKey(mustHex("606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F"))

// Config is the se-simulator's configuration. Environment variables (read by
// ConfigFromEnv) in brackets; every one has a default that works for the
// embedded run.
//
// Key material defaults are public demo values; the service logs a warning
// (never the value) whenever one of them is in use.
type Config struct {
	// Kit is the common configuration: [NATS_URL, default
	// nats://127.0.0.1:4222], [DATA_DIR, default ./data/sesimulator],
	// [HTTP_ADDR, default 127.0.0.1:8084], [STREAM_REPLICAS, default 1],
	// [CONSUMER_WORKERS, default 32], [LOG_LEVEL, default info].
	Kit servicekit.Config
	// IssuerMasterKey diversifies (GP kdf3 over each card's KDD) the keys of
	// the issuer's security domains: ISD, central SD and the other issuer SDs
	// [SESIM_ISSUER_MASTER_KEY, hex AES-128/192/256, default
	// 404142434445464748494A4B4C4D4E4F: demo only]. The central TSM must be
	// configured with the same key.
	IssuerMasterKey domain.SecretKey
	// IIN is the issuer identification number of the cards, ISD tag 42
	// [SESIM_IIN, hex, 1-8 bytes, default 420001].
	IIN []byte
	// SPMasterKeys diversify the keys of SP security domains pre-issued on
	// cards (SE records with preIssuedSpDomains) [SESIM_SP_MASTER_KEYS,
	// comma-separated spId=hexkey pairs, spId * for every SP not listed;
	// default *=505152535455565758595A5B5C5D5E5F]. The default gives every SP
	// the same public key: a demo-only convenience, so that an SP's tool
	// derives its SD keys with --sd-master-key 505152535455565758595A5B5C5D5E5F
	// and the card's KDD. In production list each SP with its own key and no *.
	SPMasterKeys domain.SPMasterKeys
	// StateKEK encrypts card states (which hold key values) at rest with
	// AES-GCM [SESIM_STATE_KEK, hex AES-128/192/256, default
	// 606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F: demo
	// only]. Changing it makes the existing cards unreadable.
	StateKEK domain.SecretKey
	// GenericELF and GenericModule are the AIDs of the generic payment
	// application pre-loaded on every new card [SESIM_GENERIC_ELF_AID,
	// default A00000055501; SESIM_GENERIC_MODULE_AID, default A0000005550101].
	GenericELF, GenericModule []byte
	// CacheCards bounds the decoded cards kept in memory; the bbolt copy stays
	// authoritative [SESIM_CACHE_CARDS, default 1024].
	CacheCards int
	// DebugAPDU enables POST /v1/cards/{seId}/apdu, manual APDUs for
	// operators [SESIM_DEBUG_APDU, default false].
	DebugAPDU bool
	// EnrolmentGrace is how long a script for an SE without a card is retried
	// (its SE record may still be on its way) before it is answered
	// SE_INACCESSIBLE [SESIM_ENROLMENT_GRACE, Go duration, default 15s].
	EnrolmentGrace time.Duration
	// VPCDAddr is the host:port of vsmartcard's vpcd (the virtual PC/SC
	// reader loaded by pcscd); when set, the card of VPCDSE is served there
	// as a card in that reader, for opensc-tool, scriptor, pyscard and other
	// PC/SC tools [SESIM_VPCD_ADDR, default empty: off; vpcd's own default
	// is 127.0.0.1:35963 for the reader "Virtual PCD 00 00", 35964 for
	// "Virtual PCD 00 01"]. The se-simulator connects as vpcd's client and
	// reconnects with backoff while vpcd is not there.
	VPCDAddr string
	// VPCDSE is the SE id (CIN in hex) whose card is served through vpcd;
	// required with VPCDAddr [SESIM_VPCD_SE]. Every APDU from the reader
	// takes the card's lock and is committed to the fleet like a script.
	VPCDSE string
}

// ConfigFromEnv reads the configuration from the environment. Errors name
// the variable and the expected form, never a key value.
func ConfigFromEnv() (Config, error) {
	kit, err := servicekit.FromEnv(Name, DefaultHTTPAddr)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Kit: kit}
	if cfg.IssuerMasterKey, err = envKey("SESIM_ISSUER_MASTER_KEY", domain.DemoIssuerMasterKey); err != nil {
		return Config{}, err
	}
	if cfg.StateKEK, err = envKey("SESIM_STATE_KEK", DemoStateKEK); err != nil {
		return Config{}, err
	}
	if cfg.IIN, err = envHex("SESIM_IIN", domain.DefaultIIN, 1, 8); err != nil {
		return Config{}, err
	}
	if cfg.GenericELF, err = envHex("SESIM_GENERIC_ELF_AID", nil, 5, 16); err != nil {
		return Config{}, err
	}
	if cfg.GenericModule, err = envHex("SESIM_GENERIC_MODULE_AID", nil, 5, 16); err != nil {
		return Config{}, err
	}
	cfg.SPMasterKeys = domain.DemoSPMasterKeys()
	if v := strings.TrimSpace(os.Getenv("SESIM_SP_MASTER_KEYS")); v != "" {
		if cfg.SPMasterKeys, err = domain.ParseSPMasterKeys(v); err != nil {
			return Config{}, fmt.Errorf("SESIM_SP_MASTER_KEYS: %w", err)
		}
	}
	if cfg.CacheCards, err = ops.EnvInt("SESIM_CACHE_CARDS", 1024); err != nil {
		return Config{}, err
	}
	if cfg.CacheCards < 1 {
		return Config{}, fmt.Errorf("SESIM_CACHE_CARDS=%d: want at least 1", cfg.CacheCards)
	}
	if v := os.Getenv("SESIM_DEBUG_APDU"); v != "" {
		if cfg.DebugAPDU, err = strconv.ParseBool(v); err != nil {
			return Config{}, fmt.Errorf("SESIM_DEBUG_APDU=%q: want true or false", v)
		}
	}
	if cfg.EnrolmentGrace, err = ops.EnvDuration("SESIM_ENROLMENT_GRACE", app.DefaultEnrolmentGrace); err != nil {
		return Config{}, err
	}
	cfg.VPCDAddr = strings.TrimSpace(os.Getenv("SESIM_VPCD_ADDR"))
	cfg.VPCDSE = strings.ToUpper(strings.TrimSpace(os.Getenv("SESIM_VPCD_SE")))
	if err := cfg.checkVPCD(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// checkVPCD checks the reader settings: both or neither.
func (cfg Config) checkVPCD() error {
	if cfg.VPCDAddr == "" {
		if cfg.VPCDSE != "" {
			return fmt.Errorf("SESIM_VPCD_SE=%s without SESIM_VPCD_ADDR: set SESIM_VPCD_ADDR to vpcd's address (e.g. 127.0.0.1:35963)", cfg.VPCDSE)
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(cfg.VPCDAddr); err != nil {
		return fmt.Errorf("SESIM_VPCD_ADDR=%q: want host:port, e.g. 127.0.0.1:35963", cfg.VPCDAddr)
	}
	if !topology.ValidSEID(cfg.VPCDSE) {
		return fmt.Errorf("SESIM_VPCD_SE=%q: want the SE id (the card's CIN in hex) of the card to serve through vpcd", cfg.VPCDSE)
	}
	return nil
}

func envKey(name string, def domain.SecretKey) (domain.SecretKey, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	k, err := hex.DecodeString(v)
	if err != nil || !domain.ValidAESKeyLength(len(k)) {
		return nil, fmt.Errorf("%s: want an AES-128/192/256 key as 32, 48 or 64 hex digits", name)
	}
	return k, nil
}

func envHex(name string, def []byte, minLen, maxLen int) ([]byte, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	b, err := hex.DecodeString(v)
	if err != nil || len(b) < minLen || len(b) > maxLen {
		return nil, fmt.Errorf("%s=%q: want %d to %d bytes in hex", name, v, minLen, maxLen)
	}
	return b, nil
}

// Run starts the se-simulator and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Kit.Name == "" {
		cfg.Kit.Name = Name
	}
	if cfg.Kit.HTTPAddr == "" {
		cfg.Kit.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.IssuerMasterKey == nil {
		cfg.IssuerMasterKey = domain.DemoIssuerMasterKey
	}
	if cfg.StateKEK == nil {
		cfg.StateKEK = DemoStateKEK
	}
	if cfg.IIN == nil {
		cfg.IIN = domain.DefaultIIN
	}
	if cfg.SPMasterKeys.BySP == nil && cfg.SPMasterKeys.Default == nil {
		cfg.SPMasterKeys = domain.DemoSPMasterKeys()
	}
	if !domain.ValidAESKeyLength(len(cfg.IssuerMasterKey)) {
		return fmt.Errorf("issuer master key must be an AES-128/192/256 key")
	}
	if cfg.EnrolmentGrace <= 0 {
		cfg.EnrolmentGrace = app.DefaultEnrolmentGrace
	}
	if cfg.CacheCards <= 0 {
		cfg.CacheCards = 1024
	}
	cfg.VPCDSE = strings.ToUpper(cfg.VPCDSE)
	if err := cfg.checkVPCD(); err != nil {
		return err
	}
	sealer, err := adapters.NewStateSealer(cfg.StateKEK)
	if err != nil {
		return err
	}
	cfg.Kit.Buckets = append(cfg.Kit.Buckets, adapters.Buckets...)
	kit, err := servicekit.Start(ctx, cfg.Kit)
	if err != nil {
		return err
	}
	log := kit.Log
	if bytes.Equal(cfg.IssuerMasterKey, domain.DemoIssuerMasterKey) {
		log.Warn("DEMO KEY IN USE: the issuer master key is the public demo default; set SESIM_ISSUER_MASTER_KEY for anything but a demo")
	}
	if cfg.SPMasterKeys.UsesDemoKey() {
		log.Warn("DEMO KEY IN USE: pre-issued SP security domains get the public demo SP master key; set SESIM_SP_MASTER_KEYS for anything but a demo")
	}
	if bytes.Equal(cfg.StateKEK, DemoStateKEK) {
		log.Warn("DEMO KEY IN USE: card states are encrypted at rest under the public demo key; set SESIM_STATE_KEK for anything but a demo")
	}
	if cfg.DebugAPDU {
		log.Warn("manual APDU endpoint enabled (SESIM_DEBUG_APDU=true): operators can send APDUs to any card")
	}
	var application *app.App
	observer := adapters.NewPromObserver(kit.Ops.Registry, func() int { return application.CachedCards() })
	application = app.New(adapters.NewFleetStore(kit.Store, sealer), app.Config{
		Factory: domain.Factory{IssuerMasterKey: cfg.IssuerMasterKey, IIN: cfg.IIN, SPMasterKeys: cfg.SPMasterKeys,
			GenericELF: cfg.GenericELF, GenericModule: cfg.GenericModule},
		EnrolmentGrace: cfg.EnrolmentGrace,
		CacheCards:     cfg.CacheCards,
		Observer:       observer,
		Log:            log,
	})
	ports.BusHandlers{App: application, Schemas: kit.Schemas, Log: log}.Register(kit.Router)
	ports.HTTP{App: application, DebugAPDU: cfg.DebugAPDU, Log: log}.Mount(kit.Ops.Router)
	log.Info("se-simulator configured", "spsWithOwnKey", cfg.SPMasterKeys.SortedSPs(),
		"cacheCards", cfg.CacheCards, "enrolmentGrace", cfg.EnrolmentGrace.String(), "debugApdu", cfg.DebugAPDU,
		"vpcd", cfg.VPCDAddr, "vpcdSe", cfg.VPCDSE)
	if cfg.VPCDAddr == "" {
		return kit.Run(ctx)
	}
	reader := vpcd.New(application, vpcd.Config{Addr: cfg.VPCDAddr, SEID: cfg.VPCDSE, Log: log})
	kit.Ops.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_sesim_vpcd_connected",
		Help: "1 while the card of SESIM_VPCD_SE is in vpcd's virtual reader (connected), else 0."},
		func() float64 {
			if reader.Connected() {
				return 1
			}
			return 0
		}))
	// The reader stops with the service; Run waits for it so that no APDU
	// is committed after Run returned.
	readerCtx, stopReader := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		_ = reader.Run(readerCtx)
	}()
	err = kit.Run(ctx)
	stopReader()
	<-readerDone
	return err
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err) // only with a malformed literal in this file
	}
	return b
}
