package service_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

func TestConfigFromEnvDefaults(t *testing.T) {
	for _, v := range []string{"SESIM_ISSUER_MASTER_KEY", "SESIM_SP_MASTER_KEYS", "SESIM_STATE_KEK", "SESIM_IIN",
		"SESIM_CACHE_CARDS", "SESIM_DEBUG_APDU", "SESIM_ENROLMENT_GRACE", "HTTP_ADDR", "SESIM_GENERIC_ELF_AID"} {
		t.Setenv(v, "")
	}
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg.IssuerMasterKey, domain.DemoIssuerMasterKey) || !bytes.Equal(cfg.StateKEK, service.DemoStateKEK) ||
		!cfg.SPMasterKeys.UsesDemoKey() || !bytes.Equal(cfg.IIN, domain.DefaultIIN) {
		t.Error("demo key defaults not applied")
	}
	if cfg.Kit.HTTPAddr != "127.0.0.1:8084" || cfg.CacheCards != 1024 || cfg.DebugAPDU ||
		cfg.EnrolmentGrace != 15*time.Second || cfg.GenericELF != nil {
		t.Errorf("defaults: %s cache %d debug %v grace %s", cfg.Kit.HTTPAddr, cfg.CacheCards, cfg.DebugAPDU, cfg.EnrolmentGrace)
	}
}

func TestConfigFromEnvOverridesAndErrors(t *testing.T) {
	t.Setenv("SESIM_ISSUER_MASTER_KEY", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	t.Setenv("SESIM_SP_MASTER_KEYS", "bank-a=00112233445566778899AABBCCDDEEFF")
	t.Setenv("SESIM_CACHE_CARDS", "8")
	t.Setenv("SESIM_DEBUG_APDU", "true")
	t.Setenv("SESIM_ENROLMENT_GRACE", "2s")
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.IssuerMasterKey) != 32 || cfg.SPMasterKeys.UsesDemoKey() || cfg.CacheCards != 8 || !cfg.DebugAPDU ||
		cfg.EnrolmentGrace != 2*time.Second {
		t.Errorf("overrides not applied")
	}
	if _, ok := cfg.SPMasterKeys.For("transit"); ok {
		t.Error("an SP not listed got a key although no * entry was given")
	}
	t.Setenv("SESIM_ISSUER_MASTER_KEY", "DEADBEEFDEADBEEF")
	_, err = service.ConfigFromEnv()
	if err == nil || !strings.Contains(err.Error(), "SESIM_ISSUER_MASTER_KEY") || strings.Contains(err.Error(), "DEADBEEF") {
		t.Errorf("short key: error %v (must name the variable, never the value)", err)
	}
	t.Setenv("SESIM_ISSUER_MASTER_KEY", "")
	t.Setenv("SESIM_CACHE_CARDS", "0")
	if _, err := service.ConfigFromEnv(); err == nil {
		t.Error("SESIM_CACHE_CARDS=0 accepted")
	}
}

func TestConfigFromEnvVPCD(t *testing.T) {
	t.Setenv("SESIM_VPCD_ADDR", "")
	t.Setenv("SESIM_VPCD_SE", "")
	cfg, err := service.ConfigFromEnv()
	if err != nil || cfg.VPCDAddr != "" || cfg.VPCDSE != "" {
		t.Fatalf("default: reader on (%q, %q), err %v; want off", cfg.VPCDAddr, cfg.VPCDSE, err)
	}
	t.Setenv("SESIM_VPCD_ADDR", "127.0.0.1:35963")
	t.Setenv("SESIM_VPCD_SE", "0100000000000002")
	if cfg, err = service.ConfigFromEnv(); err != nil || cfg.VPCDAddr != "127.0.0.1:35963" || cfg.VPCDSE != "0100000000000002" {
		t.Fatalf("reader settings (%q, %q), err %v", cfg.VPCDAddr, cfg.VPCDSE, err)
	}
	for _, bad := range []struct{ addr, se, wantVar string }{
		{"127.0.0.1:35963", "", "SESIM_VPCD_SE"},
		{"127.0.0.1:35963", "not-hex", "SESIM_VPCD_SE"},
		{"127.0.0.1", "0100000000000002", "SESIM_VPCD_ADDR"},
		{"", "0100000000000002", "SESIM_VPCD_ADDR"},
	} {
		t.Setenv("SESIM_VPCD_ADDR", bad.addr)
		t.Setenv("SESIM_VPCD_SE", bad.se)
		if _, err := service.ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), bad.wantVar) {
			t.Errorf("addr %q se %q: error %v, want one naming %s", bad.addr, bad.se, err, bad.wantVar)
		}
	}
}
