package e2e

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/devstack"
)

// metric reads one unlabelled series from a service's /metrics.
func (e *env) metric(service, name string) float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.stack.HTTPAddr(service) + "/metrics")
	if err != nil {
		e.t.Fatalf("metrics of %s: %v", service, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				e.t.Fatalf("metric %s of %s: %v", name, service, err)
			}
			return v
		}
	}
	e.t.Fatalf("metric %s not served by %s", name, service)
	return 0
}

// waitOwned waits until each named replica owns want partitions.
func (e *env) waitOwned(want int, replicas ...string) {
	e.t.Helper()
	for _, r := range replicas {
		bustest.Eventually(e.t, 60*time.Second, r+" owns "+strconv.Itoa(want)+" partitions", func() bool {
			return e.metric(r, "tsm_partitions_owned") == float64(want)
		})
	}
}

// TestScaleOutConversationAndScriptRouter is issue 5's scale-out acceptance
// on the embedded stack: two replicas each of the conversation service and
// the script router, four partitions each, sharing their data directories;
// 200 conversations on 50 SEs (4 per SE, begun at once, so they queue on
// their SE; two SPs), 2 scripts each. One replica of each is killed with
// SIGKILL a third of the way through: their partitions move to the survivors.
// Every request gets exactly one response and, on every SE, conversations
// never interleave and scripts arrive in the order sent
// (devstack.RunScale). test/compose runs the same workload with
// `--scale conversation=2 --scale scriptrouter=2`.
func TestScaleOutConversationAndScriptRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test: 200 conversations on seven service processes")
	}
	e := startEnvWith(t, map[string]string{"PARTITIONS": "4", "PARTITION_REBALANCE_INTERVAL": "500ms"})
	conv2, err := e.stack.RunReplica("conversation", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	sr2, err := e.stack.RunReplica("scriptrouter", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, n := range []string{conv2, sr2} {
		if err := e.stack.WaitReady(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	e.waitOwned(2, "conversation", conv2, "scriptrouter", sr2)

	cfg := devstack.ScaleConfig{JS: e.js, RegistryAddr: e.stack.HTTPAddr("registry"),
		SESimAddr: e.stack.HTTPAddr("sesimulator"), Logf: t.Logf}
	if err := devstack.EnrollScale(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	acquiredBefore := e.metric(conv2, "tsm_partitions_acquired_total")
	srAcquiredBefore := e.metric(sr2, "tsm_partitions_acquired_total")
	killed := make(chan time.Time, 1)
	cfg.Midway = func() {
		t.Logf("scale: kill -9 conversation and scriptrouter (2 of 4 partitions each)")
		for _, n := range []string{"conversation", "scriptrouter"} {
			if err := e.stack.Kill(n); err != nil {
				t.Error(err)
			}
		}
		killed <- time.Now()
	}
	start := time.Now()
	res, err := devstack.RunScale(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-killed:
		e.waitOwned(4, conv2, sr2)
		moved := e.metric(conv2, "tsm_partitions_acquired_total") - acquiredBefore
		srMoved := e.metric(sr2, "tsm_partitions_acquired_total") - srAcquiredBefore
		t.Logf("scale: %d conversations, %d requests, %d executes (%d repeated) in %s; kill -9 at +%s moved %.0f partitions to %s and %.0f to %s",
			res.Conversations, res.Requests, res.Executes, res.RepeatedExecutes, res.Duration.Round(time.Millisecond),
			at.Sub(start).Round(time.Millisecond), moved, conv2, srMoved, sr2)
		if moved != 2 || srMoved != 2 {
			t.Errorf("after the kill %s took %.0f partitions and %s %.0f, want 2 each", conv2, moved, sr2, srMoved)
		}
	default:
		t.Fatal("the conversation replica was never killed")
	}
}
