// Package e2e runs tsmhub end to end: an embedded JetStream server with a
// temporary store, the five services as real processes built from this
// repository (so a test can kill -9 one of them), the demo data set, and SP
// clients speaking the public contract over NATS.
package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	binDir = os.Getenv("TSMHUB_BIN")
	if binDir == "" {
		dir, err := os.MkdirTemp("", "tsmhub-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		args := []string{"build", "-o", dir + string(os.PathSeparator)}
		for _, s := range devstack.Binaries {
			args = append(args, "github.com/tsmhub/tsmhub/services/"+s)
		}
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the services:", err)
			return 1
		}
		binDir = dir
	}
	return m.Run()
}

// env is one running stack with SP clients.
type env struct {
	t     *testing.T
	stack *devstack.Stack
	nc    *nats.Conn
	js    jetstream.JetStream
	mu    sync.Mutex
	sps   map[string]*spclient.Client
	logs  *bustest.Buffer
	// dir holds the stack's data: the JetStream store and every service's bbolt files.
	dir string
}

// startEnv starts a full stack with the demo data set.
func startEnv(t *testing.T) *env {
	t.Helper()
	return startEnvWith(t, nil)
}

// startEnvWith is startEnv with extra environment for every service.
func startEnvWith(t *testing.T, extraEnv map[string]string) *env {
	t.Helper()
	logs := &bustest.Buffer{}
	var out io.Writer = logs
	if os.Getenv("TSMHUB_E2E_LOGS") != "" {
		out = io.MultiWriter(logs, os.Stderr)
	}
	dir := t.TempDir()
	stackEnv := map[string]string{"LOG_LEVEL": "info", "CONV_TTL": "2m"}
	for k, v := range extraEnv {
		stackEnv[k] = v
	}
	st, err := devstack.Start(devstack.Config{Dir: dir, BinDir: binDir, Output: out, Env: stackEnv})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, stack: st, sps: map[string]*spclient.Client{}, logs: logs, dir: dir}
	t.Cleanup(func() {
		e.closeClients()
		st.Stop()
		if t.Failed() {
			t.Logf("service logs:\n%s", tail(logs.String(), 200))
		}
	})
	specs, err := devstack.Specs(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if err := st.Run(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, s := range specs {
		if err := st.WaitReady(ctx, s.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := devstack.SeedDemo(ctx, st.HTTPAddr("registry")); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(st.NATSURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	e.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Every demo card exists before a test talks to it.
	for _, se := range devstack.DemoSEs {
		e.waitCard(se.SEID)
	}
	return e
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func (e *env) sp(spID string) *spclient.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.sps[spID]; ok {
		return c
	}
	c, err := spclient.New(e.js, spID, spclient.WithTimeout(60*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	e.sps[spID] = c
	return c
}

func (e *env) closeClients() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.sps {
		c.Close()
	}
}

// httpJSON does a request against a service's HTTP API and decodes the answer.
func (e *env) httpJSON(method, service, path string, body, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+e.stack.HTTPAddr(service)+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s %s: %v", method, service, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// waitCard waits until the se-simulator manufactured the SE's card.
func (e *env) waitCard(seID string) {
	e.t.Helper()
	bustest.Eventually(e.t, 30*time.Second, "card "+seID+" manufactured", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.stack.HTTPAddr("sesimulator")+"/v1/cards/"+seID+"/counters", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// counters reads the card's execution counters.
func (e *env) apdusExecuted(seID string) int {
	e.t.Helper()
	var c struct {
		APDUsExecuted int `json:"apdusExecuted"`
	}
	if code := e.httpJSON(http.MethodGet, "sesimulator", "/v1/cards/"+seID+"/counters", nil, &c); code != 200 {
		e.t.Fatalf("counters of %s: HTTP %d", seID, code)
	}
	return c.APDUsExecuted
}

// restart kills a service with SIGKILL, starts it again and waits until ready.
func (e *env) killAndRestart(name string) {
	e.t.Helper()
	if err := e.stack.Kill(name); err != nil {
		e.t.Fatal(err)
	}
	if err := e.stack.Restart(name); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.stack.WaitReady(ctx, name); err != nil {
		e.t.Fatal(err)
	}
}

// responsesFor counts the responses in TSM_RES correlated with each request id.
func (e *env) responsesFor(spID string) map[string]int {
	e.t.Helper()
	counts := map[string]int{}
	for _, m := range bustest.Collect(e.t, e.js, "TSM_RES", "tsm.sp."+spID+".res.>") {
		counts[m.Headers().Get("ce-correlationid")]++
	}
	return counts
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
