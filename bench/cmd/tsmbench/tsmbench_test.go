package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
)

func TestClassifyPicksTheFirstAreaInOrder(t *testing.T) {
	// A bbolt commit reached from a handler: bbolt wins over tsmhub code
	// and the syscall under it.
	stack := []string{"syscall.Syscall", "go.etcd.io/bbolt.fdatasync", "go.etcd.io/bbolt.(*Tx).Commit",
		"github.com/tsmhub/tsmhub/pkg/bus.(*Store).commitLoop"}
	if got := classify(stack); got != areas[0].name {
		t.Fatalf("classify = %q, want %q", got, areas[0].name)
	}
	if got := classify([]string{"runtime.memmove", "main.main"}); got != "other (runtime: malloc, maps, strings, ...)" {
		t.Fatalf("classify of an unknown stack = %q", got)
	}
	if got := classify([]string{"runtime.mallocgc", "encoding/json.Marshal", "github.com/tsmhub/tsmhub/pkg/bus.Encode"}); got != "encoding/json" {
		t.Fatalf("classify of json under tsmhub = %q", got)
	}
}

func TestIntList(t *testing.T) {
	got, err := intList(" 10_000,100000 ,")
	if err != nil || len(got) != 2 || got[0] != 10000 || got[1] != 100000 {
		t.Fatalf("intList = %v, %v", got, err)
	}
	if _, err := intList("10,x"); err == nil {
		t.Fatal("intList accepted x")
	}
	if _, err := intList("0"); err == nil {
		t.Fatal("intList accepted 0")
	}
}

func TestMsgSizeCountsTheHeaderBlock(t *testing.T) {
	h := nats.Header{}
	h.Set("ce-id", "abc")
	hdr, total := msgSize(h, []byte("12345"))
	// "NATS/1.0\r\n" + "Ce-Id: abc\r\n" + "\r\n"
	if hdr != 10+12+2 || total != hdr+5 {
		t.Fatalf("msgSize = %d, %d", hdr, total)
	}
	if hdr, total := msgSize(nil, []byte("12345")); hdr != 0 || total != 5 {
		t.Fatalf("msgSize without headers = %d, %d", hdr, total)
	}
}

func TestTracerKeepsEveryNthUpToMax(t *testing.T) {
	tr := &tracer{every: 3, max: 2}
	for i := 0; i < 20; i++ {
		tr.add(scriptTrace{seID: string(rune('a' + i))})
	}
	if len(tr.traces) != 2 || tr.traces[0].seID != "c" || tr.traces[1].seID != "f" {
		t.Fatalf("traces %+v", tr.traces)
	}
}

func TestMeterCountsOnlyMeasuredOperations(t *testing.T) {
	m := newMeter()
	m.observe(opSecured, time.Millisecond, false)
	m.start()
	m.observe(opSecured, 2*time.Millisecond, true)
	m.observe(opSetup, 4*time.Millisecond, true)
	m.observe(opBegin, time.Millisecond, true)
	if m.scripts.Load() != 2 || m.secured.Load() != 1 || m.apdus.Load() != setupAPDUs+securedAPDUs {
		t.Fatalf("scripts %d secured %d apdus %d", m.scripts.Load(), m.secured.Load(), m.apdus.Load())
	}
	lat := m.latencies()
	if lat[opAnyScript].Count != 2 || lat[opSecured].P50Ms != 2 || lat[opBegin].Count != 1 {
		t.Fatalf("latencies %+v", lat)
	}
	if tl := m.timeline(2 * time.Second); tl[0] != 2 {
		t.Fatalf("timeline %v", tl)
	}
}

func TestRatiosAndTargets(t *testing.T) {
	res := &Result{
		Steps:    &StepsResult{PerScript: 7},
		Baseline: &BaselineResult{AsyncPerSec: 28000, Sync: stats.Summary{P50Ms: 0.1}},
		Throughput: &LoadResult{ScriptsPerSec: 1000, BusMsgsPerSec: 9000,
			Latency: map[string]stats.Summary{opSecured: {P50Ms: 1.4}, opAnyScript: {P50Ms: 2.1}}},
		Curve: []CurvePoint{{Percent: 50, AchievedScriptsPerSec: 500,
			Latency: map[string]stats.Summary{opSecured: {P99Ms: 40}, opAnyScript: {P99Ms: 45}}}},
		Scale: []ScaleTier{{SEs: 100000, ImportSeconds: 2, Lookups: stats.Summary{P99Ms: 1.5}},
			{SEs: 1000000, ImportSeconds: 20, Lookups: stats.Summary{P99Ms: 1.9}}},
	}
	res.Ratios = ratios(res)
	if res.Ratios.BusEfficiency != 0.25 || res.Ratios.LatencyOverhead != 2 || res.Ratios.LatencyOverheadAllScripts != 3 {
		t.Fatalf("ratios %+v", res.Ratios)
	}
	for _, tc := range checkTargets(res) {
		if tc.Met == nil || !*tc.Met {
			t.Errorf("target %q not met: %s", tc.Name, tc.Measured)
		}
	}
	res.Scale = res.Scale[:1]
	for _, tc := range checkTargets(res) {
		if tc.Name == "get-se-id p99 with 1,000,000 SEs" && tc.Met != nil {
			t.Errorf("a 100,000 SE run must not decide the 1,000,000 SE target: %+v", tc)
		}
	}
}
