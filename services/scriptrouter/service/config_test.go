package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/services/scriptrouter/service"
)

func TestConfigFromEnv(t *testing.T) {
	for _, v := range []string{"SCRIPT_MAX_APDUS", "SCRIPT_MAX_BYTES", "SCRIPT_SUMMARY_RETENTION", "HTTP_ADDR",
		"SCRIPTROUTER_ISSUER_MASTER_KEY", "SCRIPTROUTER_KEK", "SCRIPTROUTER_KEY_EXCHANGE_KEY", "SCRIPTROUTER_TEMPORARY_KEY_TTL"} {
		t.Setenv(v, "")
	}
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// Unset keys stay nil: Run fills in the public demo keys and warns.
	if cfg.IssuerMasterKey != nil || cfg.KEK != nil || cfg.KeyExchangeKey != nil || cfg.TemporaryKeyTTL != 72*time.Hour ||
		cfg.MaxAPDUsPerScript != 256 || cfg.Kit.HTTPAddr != "127.0.0.1:8082" {
		t.Fatalf("defaults: %+v", cfg)
	}

	t.Setenv("SCRIPTROUTER_ISSUER_MASTER_KEY", " 000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	t.Setenv("SCRIPTROUTER_KEK", strings.Repeat("ab", 32))
	t.Setenv("SCRIPTROUTER_KEY_EXCHANGE_KEY", strings.Repeat("cd", 16))
	t.Setenv("SCRIPTROUTER_TEMPORARY_KEY_TTL", "24h")
	if cfg, err = service.ConfigFromEnv(); err != nil || len(cfg.IssuerMasterKey) != 32 || cfg.KEK[0] != 0xAB ||
		len(cfg.KeyExchangeKey) != 16 || cfg.TemporaryKeyTTL != 24*time.Hour {
		t.Fatalf("from env: %v %v", err, cfg.TemporaryKeyTTL)
	}

	for name, bad := range map[string]string{
		"SCRIPTROUTER_ISSUER_MASTER_KEY": "DEADBEEFDEADBEEF",              // 8 bytes
		"SCRIPTROUTER_KEK":               strings.Repeat("ab", 16),        // AES-128, not AES-256
		"SCRIPTROUTER_KEY_EXCHANGE_KEY":  "ZZ" + strings.Repeat("00", 15), // not hex
		"SCRIPTROUTER_TEMPORARY_KEY_TTL": "-1h",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, bad)
			_, err := service.ConfigFromEnv()
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%s: error %v, want one naming the variable", name, bad, err)
			}
			if strings.Contains(err.Error(), "DEADBEEF") || strings.Contains(strings.ToLower(err.Error()), strings.Repeat("ab", 16)) {
				t.Errorf("the error echoes the key: %v", err)
			}
		})
	}
}
