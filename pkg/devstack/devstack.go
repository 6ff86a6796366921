// Package devstack runs the whole of tsmhub on one machine: an embedded
// JetStream server in this process and every service as a child process built
// from this repository. `make run` (cmd/tsmhub-dev) and the integration tests
// in test/ use it; the tests also kill -9 and restart single services with it.
package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tsmhub/tsmhub/pkg/natsembed"
)

// ServiceSpec describes one service process.
type ServiceSpec struct {
	// Name of the instance, unique in the stack (e.g. "mnoadapter-mno-a").
	Name string
	// Binary is the executable name in the stack's BinDir (e.g. "mnoadapter").
	Binary string
	// HTTPAddr the service listens on (also given as HTTP_ADDR).
	HTTPAddr string
	// Env adds environment variables (NATS_URL, DATA_DIR and HTTP_ADDR are set by the stack).
	Env map[string]string
	// DataDir, if set, is the instance's DATA_DIR instead of the stack's
	// Dir/<Name>: the replicas of a partitioned service share one (RunReplica).
	DataDir string
}

// Config of a stack.
type Config struct {
	// Dir holds the JetStream store (Dir/nats) and each service's data (Dir/<name>).
	Dir string
	// BinDir holds the service binaries.
	BinDir string
	// NATSPort for the embedded server (-1 picks a free port).
	NATSPort int
	// NATSHTTPPort serves the server's monitoring endpoints (0 = off).
	NATSHTTPPort int
	// Output receives the services' log lines, prefixed with the instance name.
	Output io.Writer
	// Env is added to every service's environment.
	Env map[string]string
}

// Stack is a running embedded server with its service processes.
type Stack struct {
	cfg   Config
	NATS  *server.Server
	mu    sync.Mutex
	procs map[string]*proc
	specs map[string]ServiceSpec
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs the embedded JetStream server.
func Start(cfg Config) (*Stack, error) {
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	if cfg.NATSPort == 0 {
		cfg.NATSPort = -1
	}
	ns, err := natsembed.Start(natsembed.Config{Port: cfg.NATSPort, StoreDir: filepath.Join(cfg.Dir, "nats"),
		ServerName: "tsmhub-dev", HTTPPort: cfg.NATSHTTPPort})
	if err != nil {
		return nil, err
	}
	return &Stack{cfg: cfg, NATS: ns, procs: map[string]*proc{}, specs: map[string]ServiceSpec{}}, nil
}

// NATSURL is the client URL of the embedded server.
func (s *Stack) NATSURL() string { return s.NATS.ClientURL() }

// RestartNATS shuts the embedded server down and starts it again on the same
// port and store (a server restart under the services' feet).
func (s *Stack) RestartNATS() error {
	port := s.NATS.Addr().(*net.TCPAddr).Port
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
	ns, err := natsembed.Start(natsembed.Config{Port: port, StoreDir: filepath.Join(s.cfg.Dir, "nats"), ServerName: "tsmhub-dev"})
	if err != nil {
		return err
	}
	s.NATS = ns
	return nil
}

// Run starts a service process.
func (s *Stack) Run(spec ServiceSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.procs[spec.Name]; ok && !p.exited() {
		return fmt.Errorf("%s is already running", spec.Name)
	}
	cmd := exec.Command(filepath.Join(s.cfg.BinDir, spec.Binary))
	dataDir := spec.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(s.cfg.Dir, spec.Name)
	}
	cmd.Env = append(os.Environ(),
		"NATS_URL="+s.NATSURL(),
		"DATA_DIR="+dataDir,
		"HTTP_ADDR="+spec.HTTPAddr,
	)
	for k, v := range s.cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range spec.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(s.cfg.Output, "%-22s %s\n", spec.Name, sc.Text())
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	s.procs[spec.Name] = p
	s.specs[spec.Name] = spec
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to a service (no shutdown path runs) and waits for it to die.
func (s *Stack) Kill(name string) error {
	s.mu.Lock()
	p, ok := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no service %s", name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Restart starts a killed or stopped service again with the same spec.
func (s *Stack) Restart(name string) error {
	s.mu.Lock()
	spec, ok := s.specs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no service %s", name)
	}
	return s.Run(spec)
}

// WaitReady polls the service's /readyz until it answers 200 or ctx ends.
func (s *Stack) WaitReady(ctx context.Context, name string) error {
	s.mu.Lock()
	spec, ok := s.specs[name]
	p := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no service %s", name)
	}
	url := "http://" + spec.HTTPAddr + "/readyz"
	for {
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready", name)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RunReplica starts one more instance of the service instance name (its
// binary, environment and data directory, a free HTTP port), named
// <name>-<n>, and returns that name. Replicas of the conversation service and
// the script router share the data directory and split its partitions
// (PARTITIONS; docs/operations.md, Scaling); env is added to the replica's
// environment.
func (s *Stack) RunReplica(name string, n int, env map[string]string) (string, error) {
	s.mu.Lock()
	spec, ok := s.specs[name]
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("no service %s", name)
	}
	addr, err := FreeAddr()
	if err != nil {
		return "", err
	}
	if spec.DataDir == "" {
		spec.DataDir = filepath.Join(s.cfg.Dir, spec.Name)
	}
	merged := map[string]string{}
	for k, v := range spec.Env {
		merged[k] = v
	}
	for k, v := range env {
		merged[k] = v
	}
	spec.Name, spec.HTTPAddr, spec.Env = name+"-"+strconv.Itoa(n), addr, merged
	return spec.Name, s.Run(spec)
}

// HTTPAddr returns a service's HTTP address.
func (s *Stack) HTTPAddr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.specs[name].HTTPAddr
}

// Stop terminates every service (SIGTERM, then SIGKILL after a grace period)
// and the embedded server.
func (s *Stack) Stop() {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Binaries are the executables the stack runs.
var Binaries = []string{"registry", "conversation", "scriptrouter", "mnoadapter", "sesimulator"}

// DemoMNOs are the MNO ids of the demo data set; one mno-adapter runs per MNO.
var DemoMNOs = []string{"mno-a", "mno-b"}

// Ports of the embedded default (DESIGN.md section 7); the second MNO adapter
// takes 8085.
var DefaultPorts = map[string]int{"registry": 8080, "conversation": 8081, "scriptrouter": 8082,
	"mnoadapter-mno-a": 8083, "sesimulator": 8084, "mnoadapter-mno-b": 8085}

// Specs returns the service instances of the demo stack. With basePorts nil,
// every service gets a free loopback port (tests).
func Specs(basePorts map[string]int) ([]ServiceSpec, error) {
	var specs []ServiceSpec
	add := func(name, bin string, env map[string]string) error {
		addr := ""
		if p, ok := basePorts[name]; ok {
			addr = "127.0.0.1:" + strconv.Itoa(p)
		} else {
			a, err := FreeAddr()
			if err != nil {
				return err
			}
			addr = a
		}
		specs = append(specs, ServiceSpec{Name: name, Binary: bin, HTTPAddr: addr, Env: env})
		return nil
	}
	for _, n := range []string{"registry", "conversation", "scriptrouter", "sesimulator"} {
		if err := add(n, n, nil); err != nil {
			return nil, err
		}
	}
	for _, m := range DemoMNOs {
		if err := add("mnoadapter-"+m, "mnoadapter", map[string]string{"MNO_ID": m}); err != nil {
			return nil, err
		}
	}
	return specs, nil
}

// ErrMissingBinary says how to build what is missing.
var ErrMissingBinary = errors.New("service binary missing: run `make build`")

// CheckBinaries verifies every binary is in dir.
func CheckBinaries(dir string) error {
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%w (%s)", ErrMissingBinary, filepath.Join(dir, b))
		}
	}
	return nil
}
