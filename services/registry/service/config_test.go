package service_test

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/services/registry/service"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("REGISTRY_KEK", "")
	t.Setenv("HTTP_ADDR", "")
	t.Setenv("REGISTRY_IMPORT_BATCH_SIZE", "")
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	demo, _ := service.ParseKEK(service.DemoKEK)
	if !cfg.KEKIsDemo || !bytes.Equal(cfg.KEK, demo) || len(demo) != 32 || cfg.Kit.HTTPAddr != "127.0.0.1:8080" ||
		cfg.ImportBatchSize != 2000 || cfg.ImportMaxErrors != 1000 {
		t.Fatalf("defaults: %+v", cfg)
	}
	t.Setenv("REGISTRY_KEK", "  "+string(bytes.Repeat([]byte("ab"), 32)))
	t.Setenv("REGISTRY_IMPORT_BATCH_SIZE", "5000")
	if cfg, err = service.ConfigFromEnv(); err != nil || cfg.KEKIsDemo || cfg.KEK[0] != 0xAB || cfg.ImportBatchSize != 5000 {
		t.Fatalf("from env: %+v %v", cfg, err)
	}
	for _, bad := range []string{"abcd", "zz" + string(bytes.Repeat([]byte("00"), 31))} {
		t.Setenv("REGISTRY_KEK", bad)
		if _, err := service.ConfigFromEnv(); err == nil {
			t.Errorf("REGISTRY_KEK=%s accepted", bad)
		}
	}
}
