//go:build compose

package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bustest"
)

// Host ports of the test's stacks (compose.yaml variables), away from the
// defaults so that a stack on the default ports keeps running.
var testPorts = map[string]string{
	"TSMHUB_NATS_PORT":         "14222",
	"TSMHUB_NATS_PORT_2":       "14223",
	"TSMHUB_NATS_PORT_3":       "14224",
	"TSMHUB_NATS_MONITOR_PORT": "18222",
	"TSMHUB_REGISTRY_PORT":     "18080",
	"TSMHUB_MNO_A_PORT":        "18083",
	"TSMHUB_SESIM_PORT":        "18084",
	"TSMHUB_MNO_B_PORT":        "18085",
	"TSMHUB_TAG":               "latest",
	"CONV_TTL":                 "5m",
	// Compose v1 gives up on a slow engine after 60 s by default.
	"COMPOSE_HTTP_TIMEOUT": "180",
}

// port returns the host port of a compose variable (environment first).
func port(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return testPorts[name]
}

// Services of compose.yaml that `up` starts, and the images `make images` builds.
var (
	clusterServices = []string{"nats-1", "nats-2", "nats-3", "registry", "conversation", "scriptrouter",
		"mnoadapter-mno-a", "mnoadapter-mno-b", "sesimulator"}
	smallServices = []string{"nats-1", "registry", "conversation", "scriptrouter",
		"mnoadapter-mno-a", "mnoadapter-mno-b", "sesimulator"}
	images = []string{"registry", "conversation", "scriptrouter", "mnoadapter", "sesimulator", "tsmctl", "seed", "nats"}
)

// stack is one compose project.
type stack struct {
	t       *testing.T
	root    string
	compose []string
	project string
	files   []string
	env     []string
	// artifacts is where logs go when the test fails (gitignored).
	artifacts string
}

// repoRoot is two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "compose.yaml")); err != nil {
		t.Fatalf("compose.yaml not found in %s: %v", root, err)
	}
	return root
}

// composeCommand is TSMHUB_COMPOSE, else `docker compose` (v2) when it
// answers, else docker-compose (v1).
func composeCommand(t *testing.T) []string {
	t.Helper()
	if v := strings.Fields(os.Getenv("TSMHUB_COMPOSE")); len(v) > 0 {
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Fatal("neither `docker compose` nor docker-compose is installed")
	return nil
}

// newStack prepares a project; nothing runs yet. Cleanup tears it down
// (unless TSMHUB_KEEP=1) and checks that nothing of it is left.
func newStack(t *testing.T, project string, files ...string) *stack {
	t.Helper()
	root := repoRoot(t)
	s := &stack{t: t, root: root, compose: composeCommand(t), project: project, files: files,
		artifacts: filepath.Join(root, "test", "compose", ".artifacts")}
	s.env = os.Environ()
	for k := range testPorts {
		if v := port(k); v != "" {
			s.env = append(s.env, k+"="+v)
		}
	}
	for _, img := range images {
		ref := "tsmhub/" + img + ":" + port("TSMHUB_TAG")
		if _, err := s.docker(30*time.Second, "image", "inspect", "--format", "{{.Id}}", ref); err != nil {
			t.Fatalf("image %s missing: run `make images` first (%v)", ref, err)
		}
	}
	// A project left over by an aborted run would make the test lie.
	if _, err := s.run(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
		t.Fatalf("cleaning up a previous %s: %v", project, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.saveLogs()
		}
		if os.Getenv("TSMHUB_KEEP") == "1" {
			t.Logf("TSMHUB_KEEP=1: project %s left running", project)
			return
		}
		start := time.Now()
		if out, err := s.run(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "20"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		t.Logf("MEASURE %s down -v: %s", project, time.Since(start).Round(100*time.Millisecond))
		if left := s.leftovers(); len(left) > 0 {
			t.Errorf("compose down -v left behind: %s", strings.Join(left, ", "))
		}
	})
	return s
}

// run runs a compose command of the project with a deadline.
func (s *stack) run(timeout time.Duration, args ...string) (string, error) {
	full := append([]string{}, s.compose[1:]...)
	full = append(full, "-p", s.project, "--project-directory", s.root)
	for _, f := range s.files {
		full = append(full, "-f", filepath.Join(s.root, f))
	}
	full = append(full, args...)
	return s.exec(timeout, s.compose[0], full...)
}

// docker runs a docker command with a deadline.
func (s *stack) docker(timeout time.Duration, args ...string) (string, error) {
	return s.exec(timeout, "docker", args...)
}

func (s *stack) exec(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.root
	cmd.Env = s.env
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %s", name, strings.Join(args, " "), timeout)
	} else if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), err
}

func (s *stack) must(out string, err error) string {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// projectFilter selects the project's objects by the label compose (v1 and
// v2) puts on containers, networks and volumes.
func (s *stack) projectFilter() string { return "label=com.docker.compose.project=" + s.project }

// container is the id of a service's (first, non one-off) container.
func (s *stack) container(service string) string {
	s.t.Helper()
	out := s.must(s.docker(30*time.Second, "ps", "-a", "-q", "--filter", s.projectFilter(),
		"--filter", "label=com.docker.compose.service="+service, "--filter", "label=com.docker.compose.oneoff=False"))
	ids := strings.Fields(out)
	if len(ids) == 0 {
		s.t.Fatalf("no container for service %s", service)
	}
	return ids[0]
}

// state is what docker inspect says of one container.
type state struct {
	Service  string
	Status   string // running, exited, restarting...
	Health   string // starting, healthy, unhealthy, "" without a health check
	Restarts int
}

// states inspects every container of the project (one-off ones excluded).
func (s *stack) states() (map[string]state, error) {
	out, err := s.docker(30*time.Second, "ps", "-a", "-q", "--filter", s.projectFilter(),
		"--filter", "label=com.docker.compose.oneoff=False")
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	res := map[string]state{}
	if len(ids) == 0 {
		return res, nil
	}
	args := append([]string{"inspect", "--format",
		`{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{end}}`}, ids...)
	out, err = s.docker(30*time.Second, args...)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		st := state{Service: f[0], Status: f[1]}
		fmt.Sscan(f[2], &st.Restarts)
		if len(f) > 3 {
			st.Health = f[3]
		}
		res[st.Service] = st
	}
	return res, nil
}

// waitHealthy waits until every listed service has a running, healthy
// container, and returns how long that took.
func (s *stack) waitHealthy(services []string, limit time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	bustest.EventuallyReport(s.t, limit, "every service running and healthy", func() (bool, string) {
		st, err := s.states()
		if err != nil {
			return false, err.Error()
		}
		for _, svc := range services {
			if c := st[svc]; c.Status != "running" || c.Health != "healthy" {
				return false, describe(st)
			}
		}
		return true, ""
	})
	return time.Since(start)
}

func describe(st map[string]state) string {
	var parts []string
	for _, c := range st {
		parts = append(parts, fmt.Sprintf("%s=%s/%s(restarts %d)", c.Service, c.Status, c.Health, c.Restarts))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// waitStatus waits until the container's state is want (e.g. exited).
func (s *stack) waitStatus(id, want string, limit time.Duration) {
	s.t.Helper()
	bustest.EventuallyReport(s.t, limit, "container "+id+" "+want, func() (bool, string) {
		out, err := s.docker(30*time.Second, "inspect", "--format", "{{.State.Status}}", id)
		return err == nil && out == want, fmt.Sprintf("%q, %v", out, err)
	})
}

// leftovers lists the project's containers, volumes and networks that exist.
func (s *stack) leftovers() []string {
	var left []string
	for _, kind := range []string{"container", "volume", "network"} {
		args := []string{kind, "ls", "-q", "--filter", s.projectFilter()}
		if kind == "container" {
			args = []string{"ps", "-a", "-q", "--filter", s.projectFilter()}
		}
		out, err := s.docker(30*time.Second, args...)
		if err != nil {
			left = append(left, fmt.Sprintf("%s listing failed: %v", kind, err))
			continue
		}
		for _, id := range strings.Fields(out) {
			left = append(left, kind+" "+id)
		}
		// Names too: compose prefixes every object with the project name.
		if kind != "container" {
			out, err = s.docker(30*time.Second, kind, "ls", "-q", "--filter", "name="+s.project+"_")
			if err == nil {
				for _, id := range strings.Fields(out) {
					left = append(left, kind+" "+id)
				}
			}
		}
	}
	return left
}

// saveLogs writes the project's logs to the artifacts directory and the tail
// of them to the test log.
func (s *stack) saveLogs() {
	out, err := s.run(2*time.Minute, "logs", "--no-color", "--timestamps")
	if err != nil {
		s.t.Logf("compose logs: %v", err)
	}
	st, _ := s.states()
	s.t.Logf("containers: %s", describe(st))
	if err := os.MkdirAll(s.artifacts, 0o755); err == nil {
		path := filepath.Join(s.artifacts, s.project+"-logs.txt")
		if os.WriteFile(path, []byte(out), 0o644) == nil {
			s.t.Logf("compose logs saved to %s", path)
		}
	}
	lines := strings.Split(out, "\n")
	if len(lines) > 150 {
		lines = lines[len(lines)-150:]
	}
	s.t.Logf("last log lines:\n%s", strings.Join(lines, "\n"))
}

// httpJSON GETs a URL on the host's loopback and decodes the JSON answer.
func httpJSON(url string, out any) (int, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, nil
}
