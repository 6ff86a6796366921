package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
)

// closedRun drives conversations from clients workers: warm-up, then a
// measured window; then the workers finish their conversations and stop.
// With traceHops, a sample of the secured scripts is split into hops.
func closedRun(ctx context.Context, s *system, ses []*benchSE, clients int, warmup, window time.Duration, traceHops bool) (*LoadResult, error) {
	m := newMeter()
	if traceHops {
		m.trace = &tracer{every: 5, max: 300}
	}
	stop := make(chan struct{})
	wg := closedLoop(ctx, ses, clients, m, stop)
	stopped := false
	halt := func() {
		if !stopped {
			close(stop)
			wg.Wait()
			stopped = true
		}
	}
	defer halt()
	if !sleepCtx(ctx, warmup) {
		return nil, ctx.Err()
	}
	seq0, err := s.streamSeqs(ctx)
	if err != nil {
		return nil, err
	}
	snap0, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	h0 := s.scrapeHandlers(ctx)
	m.start()
	if !sleepCtx(ctx, window) {
		return nil, ctx.Err()
	}
	m.on.Store(false)
	snap1, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	h1 := s.scrapeHandlers(ctx)
	seq1, err := s.streamSeqs(ctx)
	if err != nil {
		return nil, err
	}
	halt()
	wall := snap1.at.Sub(snap0.at).Seconds()
	lr := &LoadResult{Clients: clients, DurationSeconds: round(wall, 2),
		Conversations: m.conversations.Load(), Scripts: m.scripts.Load(), SecuredScripts: m.secured.Load(), APDUs: m.apdus.Load(),
		Latency: m.latencies(), Errors: m.errorCounts()}
	lr.ConvPerSec = round(float64(lr.Conversations)/wall, 1)
	lr.ScriptsPerSec = round(float64(lr.Scripts)/wall, 1)
	lr.SecuredPerSec = round(float64(lr.SecuredScripts)/wall, 1)
	lr.APDUsPerSec = round(float64(lr.APDUs)/wall, 1)
	lr.ScriptsPerSecond = m.timeline(window)
	lr.Handlers = handlerDelta(h0, h1, lr.Scripts)
	_, msgs := seqDelta(seq0, seq1)
	lr.BusMsgsPerSec = round(float64(msgs)/wall, 1)
	if lr.Conversations > 0 {
		lr.BusMsgsPerConversation = round(float64(msgs)/float64(lr.Conversations), 2)
	}
	lr.Processes, lr.MachineBusyPct, lr.MachineIOWaitPct = usage(snap0, snap1, lr.Scripts)
	lr.OthersPct = othersPct(lr.Processes, lr.MachineBusyPct, runtime.NumCPU())
	if m.trace != nil {
		lr.Hops, lr.HopSamples = loadHops(ctx, s.js, m.trace.traces)
	}
	return lr, nil
}

// openRun offers conversations at scriptsPerSec/2 per second (two scripts
// each) on a fixed schedule.
func openRun(ctx context.Context, s *system, ses []*benchSE, scriptsPerSec float64, warmup, window time.Duration) (*CurvePoint, error) {
	m := newMeter()
	var lag stats.Recorder
	snap0, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	openLoop(ctx, ses, scriptsPerSec/2, warmup, window, m, &lag)
	snap1, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	cp := &CurvePoint{TargetScriptsPerSec: round(scriptsPerSec, 1), DurationSeconds: window.Seconds(),
		Latency: m.latencies(), StartLag: lag.Summary(), Errors: m.errorCounts()}
	cp.AchievedScriptsPerSec = round(float64(m.scripts.Load())/window.Seconds(), 1)
	var procs []ProcUsage
	procs, cp.MachineBusyPct, _ = usage(snap0, snap1, 0)
	cp.OthersPct = othersPct(procs, cp.MachineBusyPct, runtime.NumCPU())
	return cp, ctx.Err()
}

// profileRun drives the closed loop again and, after a short warm-up,
// profiles the limit busiest services (by CPU in the throughput window) and
// this process for seconds. With every process profiled it also returns the
// stack's CPU per send-script by area.
func profileRun(ctx context.Context, s *system, ses []*benchSE, clients, seconds int, dir string, busiest []ProcUsage, limit int) ([]ProfileResult, []AreaCost, error) {
	var targets []string
	for _, p := range busiest {
		if _, ok := s.pprofAddrs[p.Name]; ok && len(targets) < limit {
			targets = append(targets, p.Name)
		}
	}
	m := newMeter()
	stop := make(chan struct{})
	wg := closedLoop(ctx, ses, clients, m, stop)
	defer func() {
		close(stop)
		wg.Wait()
	}()
	if !sleepCtx(ctx, 3*time.Second) {
		return nil, nil, ctx.Err()
	}
	m.start()
	start := time.Now()
	var mu sync.Mutex
	var errs []string
	var out []ProfileResult
	var pwg sync.WaitGroup
	collect := func(name, file string, take func() error) {
		defer pwg.Done()
		if err := take(); err != nil {
			mu.Lock()
			errs = append(errs, name+": "+err.Error())
			mu.Unlock()
			return
		}
		pr, err := summarizeProfile(file, 15)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, name+": "+err.Error())
			return
		}
		pr.Service = name
		out = append(out, *pr)
	}
	for _, name := range targets {
		file := filepath.Join(dir, name+".cpu.pprof")
		pwg.Add(1)
		go collect(name, file, func() error { return fetchProfile(ctx, s.pprofAddrs[name], seconds, file) })
	}
	selfFile := filepath.Join(dir, "tsmbench.cpu.pprof")
	pwg.Add(1)
	go collect(selfName, selfFile, func() error { return profileSelf(ctx, time.Duration(seconds)*time.Second, selfFile) })
	pwg.Wait()
	m.on.Store(false)
	rate := float64(m.scripts.Load()) / time.Since(start).Seconds()
	for i := range out {
		out[i].File = filepath.Join(filepath.Base(dir), out[i].File)
	}
	logf("profiles taken at %.1f send-script/s (with profiling on)", rate)
	var stack []AreaCost
	if len(out) == len(targets)+1 && len(targets) == len(s.pprofAddrs) && m.scripts.Load() > 0 {
		stack = stackAreas(out, m.scripts.Load())
	}
	if len(errs) > 0 {
		return out, stack, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, stack, nil
}

// stackAreas adds up the areas of every process's profile, weighted by the
// CPU each profile sampled, per send-script completed meanwhile.
func stackAreas(profs []ProfileResult, scripts int64) []AreaCost {
	ms := map[string]float64{}
	for _, p := range profs {
		for _, a := range p.Areas {
			ms[a.Name] += p.SampledCPUSeconds * 1000 * a.Pct / 100 / float64(scripts)
		}
	}
	var out []AreaCost
	for name, v := range ms {
		out = append(out, AreaCost{Area: name, MsPerScript: round(v, 3)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MsPerScript > out[j].MsPerScript })
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// ratios computes bus efficiency and latency overhead (issue 6).
func ratios(res *Result) *Ratios {
	t, st, b := res.Throughput, res.Steps, res.Baseline
	r := &Ratios{}
	if b.AsyncPerSec > 0 {
		r.BusEfficiency = round(t.ScriptsPerSec*st.PerScript/b.AsyncPerSec, 3)
		r.BusEfficiencyAllMsgs = round(t.BusMsgsPerSec/b.AsyncPerSec, 3)
	}
	if b.Sync.P50Ms > 0 && st.PerScript > 0 {
		r.LatencyOverhead = round(t.Latency[opSecured].P50Ms/(st.PerScript*b.Sync.P50Ms), 2)
		r.LatencyOverheadAllScripts = round(t.Latency[opAnyScript].P50Ms/(st.PerScript*b.Sync.P50Ms), 2)
	}
	return r
}

// defaultStepMessage is used for the baseline when the steps phase did not
// run: a 1 KiB body with CloudEvents-like headers.
func defaultStepMessage() *nats.Msg {
	m := nats.NewMsg("tsm.se.0200000000000000.execute")
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "0123456789abcdefghijkl",
		"ce-source": "urn:tsm:svc:mnoadapter", "ce-type": "tsm.se.execute", "ce-subject": "0200000000000000",
		"ce-time": "2026-01-01T00:00:00.000000000Z", "ce-datacontenttype": "application/json",
		nats.MsgIdHdr: "0123456789abcdefghijkl"} {
		m.Header.Set(k, v)
	}
	m.Data = []byte(`{"pad":"` + strings.Repeat("0", 1000) + `"}`)
	return m
}

// checkTargets compares the run with issue 6's targets.
func checkTargets(res *Result) []TargetCheck {
	var out []TargetCheck
	add := func(name, target, measured string, met *bool) {
		out = append(out, TargetCheck{Name: name, Target: target, Measured: measured, Met: met})
	}
	yes := func(b bool) *bool { return &b }
	if t := res.Throughput; t != nil {
		add("send-script/s end to end", ">= 1000", fmt.Sprintf("%.0f (all send-scripts; %.0f secured 5-APDU scripts/s)", t.ScriptsPerSec, t.SecuredPerSec),
			yes(t.ScriptsPerSec >= 1000))
	} else {
		add("send-script/s end to end", ">= 1000", "not measured", nil)
	}
	half := (*CurvePoint)(nil)
	for i := range res.Curve {
		if res.Curve[i].Percent == 50 {
			half = &res.Curve[i]
		}
	}
	if half != nil {
		p99 := half.Latency[opSecured].P99Ms
		add("send-script p99 at half the maximum rate", "< 50 ms",
			fmt.Sprintf("%.1f ms at %.0f send-script/s (all send-scripts: %.1f ms)", p99, half.AchievedScriptsPerSec, half.Latency[opAnyScript].P99Ms),
			yes(p99 < 50 && half.Latency[opAnyScript].P99Ms < 50))
		if res.Throughput != nil && res.Throughput.ScriptsPerSec < 1000 {
			out[len(out)-1].Measured += fmt.Sprintf(" (half of the %.0f/s reached, not of 1000/s)", res.Throughput.ScriptsPerSec)
		}
	} else {
		add("send-script p99 at half the maximum rate", "< 50 ms", "not measured", nil)
	}
	if r := res.Ratios; r != nil {
		add("bus efficiency", ">= 0.25", fmt.Sprintf("%.3f", r.BusEfficiency), yes(r.BusEfficiency >= 0.25))
		m := fmt.Sprintf("%.2f at the maximum rate", r.LatencyOverhead)
		if r.LightPercent > 0 {
			m += fmt.Sprintf("; %.2f at %d %% of it", r.LatencyOverheadLight, r.LightPercent)
		}
		add("latency overhead", "<= 2.0", m, yes(r.LatencyOverhead <= 2.0))
	} else {
		add("bus efficiency", ">= 0.25", "not measured", nil)
		add("latency overhead", "<= 2.0", "not measured", nil)
	}
	var biggest *ScaleTier
	total := 0.0
	for i := range res.Scale {
		biggest = &res.Scale[i]
		total += res.Scale[i].ImportSeconds
	}
	if biggest != nil {
		met := (*bool)(nil)
		if biggest.SEs >= 1_000_000 {
			met = yes(biggest.Lookups.P99Ms < 2)
		}
		add("get-se-id p99 with 1,000,000 SEs", "< 2 ms", fmt.Sprintf("%.2f ms with %d SEs", biggest.Lookups.P99Ms, biggest.SEs), met)
		rate := float64(biggest.SEs) / total
		m2 := (*bool)(nil)
		measured := fmt.Sprintf("%d SEs in %.1f s (%.0f/s; 1,000,000 would take %.0f s at that rate)", biggest.SEs, total, rate, 1e6/rate)
		if biggest.SEs >= 1_000_000 {
			m2 = yes(total < 60)
			measured = fmt.Sprintf("%.1f s (%.0f/s)", total, rate)
		}
		add("1,000,000 SEs imported", "< 60 s", measured, m2)
	} else {
		add("get-se-id p99 with 1,000,000 SEs", "< 2 ms", "not measured", nil)
		add("1,000,000 SEs imported", "< 60 s", "not measured", nil)
	}
	return out
}
