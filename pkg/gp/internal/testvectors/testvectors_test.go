package testvectors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindWalksUp(t *testing.T) {
	d := Dir(t)
	if filepath.Base(d) != "testdata" || filepath.Base(filepath.Dir(d)) != "shared" {
		t.Fatalf("found %s", d)
	}
	if _, err := os.Stat(filepath.Join(d, "scp03-sessions.json")); err != nil {
		t.Fatal(err)
	}
}

func TestEnvOverride(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv(EnvVar, tmp)
	d, err := Find()
	if err != nil || d != tmp {
		t.Fatalf("%s %v", d, err)
	}
	t.Setenv(EnvVar, filepath.Join(tmp, "missing"))
	if _, err := Find(); err == nil || !strings.Contains(err.Error(), EnvVar) {
		t.Fatalf("missing override accepted: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	t.Setenv(EnvVar, "")
	t.Chdir(t.TempDir())
	_, err := Find()
	if err == nil || !strings.Contains(err.Error(), "shared/testdata") {
		t.Fatalf("want a clear error, got %v", err)
	}
}

func TestHexHelpers(t *testing.T) {
	if Upper(Hex(t, "0a ff")) != "0AFF" {
		t.Fatal("hex")
	}
}
