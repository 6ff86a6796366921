//go:build compose

package compose

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

// scaled are the services the scale test runs twice.
var scaled = []string{"conversation", "scriptrouter"}

// replicas returns the container ids of a service, running or not.
func (s *stack) replicas(service string) []string {
	s.t.Helper()
	out := s.must(s.docker(30*time.Second, "ps", "-a", "-q", "--filter", s.projectFilter(),
		"--filter", "label=com.docker.compose.service="+service, "--filter", "label=com.docker.compose.oneoff=False"))
	return strings.Fields(out)
}

// healthyReplicas counts a service's running, healthy containers.
func (s *stack) healthyReplicas(service string) int {
	n := 0
	for _, id := range s.replicas(service) {
		out, err := s.docker(30*time.Second, "inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
		if err == nil && strings.TrimSpace(out) == "running healthy" {
			n++
		}
	}
	return n
}

// replicaAddr is the host address of replica index (1-based) of a service's
// ephemeral published port.
func (s *stack) replicaAddr(service, port string, index int) string {
	s.t.Helper()
	out := s.must(s.run(30*time.Second, "port", "--index="+strconv.Itoa(index), service, port))
	return strings.TrimSpace(out)
}

// promValue reads one unlabelled series from a /metrics endpoint (-1 when absent).
func promValue(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestComposeScaleOut is issue 5's scale-out acceptance on Docker Compose:
// `up -d --scale conversation=2 --scale scriptrouter=2` (compose.yaml,
// PARTITIONS 4 each), 200 conversations on 50 SEs from the host
// (devstack.RunScale, the workload of test/e2e's scale test), one
// conversation container killed with SIGKILL a third of the way through.
// Every request gets exactly one response, and per-SE order holds.
func TestComposeScaleOut(t *testing.T) {
	s := newStack(t, "tsmhub-e2e-scale", "compose.yaml")
	upStart := time.Now()
	s.must(s.run(5*time.Minute, "up", "-d", "--scale", "conversation=2", "--scale", "scriptrouter=2"))
	s.waitHealthy(clusterServices, healthyLimit)
	for _, svc := range scaled {
		bustest.Eventually(t, healthyLimit, "two healthy "+svc+" replicas", func() bool { return s.healthyReplicas(svc) == 2 })
	}
	t.Logf("MEASURE scaled up -d to all containers healthy: %s", time.Since(upStart).Round(100*time.Millisecond))
	// Each replica owns two of the four partitions.
	ownedStart := time.Now()
	addrs := map[string][]string{}
	for _, svc := range scaled {
		port := map[string]string{"conversation": "8081", "scriptrouter": "8082"}[svc]
		for i := 1; i <= 2; i++ {
			a := s.replicaAddr(svc, port, i)
			addrs[svc] = append(addrs[svc], a)
			// Owned and serving: their consumers are created, so the
			// workload does not wait for them.
			bustest.Eventually(t, time.Minute, svc+" replica "+a+" owns and serves 2 partitions", func() bool {
				return promValue(a, "tsm_partitions_owned") == 2 && promValue(a, "tsm_partitions_serving") == 2
			})
		}
	}
	t.Logf("MEASURE then every replica owns and serves its 2 partitions: %s", time.Since(ownedStart).Round(100*time.Millisecond))
	h := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := devstack.ScaleConfig{JS: h.js, RegistryAddr: "127.0.0.1:" + port("TSMHUB_REGISTRY_PORT"),
		SESimAddr: "127.0.0.1:" + port("TSMHUB_SESIM_PORT"), SEPrefix: "0C", Logf: t.Logf}
	enrollStart := time.Now()
	if err := devstack.EnrollScale(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE enrolment of %d SEs: %s", len(cfg.ScaleSEs()), time.Since(enrollStart).Round(100*time.Millisecond))

	// The victim is one conversation container; the other one survives.
	victim := s.replicas("conversation")[0]
	victimAddr := strings.TrimSpace(strings.Split(s.must(s.docker(30*time.Second, "port", victim, "8081")), "\n")[0])
	survivor := ""
	for _, a := range addrs["conversation"] {
		if a != victimAddr {
			survivor = a
		}
	}
	if survivor == "" || len(addrs["conversation"]) != 2 {
		t.Fatalf("conversation replicas %v, victim %s at %s: no survivor", addrs["conversation"], victim, victimAddr)
	}
	before := promValue(survivor, "tsm_partitions_acquired_total")
	killed := make(chan time.Time, 1)
	cfg.Midway = func() {
		if _, err := s.docker(time.Minute, "kill", "-s", "KILL", victim); err != nil {
			t.Errorf("kill %s: %v", victim, err)
		}
		killed <- time.Now()
	}
	start := time.Now()
	res, err := devstack.RunScale(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := <-killed
	moved := promValue(survivor, "tsm_partitions_acquired_total") - before
	t.Logf("MEASURE scale: %d conversations (%d requests, %d executes) on %d SEs with 2 conversation and 2 scriptrouter replicas: %s; kill -9 of a conversation replica at +%s moved %.0f partitions to the survivor",
		res.Conversations, res.Requests, res.Executes, len(cfg.ScaleSEs()), res.Duration.Round(time.Millisecond),
		at.Sub(start).Round(time.Millisecond), moved)
	if moved < 2 {
		t.Errorf("the surviving conversation replica took %.0f partitions, want at least 2", moved)
	}
}
