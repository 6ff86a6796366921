package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/bench/internal/procstat"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// system is a running tsmhub (embedded JetStream server in this process,
// services as child processes) with the bench's SP clients.
type system struct {
	dir   string
	stack *devstack.Stack
	specs []devstack.ServiceSpec
	// pprofAddrs maps a service instance to its PPROF_ADDR.
	pprofAddrs map[string]string
	nc         *nats.Conn
	js         jetstream.JetStream
	// sps are the bench SPs with their one shared client each.
	sps []*benchSP
	// pids maps service instance names to process ids.
	pids    map[string]int
	logFile *os.File
}

// benchSP is one SP the bench speaks for.
type benchSP struct {
	ID     string
	SDAID  []byte
	Client *spclient.Client
}

// benchSE is one enrolled SE and the SP whose conversations run on it.
type benchSE struct {
	ID  string
	MSI string
	MNO string
	SP  *benchSP
}

// startSystem starts the embedded server and the given service instances
// (nil: all of the demo stack) and waits until they are ready.
// env is added to every service's environment.
func startSystem(ctx context.Context, dir, binDir string, env map[string]string, only []string) (*system, error) {
	if err := devstack.CheckBinaries(binDir); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "services.log"))
	if err != nil {
		return nil, err
	}
	st, err := devstack.Start(devstack.Config{Dir: dir, BinDir: binDir, Output: logFile, Env: env})
	if err != nil {
		logFile.Close()
		return nil, err
	}
	s := &system{dir: dir, stack: st, pprofAddrs: map[string]string{}, logFile: logFile, pids: map[string]int{}}
	specs, err := devstack.Specs(nil)
	if err != nil {
		s.stop()
		return nil, err
	}
	for _, spec := range specs {
		if only != nil && !contains(only, spec.Name) {
			continue
		}
		addr, err := devstack.FreeAddr()
		if err != nil {
			s.stop()
			return nil, err
		}
		specEnv := map[string]string{"PPROF_ADDR": addr}
		for k, v := range spec.Env {
			specEnv[k] = v
		}
		spec.Env = specEnv
		s.pprofAddrs[spec.Name] = addr
		if err := st.Run(spec); err != nil {
			s.stop()
			return nil, err
		}
		s.specs = append(s.specs, spec)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, spec := range s.specs {
		if err := st.WaitReady(rctx, spec.Name); err != nil {
			s.stop()
			return nil, fmt.Errorf("%w (service log: %s)", err, logFile.Name())
		}
	}
	if err := s.findPIDs(); err != nil {
		// Seen once on the shared machine: every service answered /readyz, yet
		// one had exited. The port devstack picked as free was probably taken
		// by another job meanwhile, whose service answered for ours; the
		// services' log says.
		tail := s.logTail(20)
		s.stop()
		return nil, fmt.Errorf("%w; last lines of the services' log:\n%s", err, tail)
	}
	s.nc, err = nats.Connect(st.NATSURL(), nats.Name("tsmbench"), nats.MaxReconnects(-1))
	if err != nil {
		s.stop()
		return nil, err
	}
	s.js, err = jetstream.New(s.nc)
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// findPIDs maps each service instance to its process: devstack does not
// expose the PIDs, so the children of this process are matched by the
// DATA_DIR the stack gave each instance (<dir>/<instance name>).
func (s *system) findPIDs() error {
	kids, err := procstat.Children(os.Getpid())
	if err != nil {
		return err
	}
	for _, pid := range kids {
		env, err := procstat.Environ(pid)
		if err != nil {
			continue
		}
		dataDir := env["DATA_DIR"]
		if filepath.Dir(dataDir) != s.dir {
			continue
		}
		s.pids[filepath.Base(dataDir)] = pid
	}
	for _, spec := range s.specs {
		if _, ok := s.pids[spec.Name]; !ok {
			return fmt.Errorf("no process found for %s among the children of this process", spec.Name)
		}
	}
	return nil
}

// stop ends the services and the server; the data directory stays for the
// caller to remove.
func (s *system) stop() {
	for _, sp := range s.sps {
		if sp.Client != nil {
			sp.Client.Close()
		}
	}
	if s.nc != nil {
		s.nc.Close()
	}
	s.stack.Stop()
	s.logFile.Close()
}

// logTail returns the last lines of the services' log.
func (s *system) logTail(lines int) string {
	b, err := os.ReadFile(s.logFile.Name())
	if err != nil {
		return ""
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// httpJSON sends a JSON request to a service and decodes a JSON answer.
func (s *system) httpJSON(ctx context.Context, method, service, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.stack.HTTPAddr(service)+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s %s: %s: %s", method, service, path, resp.Status, truncate(string(b), 500))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// benchSEID and benchMSI number the bench's SEs (distinct from the demo's).
func benchSEID(i int) string { return fmt.Sprintf("%016X", uint64(0x0200000000000000)+uint64(i)) }
func benchMSI(i int) string  { return fmt.Sprintf("+4916%09d", i) }

// seShape is an SE type and configuration of one MNO, as in the demo set.
type seShape struct{ MNO, SEType, Configuration string }

// shapes spreads the bench SEs over both demo MNOs and all four
// configurations.
var shapes = []seShape{
	{"mno-a", "eSE", "embedded"}, {"mno-b", "eSE", "embedded-3p"},
	{"mno-a", "UICC", "uicc"}, {"mno-b", "UICC", "uicc-3p"},
}

// importLine is one JSON line of POST /v1/ses:import.
func importLine(w *bytes.Buffer, seID, msi string, shape seShape, preIssued []map[string]string) {
	rec := map[string]any{"seId": seID, "msi": msi, "msiType": "MSISDN", "mno": shape.MNO, "seType": shape.SEType,
		"configuration": shape.Configuration, "profileId": "bench-profile-1", "gpVersion": "2.3.1",
		"javaCardVersion": "3.0.5", "certificationLevel": "EMVCo", "expiresAt": "2036-01-01T00:00:00Z"}
	if preIssued != nil {
		rec["preIssuedSpDomains"] = preIssued
	}
	b, _ := json.Marshal(rec)
	w.Write(b)
	w.WriteByte('\n')
}

// importReport is the registry's answer to an import.
type importReport struct {
	Imported  int `json:"imported"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
	Errors    []struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	} `json:"errors"`
}

func (s *system) importSEs(ctx context.Context, body []byte) (importReport, error) {
	var rep importReport
	err := s.httpJSON(ctx, http.MethodPost, "registry", "/v1/ses:import", bytes.NewReader(body), "application/x-ndjson", &rep)
	if err == nil && rep.Failed > 0 {
		err = fmt.Errorf("import: %d lines failed, first: %+v", rep.Failed, rep.Errors[0])
	}
	return rep, err
}

// enrol seeds the demo data set, sets both demo MNOs' OTA latency to 0 (so
// that the bearer model's sleep does not hide the system's own cost), and
// imports n bench SEs with pre-issued SDs of both demo SPs. It waits until the
// se-simulator manufactured every card and the MNO adapters use latency 0.
func (s *system) enrol(ctx context.Context, n int) ([]*benchSE, error) {
	reg := s.stack.HTTPAddr("registry")
	if err := devstack.SeedDemo(ctx, reg); err != nil {
		return nil, err
	}
	mnos := map[string]map[string]any{
		"mno-a": {"name": "Demo MNO A", "otaCarrier": "https", "maxApdusPerScript": 32, "latencyMs": 0},
		"mno-b": {"name": "Demo MNO B", "otaCarrier": "sms", "maxApdusPerScript": 16, "latencyMs": 0},
	}
	for id, body := range mnos {
		b, _ := json.Marshal(body)
		if err := s.httpJSON(ctx, http.MethodPut, "registry", "/v1/mnos/"+id, bytes.NewReader(b), "application/json", nil); err != nil {
			return nil, err
		}
	}
	var preIssued []map[string]string
	for _, sp := range devstack.DemoSPs {
		preIssued = append(preIssued, map[string]string{"spId": sp.SPID, "aid": sp.SDAID})
		aid, err := hex.DecodeString(sp.SDAID)
		if err != nil {
			return nil, err
		}
		c, err := spclient.New(s.js, sp.SPID, spclient.WithTimeout(60*time.Second))
		if err != nil {
			return nil, err
		}
		s.sps = append(s.sps, &benchSP{ID: sp.SPID, SDAID: aid, Client: c})
	}
	var body bytes.Buffer
	ses := make([]*benchSE, n)
	for i := 0; i < n; i++ {
		shape := shapes[i%len(shapes)]
		ses[i] = &benchSE{ID: benchSEID(i), MSI: benchMSI(i), MNO: shape.MNO, SP: s.sps[(i/len(shapes))%len(s.sps)]}
		importLine(&body, ses[i].ID, ses[i].MSI, shape, preIssued)
	}
	if _, err := s.importSEs(ctx, body.Bytes()); err != nil {
		return nil, err
	}
	// Every card manufactured: the simulator's registry consumer has nothing
	// pending, and the last SE's card answers.
	if err := s.waitConsumersIdle(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	if err := poll(ctx, time.Minute, "cards manufactured", func() (bool, error) {
		for _, se := range []*benchSE{ses[0], ses[n-1]} {
			if err := s.httpJSON(ctx, http.MethodGet, "sesimulator", "/v1/cards/"+se.ID+"/counters", nil, "", nil); err != nil {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	for _, m := range devstack.DemoMNOs {
		if err := poll(ctx, time.Minute, "mnoadapter-"+m+" latency 0", func() (bool, error) {
			var st struct {
				RegistryRecord bool  `json:"registryRecord"`
				LatencyMs      int64 `json:"latencyMs"`
			}
			if err := s.httpJSON(ctx, http.MethodGet, "mnoadapter-"+m, "/v1/mno", nil, "", &st); err != nil {
				return false, nil
			}
			return st.RegistryRecord && st.LatencyMs == 0, nil
		}); err != nil {
			return nil, err
		}
	}
	return ses, nil
}

// poll calls cond every 50 ms until it reports true, it fails, or d passes.
func poll(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// streamSeqs reads the last sequence of every stream.
func (s *system) streamSeqs(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	names := s.js.StreamNames(ctx)
	for n := range names.Name() {
		st, err := s.js.Stream(ctx, n)
		if err != nil {
			return nil, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, err
		}
		out[n] = info.State.LastSeq
	}
	if err := names.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// seqDelta is after - before per stream, and the total.
func seqDelta(before, after map[string]uint64) (map[string]uint64, uint64) {
	d := map[string]uint64{}
	var total uint64
	for k, v := range after {
		d[k] = v - before[k]
		total += d[k]
	}
	return d, total
}

// waitConsumersIdle waits until every durable consumer of every stream has
// nothing pending or unacknowledged.
func (s *system) waitConsumersIdle(ctx context.Context, d time.Duration) error {
	return poll(ctx, d, "durable consumers idle", func() (bool, error) {
		names := s.js.StreamNames(ctx)
		idle := true
		for n := range names.Name() {
			st, err := s.js.Stream(ctx, n)
			if err != nil {
				return false, err
			}
			cl := st.ListConsumers(ctx)
			for ci := range cl.Info() {
				if ci.Config.Durable != "" && (ci.NumPending > 0 || ci.NumAckPending > 0) {
					idle = false
				}
			}
			if err := cl.Err(); err != nil {
				return false, err
			}
		}
		return idle, names.Err()
	})
}

// quiesce waits until the streams stop growing (no message for 300 ms) and
// every durable consumer is idle, so that stream deltas count one operation
// and nothing else.
func (s *system) quiesce(ctx context.Context) (map[string]uint64, error) {
	var last map[string]uint64
	stableSince := time.Now()
	err := poll(ctx, time.Minute, "quiet bus", func() (bool, error) {
		seqs, err := s.streamSeqs(ctx)
		if err != nil {
			return false, err
		}
		if last == nil || !equalSeqs(seqs, last) {
			last, stableSince = seqs, time.Now()
			return false, nil
		}
		return time.Since(stableSince) >= 300*time.Millisecond, nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.waitConsumersIdle(ctx, time.Minute); err != nil {
		return nil, err
	}
	return last, nil
}

func equalSeqs(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// procSnapshot reads every service process and this one.
type procSnapshot struct {
	at      time.Time
	procs   map[string]procstat.Proc
	machine procstat.CPUTimes
}

// selfName labels this process in the results: it hosts the embedded
// JetStream server and the load generator.
const selfName = "tsmbench (NATS server + load generator)"

func (s *system) snapshot() (procSnapshot, error) {
	snap := procSnapshot{at: time.Now(), procs: map[string]procstat.Proc{}}
	for name, pid := range s.pids {
		p, err := procstat.Read(pid)
		if err != nil {
			return snap, fmt.Errorf("%s (pid %d): %w", name, pid, err)
		}
		snap.procs[name] = p
	}
	p, err := procstat.Read(os.Getpid())
	if err != nil {
		return snap, err
	}
	snap.procs[selfName] = p
	snap.machine, err = procstat.MachineCPU()
	return snap, err
}

// usage turns two snapshots into per-process usage, busiest first, with the
// machine's busy and I/O wait shares.
func usage(a, b procSnapshot, scripts int64) ([]ProcUsage, float64, float64) {
	wall := b.at.Sub(a.at).Seconds()
	var out []ProcUsage
	for name, pb := range b.procs {
		pa := a.procs[name]
		cpu := (pb.CPU - pa.CPU).Seconds()
		sys := (pb.System - pa.System).Seconds()
		u := ProcUsage{Name: name, PID: pb.PID, CPUSeconds: round(cpu, 2), CPUPct: round(cpu/wall*100, 1),
			RSSMiB: round(float64(pb.RSS)/(1<<20), 1), PeakRSSMiB: round(float64(pb.PeakRSS)/(1<<20), 1)}
		if cpu > 0 {
			u.SystemPct = round(sys/cpu*100, 0)
		}
		if scripts > 0 {
			u.CPUMsPerScript = round(cpu*1000/float64(scripts), 3)
			u.WritesPerScript = round(float64(pb.WriteSyscalls-pa.WriteSyscalls)/float64(scripts), 1)
			u.DiskKiBPerScript = round(float64(pb.DiskWriteBytes-pa.DiskWriteBytes)/1024/float64(scripts), 1)
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CPUSeconds > out[j].CPUSeconds })
	total := (b.machine.Total - a.machine.Total).Seconds()
	busy, iowait := 0.0, 0.0
	if total > 0 {
		busy = round((b.machine.Busy-a.machine.Busy).Seconds()/total*100, 1)
		iowait = round((b.machine.IOWait-a.machine.IOWait).Seconds()/total*100, 1)
	}
	return out, busy, iowait
}

func round(v float64, places int) float64 {
	p := 1.0
	for i := 0; i < places; i++ {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

// othersPct is the share of all CPUs (percent) used by processes other than
// the bench's own (the machine is shared): machine busy minus what the
// stack's processes used.
func othersPct(procs []ProcUsage, machineBusyPct float64, nproc int) float64 {
	ours := 0.0
	for _, p := range procs {
		ours += p.CPUPct
	}
	return round(max(machineBusyPct-ours/float64(nproc), 0), 1)
}
