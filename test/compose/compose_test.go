//go:build compose

package compose

import (
	"bufio"
	"context"
	"fmt"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// healthyLimit is acceptance 1: every container healthy within 120 s of
// `compose up -d`.
const healthyLimit = 120 * time.Second

// killedService is the service container the test SIGKILLs in the middle of
// a conversation, with the SP's next script waiting for it.
const killedService = "conversation"

// TestComposeFig3WithFaults deploys the three-node stack and runs Fig. 3
// from the host while a service is killed and a NATS node is stopped.
func TestComposeFig3WithFaults(t *testing.T) {
	testStart := time.Now()
	s := newStack(t, "tsmhub-e2e", "compose.yaml")
	upStart := time.Now()
	s.must(s.run(5*time.Minute, "up", "-d"))
	s.waitHealthy(clusterServices, healthyLimit)
	t.Logf("MEASURE up -d to all %d containers healthy: %s", len(clusterServices), time.Since(upStart).Round(100*time.Millisecond))
	seedStart := time.Now()
	t.Logf("seed job: %s", s.must(s.run(3*time.Minute, "run", "--rm", "seed")))
	t.Logf("MEASURE seed job: %s", time.Since(seedStart).Round(100*time.Millisecond))

	h := connect(t)
	for _, st := range topology.Streams {
		if r := h.streamInfo(st.Name).Config.Replicas; r != 3 {
			t.Fatalf("stream %s has %d replicas, want 3", st.Name, r)
		}
	}
	before := h.counters()
	sent := map[string]int{}
	se := devstack.DemoSEs

	// A: tsmctl from the host, every node up (SE 3, MNO B, embedded-3p).
	sent[se[2].SEID] += tsmctlWalkthrough(t, h.natsURL, "bank1", se[2])

	// B: Fig. 3 through the SP library on SE 1 (MNO A, embedded), with the
	// faults: the conversation service is SIGKILLed between the two SCP03
	// scripts, the second script is published while it is dead, the NATS
	// node leading TSM_STEPS is stopped, then the service is started again.
	bank := newSP(t, h.js, "bank1")
	ss := bank.session(se[0].SEID)
	ss.lookups(se[0].MSI)
	ss.begin(contract.OperationKeyRotation)
	ss.opened(ss.send(ss.openScript()))

	victim := s.container(killedService)
	s.must(s.docker(time.Minute, "kill", "-s", "KILL", victim))
	s.waitStatus(victim, "exited", 30*time.Second)
	t.Logf("FAULT docker kill -s KILL %s", killedService)

	reqSeq := h.streamInfo(topology.StreamRequests.Name).State.LastSeq
	work := ss.workScript()
	ss.sent += len(work)
	type result struct {
		resp *contract.SendScriptResponse
		err  error
	}
	scriptDone := make(chan result, 1)
	go func() {
		resp, err := ss.trySend(work)
		scriptDone <- result{resp, err}
	}()
	bustest.Eventually(t, time.Minute, "the script request stored in TSM_REQ", func() bool {
		return h.streamInfo(topology.StreamRequests.Name).State.LastSeq > reqSeq
	})

	var node string
	bustest.Eventually(t, time.Minute, "a leader of TSM_STEPS", func() bool {
		node = h.streamInfo(topology.StreamSteps.Name).Cluster.Leader
		return node != ""
	})
	if !strings.HasPrefix(node, "nats-") {
		t.Fatalf("TSM_STEPS leader %q is not a compose NATS node", node)
	}
	nodeContainer := s.container(node)
	stopStart := time.Now()
	s.must(s.docker(2*time.Minute, "stop", nodeContainer))
	t.Logf("FAULT docker stop %s (leader of TSM_STEPS) in %s", node, time.Since(stopStart).Round(100*time.Millisecond))

	restartStart := time.Now()
	s.must(s.docker(time.Minute, "start", victim))
	s.waitHealthy([]string{killedService}, healthyLimit)
	t.Logf("MEASURE %s started again to healthy (one NATS node down): %s", killedService, time.Since(restartStart).Round(100*time.Millisecond))
	select {
	case r := <-scriptDone:
		ss.checkScript(work, r.resp, r.err)
		ss.worked(r.resp)
	case <-time.After(4 * time.Minute):
		t.Fatal("no send-script response after the restart")
	}
	t.Logf("MEASURE script published while %s was dead answered %s after its restart", killedService, time.Since(restartStart).Round(100*time.Millisecond))
	ss.end()
	ss.begin(contract.OperationPersonalization)
	ss.send([][]byte{ss.selectSD()})
	ss.end()
	sent[se[0].SEID] += ss.sent

	// C: tsmctl while the node is still down (SE 4, MNO B, uicc-3p): a host
	// client fails over between the published ports.
	sent[se[3].SEID] += tsmctlWalkthrough(t, h.natsURL, "bank1", se[3])

	// D: the node comes back and catches up; then Fig. 3 for the other SP
	// on SE 2 (MNO A, uicc).
	rejoinStart := time.Now()
	s.must(s.docker(time.Minute, "start", nodeContainer))
	s.waitHealthy(clusterServices, healthyLimit)
	h.waitReplicasCurrent(t, 2*time.Minute)
	t.Logf("MEASURE %s started again to healthy with every stream replica current: %s", node, time.Since(rejoinStart).Round(100*time.Millisecond))
	transit := newSP(t, h.js, "transit1")
	ts := transit.session(se[1].SEID)
	ts.walkthrough(se[1].MSI)
	sent[se[1].SEID] += ts.sent

	// Ops: tsmctl tail shows the conversation of SE 1 from the host.
	tailShows(t, h.natsURL, se[0].SEID)

	// Every APDU executed exactly once: the cards' counters moved by exactly
	// what the SPs sent.
	after := h.counters()
	for _, d := range se {
		if got := after[d.SEID] - before[d.SEID]; got != sent[d.SEID] {
			t.Errorf("SE %s executed %d APDUs, the SPs sent %d", d.SEID, got, sent[d.SEID])
		}
	}
	// Every response delivered: each request id has at least one response,
	// and no more than the copies of it the SP published.
	for _, p := range []*sp{bank, transit} {
		counts := h.responsesFor(t, p.id)
		p.mu.Lock()
		for id, n := range p.sends {
			if counts[id] < 1 {
				t.Errorf("%s request %s got no response", p.id, id)
			}
			if counts[id] > n {
				t.Errorf("%s request %s sent %d times got %d responses", p.id, id, n, counts[id])
			}
		}
		for id, n := range counts {
			if _, ours := p.sends[id]; !ours && n != 1 {
				t.Errorf("%s request %s (tsmctl) got %d responses", p.id, id, n)
			}
		}
		p.mu.Unlock()
	}
	if n := h.streamInfo(topology.StreamDeadLetters.Name).State.Msgs; n != 0 {
		t.Errorf("%d dead letters", n)
	}
	t.Logf("MEASURE APDUs per SE %v, all executed once; test body %s", sent, time.Since(testStart).Round(100*time.Millisecond))
}

// TestComposeSmallComesUp checks the one-node override: up, healthy, seeded,
// one tsmctl walkthrough, streams at one replica, down.
func TestComposeSmallComesUp(t *testing.T) {
	s := newStack(t, "tsmhub-e2e-small", "compose.yaml", "compose.small.yaml")
	upStart := time.Now()
	s.must(s.run(5*time.Minute, "up", "-d"))
	s.waitHealthy(smallServices, healthyLimit)
	t.Logf("MEASURE small: up -d to all %d containers healthy: %s", len(smallServices), time.Since(upStart).Round(100*time.Millisecond))
	st, err := s.states()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st["nats-2"]; ok {
		t.Fatalf("compose.small.yaml started nats-2: %s", describe(st))
	}
	s.must(s.run(3*time.Minute, "run", "--rm", "seed"))
	h := connect(t)
	if r := h.streamInfo(topology.StreamSteps.Name).Config.Replicas; r != 1 {
		t.Fatalf("TSM_STEPS has %d replicas, want 1", r)
	}
	se := devstack.DemoSEs[0]
	before := h.counters()[se.SEID]
	want := tsmctlWalkthrough(t, h.natsURL, "transit1", se)
	if got := h.counters()[se.SEID] - before; got != want {
		t.Fatalf("SE %s executed %d APDUs, tsmctl sent %d", se.SEID, got, want)
	}
}

// host is the test's view of a deployed stack from the host.
type host struct {
	t       *testing.T
	natsURL string
	nc      *nats.Conn
	js      jetstream.JetStream
}

// connect dials every published NATS port (a client fails over between them).
func connect(t *testing.T) *host {
	t.Helper()
	url := fmt.Sprintf("nats://127.0.0.1:%s,nats://127.0.0.1:%s,nats://127.0.0.1:%s",
		port("TSMHUB_NATS_PORT"), port("TSMHUB_NATS_PORT_2"), port("TSMHUB_NATS_PORT_3"))
	nc, err := nats.Connect(url, nats.Name("compose-e2e"), nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	bustest.Eventually(t, 30*time.Second, "NATS connection", nc.IsConnected)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &host{t: t, natsURL: url, nc: nc, js: js}
}

// streamInfo reads a stream's info, retrying while the cluster elects.
func (h *host) streamInfo(name string) *jetstream.StreamInfo {
	h.t.Helper()
	var info *jetstream.StreamInfo
	bustest.Eventually(h.t, time.Minute, "info of stream "+name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := h.js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err = st.Info(ctx)
		return err == nil && info.Cluster != nil
	})
	return info
}

// waitReplicasCurrent waits until every stream has a leader and every
// replica is current (a restarted node has caught up).
func (h *host) waitReplicasCurrent(t *testing.T, d time.Duration) {
	t.Helper()
	bustest.Eventually(t, d, "every stream replica current", func() bool {
		for _, st := range topology.Streams {
			info := h.streamInfo(st.Name)
			if info.Cluster.Leader == "" || len(info.Cluster.Replicas) != info.Config.Replicas-1 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					return false
				}
			}
		}
		return true
	})
}

// counters reads every demo card's count of executed APDUs from the
// se-simulator's port published on the host.
func (h *host) counters() map[string]int {
	h.t.Helper()
	res := map[string]int{}
	for _, se := range devstack.DemoSEs {
		var c struct {
			APDUsExecuted int `json:"apdusExecuted"`
		}
		url := "http://127.0.0.1:" + port("TSMHUB_SESIM_PORT") + "/v1/cards/" + se.SEID + "/counters"
		bustest.Eventually(h.t, time.Minute, "counters of "+se.SEID, func() bool {
			code, err := httpJSON(url, &c)
			return err == nil && code == 200
		})
		res[se.SEID] = c.APDUsExecuted
	}
	return res
}

// responsesFor counts the responses in TSM_RES per correlation id. A read
// that fails (the JetStream API can answer "no responders" for a moment
// after a node came back) is started again.
func (h *host) responsesFor(t *testing.T, spID string) map[string]int {
	t.Helper()
	var counts map[string]int
	var last error
	bustest.Eventually(t, 2*time.Minute, "the responses of "+spID, func() bool {
		counts, last = h.readResponses(spID)
		if last != nil {
			t.Logf("reading the responses of %s: %v (trying again)", spID, last)
		}
		return last == nil
	})
	return counts
}

func (h *host) readResponses(spID string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, topology.StreamResponses.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{topology.SPResponse(spID, ">")}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for n := info.NumPending; n > 0; n-- {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return nil, err
		}
		counts[m.Headers().Get("ce-correlationid")]++
	}
	return counts, nil
}

// tsmctl returns the tsmctl binary: TSMCTL, the one `make images` built, or
// one built now.
var (
	tsmctlOnce sync.Once
	tsmctlPath string
	tsmctlErr  error
)

func tsmctl(t *testing.T) string {
	t.Helper()
	tsmctlOnce.Do(func() {
		if p := os.Getenv("TSMCTL"); p != "" {
			tsmctlPath = p
			return
		}
		p := filepath.Join(repoRoot(t), "bin", "images", ".bin", "tsmctl")
		if _, err := os.Stat(p); err == nil {
			tsmctlPath = p
			return
		}
		dir, err := os.MkdirTemp("", "tsmctl-")
		if err != nil {
			tsmctlErr = err
			return
		}
		tsmctlPath = filepath.Join(dir, "tsmctl")
		out, err := exec.Command("go", "build", "-o", tsmctlPath, "github.com/tsmhub/tsmhub/cmd/tsmctl").CombinedOutput()
		if err != nil {
			tsmctlErr = fmt.Errorf("build tsmctl: %v: %s", err, out)
		}
	})
	if tsmctlErr != nil {
		t.Fatal(tsmctlErr)
	}
	return tsmctlPath
}

// runTsmctl runs tsmctl against the published NATS ports with a deadline.
func runTsmctl(t *testing.T, natsURL, spID string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsmctl(t), append([]string{"--sp", spID, "--timeout", "90s"}, args...)...)
	cmd.Dir = filepath.Join(repoRoot(t), "examples", "scripts")
	// The SD master key through the environment keeps it out of the process list.
	cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "TSM_SD_MASTER_KEY="+devstack.DemoSPMasterKey)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tsmctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tsmctlWalkthrough is Fig. 3 with tsmctl and the example scripts: se-id,
// se-data, a key-rotation conversation (1-open, 2-work: SCP03 with R-MAC
// checks), a personalization conversation (3-select). It returns the number
// of APDUs sent.
func tsmctlWalkthrough(t *testing.T, natsURL, spID string, se devstack.DemoSE) int {
	t.Helper()
	start := time.Now()
	var sdAID string
	for _, d := range devstack.DemoSPs {
		if d.SPID == spID {
			sdAID = d.SDAID
		}
	}
	if out := runTsmctl(t, natsURL, spID, "se-id", "--msi", se.MSI); !strings.Contains(out, se.SEID) {
		t.Fatalf("tsmctl se-id: %s", out)
	}
	if out := runTsmctl(t, natsURL, spID, "se-data", "--se", se.SEID); !strings.Contains(out, se.Configuration) {
		t.Fatalf("tsmctl se-data: %s", out)
	}
	// The example scripts select the SD of bank1; rewrite them for the SP.
	dir := t.TempDir()
	scripts := map[string]string{}
	for _, name := range []string{"1-open.apdu", "2-work.apdu", "3-select.apdu"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "scripts", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "A000000555AA01", sdAID)), 0o644); err != nil {
			t.Fatal(err)
		}
		scripts[name] = p
	}
	out := runTsmctl(t, natsURL, spID, "converse", "--se", se.SEID, "--target-aid", sdAID, "--operation", "key-rotation",
		"--script", scripts["1-open.apdu"], "--script", scripts["2-work.apdu"])
	if strings.Count(out, "R-MAC ok") != 2 || !strings.Contains(out, "ended: success") {
		t.Fatalf("tsmctl converse key-rotation:\n%s", out)
	}
	out = runTsmctl(t, natsURL, spID, "converse", "--se", se.SEID, "--target-aid", sdAID, "--operation", "personalization",
		"--script", scripts["3-select.apdu"])
	if !strings.Contains(out, "ended: success") {
		t.Fatalf("tsmctl converse personalization:\n%s", out)
	}
	t.Logf("MEASURE tsmctl walkthrough on %s (%s): %s", se.SEID, se.MNO, time.Since(start).Round(100*time.Millisecond))
	return 2 + 3 + 1
}

// tailShows runs `tsmctl tail --se` and waits until it printed the SE's
// execute step and a send-script response, then stops it with an interrupt.
func tailShows(t *testing.T, natsURL, seID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsmctl(t), "tail", "--se", seID, "--since", "30m")
	cmd.Env = append(os.Environ(), "NATS_URL="+natsURL)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	var execute, response bool
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !(execute && response) {
		line := sc.Text()
		seen = append(seen, line)
		execute = execute || strings.Contains(line, "tsm.se."+seID+".execute")
		response = response || strings.Contains(line, ".res.send-script")
	}
	cancel()
	_ = cmd.Wait()
	if !execute || !response {
		t.Fatalf("tsmctl tail --se %s printed no execute step or no send-script response:\n%s", seID, strings.Join(seen, "\n"))
	}
	t.Logf("tsmctl tail --se %s: %d lines, e.g.\n%s", seID, len(seen), strings.Join(seen[:min(len(seen), 6)], "\n"))
}
