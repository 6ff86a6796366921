// Command tsmbench measures tsmhub end to end on one machine, beside the raw
// JetStream cost measured on the same server in the same run (issue 6).
//
// It starts the embedded default (JetStream with file storage in a temporary
// directory, the five services as processes), enrols SEs, and then:
//
//  1. counts the durable bus messages per operation from stream sequence
//     deltas on an idle system;
//  2. measures raw JetStream with nats.go: synchronous publish round trip
//     and asynchronous publish throughput of a copy of a step message;
//  3. drives conversations closed-loop from -clients concurrent SP drivers
//     (warm-up, then a fixed window): throughput, latency per operation,
//     CPU and memory per process;
//  4. runs open-loop at 25/50/75 % of the maximum rate for the latency-at-load
//     curve;
//  5. takes CPU profiles of the two busiest services (and of itself) at
//     maximum rate;
//  6. grows a registry to 10,000 / 100,000 (/ 1,000,000) SEs: import time and
//     get-se-id latency.
//
// Results go to <out>/<timestamp>.json and <out>/<timestamp>.md (the tables of
// BENCHMARKS.md), profiles to <out>/<timestamp>/. Everything listens on
// loopback only; the run stops by itself.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options are the command-line flags (recorded in the results as Result.Flags).
type Options struct {
	BinDir           string
	OutDir           string
	DataDir          string
	SEs              int
	Clients          int
	Sweep            []int
	SweepWindow      time.Duration
	Warmup           time.Duration
	Duration         time.Duration
	CurvePercents    []int
	CurveWarmup      time.Duration
	CurveDuration    time.Duration
	BaselineDuration time.Duration
	BaselinePubs     int
	StepSamples      int
	ProfileSeconds   int
	ProfileAll       bool
	ScaleTiers       []int
	Lookups          int
	LookupSeconds    time.Duration
	Phases           []string
	LogLevel         string
	ServiceEnv       map[string]string
	MaxLoad          float64
	MaxLoadWait      time.Duration
	MaxOthersPct     float64
}

var allPhases = []string{"steps", "baseline", "throughput", "curve", "profile", "scale"}

func parseFlags() (Options, error) {
	var o Options
	var curve, tiers, phases, sweep, serviceEnv string
	var million bool
	flag.StringVar(&o.BinDir, "bin", "bin/bench", "directory of the service binaries (the profiled builds of bench/cmd/profiled serve PPROF_ADDR; plain `make build` binaries work without profiles)")
	flag.StringVar(&o.OutDir, "out", "bench/results", "directory for <timestamp>.json, <timestamp>.md and profiles")
	flag.StringVar(&o.DataDir, "dir", "", "parent of the temporary data directory (default: the system's temp dir)")
	flag.IntVar(&o.SEs, "ses", 200, "SEs enrolled for the conversation runs")
	flag.IntVar(&o.Clients, "clients", 32, "concurrent SP conversation drivers of the closed-loop run when -sweep is empty")
	flag.StringVar(&sweep, "sweep", "8,16,32,64", "driver counts tried (short runs) to find the maximum rate; the best one is then measured for -duration (empty: use -clients)")
	flag.DurationVar(&o.SweepWindow, "sweep-window", 6*time.Second, "measured window of each sweep point (after a 3 s warm-up)")
	flag.DurationVar(&o.Warmup, "warmup", 10*time.Second, "closed-loop warm-up")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "closed-loop measured window")
	flag.StringVar(&curve, "curve", "25,50,75", "latency-at-load points, in percent of the maximum send-script rate")
	flag.DurationVar(&o.CurveWarmup, "curve-warmup", 3*time.Second, "warm-up of each latency-at-load point")
	flag.DurationVar(&o.CurveDuration, "curve-duration", 15*time.Second, "measured window of each latency-at-load point")
	flag.DurationVar(&o.BaselineDuration, "baseline-duration", 4*time.Second, "raw JetStream baseline: half sync, then async for this long")
	flag.IntVar(&o.BaselinePubs, "baseline-publishers", 6, "connections of the parallel async baseline (the stack has six service processes)")
	flag.IntVar(&o.StepSamples, "step-samples", 3, "conversations counted for the durable steps per operation")
	flag.IntVar(&o.ProfileSeconds, "profile-seconds", 10, "CPU profile length at maximum rate")
	flag.BoolVar(&o.ProfileAll, "profile-all", true, "profile every service at maximum rate (gives the stack-wide CPU per send-script by area); false: only the two busiest")
	flag.StringVar(&tiers, "scale", "10000,100000", "registry scale tiers (SEs enrolled)")
	flag.BoolVar(&million, "scale-1m", false, "add the 1,000,000 SE tier (several minutes)")
	flag.IntVar(&o.Lookups, "lookups", 2000, "sequential get-se-id calls per registry scale tier")
	flag.DurationVar(&o.LookupSeconds, "lookup-seconds", 3*time.Second, "concurrent get-se-id throughput window per tier")
	flag.StringVar(&phases, "phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ","))
	flag.StringVar(&o.LogLevel, "log-level", "info", "LOG_LEVEL of the services (info is the default of a deployment)")
	flag.StringVar(&serviceEnv, "service-env", "", "extra environment of every service, comma separated K=V (e.g. GOMAXPROCS=1,CONSUMER_WORKERS=8), for experiments")
	flag.Float64Var(&o.MaxLoad, "max-load", 0, "wait until the 1-minute load average is below this before measuring (0: do not wait)")
	flag.Float64Var(&o.MaxOthersPct, "max-others", 10, "measure the maximum-rate window or a latency-at-load point once more when other jobs used more than this percentage of the CPUs during it (the machine is shared); the second result is kept, the first noted")
	flag.DurationVar(&o.MaxLoadWait, "max-load-wait", 15*time.Minute, "give up waiting for -max-load after this long (the load is recorded)")
	flag.Parse()
	var err error
	if o.CurvePercents, err = intList(curve); err != nil {
		return o, fmt.Errorf("-curve: %w", err)
	}
	if o.Sweep, err = intList(sweep); err != nil {
		return o, fmt.Errorf("-sweep: %w", err)
	}
	if o.ScaleTiers, err = intList(tiers); err != nil {
		return o, fmt.Errorf("-scale: %w", err)
	}
	if million {
		o.ScaleTiers = append(o.ScaleTiers, 1_000_000)
	}
	o.ServiceEnv = map[string]string{"LOG_LEVEL": o.LogLevel}
	for _, kv := range strings.Split(serviceEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return o, fmt.Errorf("-service-env: %q is not K=V", kv)
		}
		o.ServiceEnv[k] = v
	}
	for _, p := range strings.Split(phases, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !contains(allPhases, p) {
			return o, fmt.Errorf("-phases: unknown phase %q (have %s)", p, strings.Join(allPhases, ","))
		}
		o.Phases = append(o.Phases, p)
	}
	most := o.Clients
	for _, c := range o.Sweep {
		most = max(most, c)
	}
	switch {
	case o.SEs < most:
		return o, fmt.Errorf("-ses %d < %d drivers (-clients, -sweep): every driver needs SEs of its own", o.SEs, most)
	case o.Clients < 1 || o.Duration <= 0:
		return o, errors.New("-clients and -duration must be positive")
	}
	return o, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tsmbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "tsmbench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (o Options) has(phase string) bool { return contains(o.Phases, phase) }

func run(ctx context.Context, o Options) error {
	started := time.Now().UTC()
	stamp := started.Format("20060102T150405Z")
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	profDir := filepath.Join(o.OutDir, stamp)
	tmp, err := os.MkdirTemp(o.DataDir, "tsmbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	res := &Result{Started: started, Command: os.Args, Options: o, Flags: map[string]string{}, Notes: []string{}}
	flag.VisitAll(func(f *flag.Flag) { res.Flags[f.Name] = f.Value.String() })
	res.Source = gitSource()
	if o.MaxLoad > 0 {
		l, ok := waitForQuietMachine(o.MaxLoad, o.MaxLoadWait, logf)
		if !ok {
			res.Notes = append(res.Notes, fmt.Sprintf("the 1-minute load average was %.2f (above %.2f) after waiting %s: other jobs shared the machine during the run",
				l[0], o.MaxLoad, o.MaxLoadWait))
		}
	}
	sampler := startLoadSampler(5 * time.Second)
	res.Machine = describeMachine(tmp)
	logf("machine: %d x %s, %.1f GiB, %s, fsync p50 %.2f ms, load %.2f", res.Machine.NProc, res.Machine.CPUModel,
		res.Machine.MemoryGiB, res.Machine.Disk, res.Machine.FsyncP50Ms, res.Machine.LoadBefore[0])

	runErr := runConversationPhases(ctx, o, tmp, profDir, res, sampler)
	if runErr == nil && o.has("scale") {
		sampler.setPhase("registry scale")
		scaleDir := filepath.Join(tmp, "scale")
		if err := os.MkdirAll(scaleDir, 0o755); err != nil {
			return err
		}
		var profs []ProfileResult
		res.Scale, profs, runErr = measureScale(ctx, scaleDir, o.BinDir, o.ServiceEnv, o.ScaleTiers, o.Lookups, o.LookupSeconds, profDir, logf)
		res.Profiles = append(res.Profiles, profs...)
	}
	res.LoadAvg = sampler.finish()
	res.Finished = time.Now().UTC()
	res.Targets = checkTargets(res)
	if runErr != nil {
		res.Notes = append(res.Notes, "the run stopped early: "+runErr.Error())
	}
	jsonFile := filepath.Join(o.OutDir, stamp+".json")
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonFile, append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := renderMarkdown(res)
	mdFile := filepath.Join(o.OutDir, stamp+".md")
	if err := os.WriteFile(mdFile, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println(md)
	logf("results: %s and %s", jsonFile, mdFile)
	return runErr
}

// runConversationPhases runs every phase on the full stack.
func runConversationPhases(ctx context.Context, o Options, tmp, profDir string, res *Result, sampler *loadSampler) error {
	needStack := false
	for _, p := range []string{"steps", "baseline", "throughput", "curve", "profile"} {
		needStack = needStack || o.has(p)
	}
	if !needStack {
		return nil
	}
	sampler.setPhase("setup")
	stackDir := filepath.Join(tmp, "stack")
	if err := os.MkdirAll(stackDir, 0o755); err != nil {
		return err
	}
	logf("starting the embedded JetStream server and the services from %s", o.BinDir)
	s, err := startSystem(ctx, stackDir, o.BinDir, o.ServiceEnv, nil)
	if err != nil {
		return err
	}
	defer s.stop()
	logf("enrolling %d SEs (pre-issued SDs of %d SPs, MNO latency 0)", o.SEs, 2)
	ses, err := s.enrol(ctx, o.SEs)
	if err != nil {
		return fmt.Errorf("enrol: %w\n%s", err, s.logTail(40))
	}
	res.Workload = Workload{SEs: o.SEs, MNOLatencyMs: 0, APDUsPerSecured: securedAPDUs, APDUsPerSetup: setupAPDUs,
		ScriptsPerConv: 2, APDUsPerConv: setupAPDUs + securedAPDUs, SecurityLevel: "33 (C-MAC, C-DEC, R-MAC, R-ENC)",
		ServiceLogLevel: o.LogLevel, ServiceBinaries: o.BinDir, ServiceEnv: fmt.Sprint(o.ServiceEnv),
		ResponseSubscribers: "one spclient.Client (one ordered consumer on TSM_RES) per SP, shared by all drivers of that SP",
		Conversation: []string{
			"begin-conversation (SP's own SD as target)",
			"send-script [SELECT SD, INITIALIZE UPDATE] (setup; timed separately)",
			"send-script [EXTERNAL AUTHENTICATE, 4 commands wrapped at level 33] (the measured 5-APDU SCP03 script; R-MACs verified)",
			"end-conversation",
		}}
	for _, sp := range s.sps {
		res.Workload.SPs = append(res.Workload.SPs, sp.ID)
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("%s: %w\nlast service log lines:\n%s", what, err, s.logTail(40))
	}

	var stepMsg = defaultStepMessage()
	if o.has("steps") || o.has("baseline") {
		sampler.setPhase("steps")
		logf("counting durable bus messages per operation (%d conversations on an idle bus)", o.StepSamples)
		steps, msg, err := measureSteps(ctx, s, ses, max(o.StepSamples, 1))
		if err != nil {
			return fail("steps", err)
		}
		res.Steps, stepMsg = steps, msg
		logf("steps: %.1f per script (%v), %.1f per begin, %.1f per end; step message %d bytes on average",
			steps.PerScript, steps.ScriptByStream, steps.PerBegin, steps.PerEnd, steps.ScriptMessageBytes.Mean)
	}
	if o.has("baseline") {
		sampler.setPhase("baseline")
		logf("raw JetStream baseline on the same server (%s)", o.BaselineDuration)
		b, err := measureBaseline(ctx, s.stack.NATSURL(), stepMsg, o.BaselineDuration, o.BaselinePubs)
		if err != nil {
			return fail("baseline", err)
		}
		res.Baseline = b
		logf("baseline: %d-byte messages, sync p50 %.3f ms, async %.0f/s (1 connection), %.0f/s (%d connections)",
			b.MessageBytes, b.Sync.P50Ms, b.AsyncPerSec, b.AsyncParallelPerSec, b.Publishers)
	}
	if o.has("throughput") || o.has("curve") || o.has("profile") {
		clients := o.Clients
		if len(o.Sweep) > 0 {
			sampler.setPhase("sweep")
			best := 0.0
			for _, c := range o.Sweep {
				lr, err := closedRun(ctx, s, ses, c, 3*time.Second, o.SweepWindow, false)
				if err != nil {
					return fail("sweep", err)
				}
				sp := SweepPoint{Clients: c, ScriptsPerSec: lr.ScriptsPerSec, ScriptP50Ms: lr.Latency[opAnyScript].P50Ms,
					ScriptP99Ms: lr.Latency[opAnyScript].P99Ms, Errors: lr.Errors}
				res.Sweep = append(res.Sweep, sp)
				logf("sweep: %d drivers: %.1f send-script/s, p50 %.1f ms, p99 %.1f ms", c, sp.ScriptsPerSec, sp.ScriptP50Ms, sp.ScriptP99Ms)
				if sp.ScriptsPerSec > best {
					best, clients = sp.ScriptsPerSec, c
				}
			}
		}
		sampler.setPhase("throughput")
		logf("closed loop: %d drivers, warm-up %s, window %s", clients, o.Warmup, o.Duration)
		lr, err := closedRun(ctx, s, ses, clients, o.Warmup, o.Duration, true)
		if err != nil {
			return fail("throughput", err)
		}
		if lr.OthersPct > o.MaxOthersPct {
			note := fmt.Sprintf("maximum-rate window disturbed (other jobs used %.0f %% of the CPUs; %.1f send-script/s, secured p99 %.1f ms): measured again",
				lr.OthersPct, lr.ScriptsPerSec, lr.Latency[opSecured].P99Ms)
			logf("%s", note)
			res.Notes = append(res.Notes, note)
			if lr, err = closedRun(ctx, s, ses, clients, o.Warmup, o.Duration, true); err != nil {
				return fail("throughput", err)
			}
		}
		res.Throughput = lr
		logf("throughput: %.1f conversations/s, %.1f scripts/s, %.1f APDUs/s; secured send-script p50 %.1f ms p99 %.1f ms; errors %v; scripts per second %v",
			lr.ConvPerSec, lr.ScriptsPerSec, lr.APDUsPerSec, lr.Latency[opSecured].P50Ms, lr.Latency[opSecured].P99Ms, lr.Errors, lr.ScriptsPerSecond)
		if res.Steps != nil && res.Baseline != nil {
			res.Ratios = ratios(res)
		}
	}
	if o.has("curve") && res.Throughput != nil && res.Throughput.ScriptsPerSec > 0 {
		for _, pct := range o.CurvePercents {
			sampler.setPhase(fmt.Sprintf("curve %d%%", pct))
			target := res.Throughput.ScriptsPerSec * float64(pct) / 100
			logf("open loop at %d%% of the maximum: %.1f send-script/s (%.1f conversations/s) for %s", pct, target, target/2, o.CurveDuration)
			cp, err := openRun(ctx, s, ses, target, o.CurveWarmup, o.CurveDuration)
			if err != nil {
				return fail("curve", err)
			}
			if cp.OthersPct > o.MaxOthersPct {
				note := fmt.Sprintf("latency-at-load point %d %% disturbed (other jobs used %.0f %% of the CPUs; secured p99 %.1f ms): measured again",
					pct, cp.OthersPct, cp.Latency[opSecured].P99Ms)
				logf("%s", note)
				res.Notes = append(res.Notes, note)
				if cp, err = openRun(ctx, s, ses, target, o.CurveWarmup, o.CurveDuration); err != nil {
					return fail("curve", err)
				}
			}
			cp.Percent = pct
			res.Curve = append(res.Curve, *cp)
			logf("  achieved %.1f scripts/s; secured send-script p50 %.1f ms p99 %.1f ms; start lag p99 %.1f ms",
				cp.AchievedScriptsPerSec, cp.Latency[opSecured].P50Ms, cp.Latency[opSecured].P99Ms, cp.StartLag.P99Ms)
		}
	}
	if r := res.Ratios; r != nil && len(res.Curve) > 0 && res.Baseline.Sync.P50Ms > 0 {
		light := res.Curve[0]
		for _, c := range res.Curve {
			if c.Percent < light.Percent {
				light = c
			}
		}
		r.LightPercent = light.Percent
		r.LatencyOverheadLight = round(light.Latency[opSecured].P50Ms/(res.Steps.PerScript*res.Baseline.Sync.P50Ms), 2)
	}
	if o.has("profile") && res.Throughput != nil {
		sampler.setPhase("profile")
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return err
		}
		logf("CPU profiles at maximum rate (%d drivers, %d s)", res.Throughput.Clients, o.ProfileSeconds)
		limit := 2
		if o.ProfileAll {
			limit = len(res.Throughput.Processes)
		}
		profs, stack, err := profileRun(ctx, s, ses, res.Throughput.Clients, o.ProfileSeconds, profDir, res.Throughput.Processes, limit)
		res.StackAreas = stack
		if err != nil {
			res.Notes = append(res.Notes, "profiles: "+err.Error())
			logf("profiles: %v", err)
		}
		res.Profiles = profs
	}
	return nil
}

// gitSource describes the checkout the bench runs in: the commit and the
// number of files that differ from it (others' work in progress is built
// into the binaries too).
func gitSource() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	status, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	n := 0
	for _, l := range strings.Split(string(status), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return fmt.Sprintf("%s with %d modified files", strings.TrimSpace(string(head)), n)
}
