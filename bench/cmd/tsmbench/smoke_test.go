package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSmoke runs every phase of tsmbench against the real stack with tiny
// settings, so that `make bench` cannot rot unnoticed: it builds the profiled
// services, runs, and checks the results file says something true about the
// run (steps counted, conversations without errors, profiles, registry tiers).
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services and runs the whole stack")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "github.com/tsmhub/tsmhub/bench/cmd/profiled/...")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the services: %v\n%s", err, out)
	}
	out := t.TempDir()
	o := Options{BinDir: bin, OutDir: out, DataDir: t.TempDir(), SEs: 8, Clients: 2, Sweep: []int{1, 2},
		SweepWindow: time.Second, Warmup: time.Second, Duration: 2 * time.Second, CurvePercents: []int{50},
		CurveWarmup: 500 * time.Millisecond, CurveDuration: 2 * time.Second, BaselineDuration: time.Second,
		BaselinePubs: 2, StepSamples: 1, ProfileSeconds: 1, ScaleTiers: []int{500}, Lookups: 20,
		LookupSeconds: time.Second, Phases: allPhases, LogLevel: "warn", ServiceEnv: map[string]string{"LOG_LEVEL": "warn"},
		MaxOthersPct: 100}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) != 1 {
		t.Fatalf("results files %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	switch {
	case res.Steps == nil || res.Steps.PerScript < 2 || len(res.Steps.ScriptSubjects) != int(res.Steps.PerScript):
		t.Fatalf("steps %+v", res.Steps)
	case res.Baseline == nil || res.Baseline.SyncCount == 0 || res.Baseline.AsyncPerSec <= 0:
		t.Fatalf("baseline %+v", res.Baseline)
	case res.Throughput == nil || res.Throughput.Conversations == 0 || len(res.Throughput.Errors) != 0:
		t.Fatalf("throughput %+v", res.Throughput)
	case len(res.Throughput.Processes) != 7:
		t.Fatalf("processes %+v", res.Throughput.Processes)
	case res.Ratios == nil || res.Ratios.BusEfficiency <= 0 || res.Ratios.LatencyOverhead <= 0:
		t.Fatalf("ratios %+v", res.Ratios)
	case len(res.Curve) != 1 || res.Curve[0].Latency[opSecured].Count == 0:
		t.Fatalf("curve %+v", res.Curve)
	case len(res.Profiles) < 3:
		t.Fatalf("profiles %+v (notes %v)", res.Profiles, res.Notes)
	case len(res.Scale) != 1 || res.Scale[0].Lookups.Count != 20:
		t.Fatalf("scale %+v", res.Scale)
	}
	for _, p := range res.Profiles {
		if _, err := os.Stat(filepath.Join(out, p.File)); err != nil {
			t.Errorf("profile %s: %v", p.File, err)
		}
	}
}
