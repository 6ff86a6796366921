package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
)

// renderMarkdown renders the result as the tables of BENCHMARKS.md.
func renderMarkdown(r *Result) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	p("## Run %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	p("Command: `%s` (source: %s)\n\n", strings.Join(r.Command, " "), r.Source)
	p("| machine | |\n|---|---|\n")
	p("| CPUs (nproc) | %d x %s |\n", m.NProc, m.CPUModel)
	p("| memory | %.1f GiB |\n", m.MemoryGiB)
	p("| disk (data directory) | %s; 4 KiB write + fdatasync p50 %.2f ms, p99 %.2f ms |\n", m.Disk, m.FsyncP50Ms, m.FsyncP99Ms)
	p("| one durable bbolt commit (800-byte put + delete) | %.0f µs wall, %.0f µs CPU |\n", m.BoltCommitUs, m.BoltCommitCPUUs)
	p("| kernel, Go | %s, %s |\n", m.Kernel, m.GoVersion)
	p("| load average (1/5/15 min) at start | %.2f / %.2f / %.2f |\n", m.LoadBefore[0], m.LoadBefore[1], m.LoadBefore[2])
	if len(r.LoadAvg) > 0 {
		lo, hi := r.LoadAvg[0].Load[0], r.LoadAvg[0].Load[0]
		for _, s := range r.LoadAvg {
			lo, hi = min(lo, s.Load[0]), max(hi, s.Load[0])
		}
		p("| 1-min load average during the run | %.2f to %.2f (the bench itself loads the machine) |\n", lo, hi)
	}
	p("\n")

	p("### Targets (issue 6)\n\n| target | goal | measured | met |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		met := "not measured"
		if t.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*t.Met]
		}
		p("| %s | %s | %s | %s |\n", t.Name, t.Target, t.Measured, met)
	}
	p("\n")

	if w := r.Workload; w.SEs > 0 {
		p("### Workload\n\n%d SEs over both demo MNOs (OTA latency set to 0 ms) and all four configurations, SPs %s.\n", w.SEs, strings.Join(w.SPs, ", "))
		p("One conversation:\n\n")
		for i, c := range w.Conversation {
			p("%d. %s\n", i+1, c)
		}
		p("\n%d send-scripts and %d APDUs per conversation; extra service environment %s; %s.\n\n", w.ScriptsPerConv, w.APDUsPerConv, w.ServiceEnv, w.ResponseSubscribers)
	}

	if s := r.Steps; s != nil {
		p("### Durable bus steps\n\n")
		p("Counted from stream sequence deltas on an idle bus (%d scripts): **%.1f messages per send-script** (", s.Samples, s.PerScript)
		var parts []string
		for _, k := range sortedKeys(s.ScriptByStream) {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, s.ScriptByStream[k]))
		}
		p("%s), %.1f per begin-conversation, %.1f per end-conversation, %.1f per conversation.\n\n", strings.Join(parts, ", "), s.PerBegin, s.PerEnd, s.PerConversation)
		p("Messages of one secured script, in order: `%s`. Size (headers + data): mean %d bytes (headers %d), min %d, max %d.\n\n",
			strings.Join(s.ScriptSubjects, "`, `"), s.ScriptMessageBytes.Mean, s.ScriptMessageBytes.HeaderMean, s.ScriptMessageBytes.Min, s.ScriptMessageBytes.Max)
	}

	if s := r.Steps; s != nil && len(s.IdleHops) > 0 {
		p("Hops of a secured script on an idle system (stream timestamps, %d scripts one at a time):\n\n", s.Samples/2)
		hopTable(&b, s.IdleHops)
	}
	if s := r.Steps; s != nil && len(s.IdleHandlers) > 0 {
		p("Handler time per consumer on the idle bus (the services' tsm_handler_duration_seconds; decode, validation, use case, bbolt commit):\n\n")
		handlerTable(&b, s.IdleHandlers, false)
	}
	if bl := r.Baseline; bl != nil {
		p("### Raw JetStream on the same server\n\n")
		p("nats.go, a copy of a step message (%d bytes, %d of them headers, fresh Nats-Msg-Id each), file-storage stream with the duplicate window of TSM_STEPS.\n\n", bl.MessageBytes, bl.HeaderBytes)
		p("| measure | value |\n|---|---|\n")
		p("| sync publish round trip (%d publishes) | p50 %.3f ms, p99 %.3f ms |\n", bl.SyncCount, bl.Sync.P50Ms, bl.Sync.P99Ms)
		p("| async publish, 1 connection, %d pending | %.0f msg/s |\n", bl.AsyncMaxPending, bl.AsyncPerSec)
		if bl.Publishers > 1 {
			p("| async publish, %d connections | %.0f msg/s |\n", bl.Publishers, bl.AsyncParallelPerSec)
		}
		p("\n")
	}

	if len(r.Sweep) > 0 {
		p("### Concurrency sweep (closed loop, %s each after a 3 s warm-up)\n\n| drivers | send-scripts/s | send-script p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n", r.Options.SweepWindow)
		for _, s := range r.Sweep {
			p("| %d | %.1f | %.1f | %.1f | %s |\n", s.Clients, s.ScriptsPerSec, s.ScriptP50Ms, s.ScriptP99Ms, errorList(s.Errors))
		}
		p("\n")
	}
	if t := r.Throughput; t != nil {
		p("### Maximum rate (closed loop, %d drivers, %.0f s window)\n\n", t.Clients, t.DurationSeconds)
		p("| conversations/s | send-scripts/s (all) | secured 5-APDU scripts/s | APDUs/s | bus messages/s | messages per conversation |\n|---|---|---|---|---|---|\n")
		p("| %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |\n\n", t.ConvPerSec, t.ScriptsPerSec, t.SecuredPerSec, t.APDUsPerSec, t.BusMsgsPerSec, t.BusMsgsPerConversation)
		latencyTable(&b, t.Latency)
		if len(t.Hops) > 0 && t.HopSamples > 0 {
			p("Where a secured send-script's time goes at this rate (%d sampled scripts, stream timestamps):\n\n", t.HopSamples)
			hopTable(&b, t.Hops)
		}
		if len(t.Handlers) > 0 {
			p("Handler time per consumer at this rate (a hop much longer than its handlers is time waiting for a worker):\n\n")
			handlerTable(&b, t.Handlers, true)
		}
		if len(t.Errors) > 0 {
			p("Errors: %s\n\n", errorList(t.Errors))
		} else {
			p("No errors.\n\n")
		}
		p("CPU and memory in the window (machine %.1f %% busy, of which %.1f %% other jobs; %.1f %% I/O wait; CPU %% of one core: 200 = both cores):\n\n",
			t.MachineBusyPct, t.OthersPct, t.MachineIOWaitPct)
		p("| process | CPU s | CPU %% of one core | of it in the kernel | CPU ms per send-script | write syscalls per send-script | disk KiB written per send-script | RSS MiB | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n")
		var cpu, perScript, writes, disk float64
		for _, u := range t.Processes {
			p("| %s | %.2f | %.1f | %.0f %% | %.3f | %.1f | %.1f | %.1f | %.1f |\n", u.Name, u.CPUSeconds, u.CPUPct, u.SystemPct, u.CPUMsPerScript,
				u.WritesPerScript, u.DiskKiBPerScript, u.RSSMiB, u.PeakRSSMiB)
			cpu += u.CPUSeconds
			perScript += u.CPUMsPerScript
			writes += u.WritesPerScript
			disk += u.DiskKiBPerScript
		}
		p("| all | %.2f | %.1f | | %.3f | %.1f | %.1f | | |\n", cpu, cpu/t.DurationSeconds*100, perScript, writes, disk)
		p("\n")
	}

	if ra := r.Ratios; ra != nil {
		p("### Ratios\n\n| ratio | value |\n|---|---|\n")
		p("| bus efficiency = (send-scripts/s x steps per script) / raw async publishes/s | **%.3f** |\n", ra.BusEfficiency)
		p("| the same with every message written in the window (begin and end too) | %.3f |\n", ra.BusEfficiencyAllMsgs)
		p("| latency overhead = secured send-script p50 / (steps per script x raw sync p50) | **%.2f** |\n", ra.LatencyOverhead)
		p("| the same with the p50 of every send-script | %.2f |\n", ra.LatencyOverheadAllScripts)
		if ra.LightPercent > 0 {
			p("| latency overhead at %d %% of the maximum rate (little queueing) | %.2f |\n", ra.LightPercent, ra.LatencyOverheadLight)
		}
		p("\n")
	}

	if len(r.Curve) > 0 {
		p("### Latency at load (open loop)\n\n")
		p("| load | target send-script/s | achieved | secured send-script p50 / p95 / p99 ms | all send-scripts p99 ms | begin p99 ms | end p99 ms | start lag p99 ms | machine busy (other jobs) | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Curve {
			s := c.Latency[opSecured]
			p("| %d %% | %.1f | %.1f | %.1f / %.1f / %.1f | %.1f | %.1f | %.1f | %.1f | %.0f %% (%.0f %%) | %s |\n", c.Percent, c.TargetScriptsPerSec, c.AchievedScriptsPerSec,
				s.P50Ms, s.P95Ms, s.P99Ms, c.Latency[opAnyScript].P99Ms, c.Latency[opBegin].P99Ms, c.Latency[opEnd].P99Ms, c.StartLag.P99Ms, c.MachineBusyPct, c.OthersPct, errorList(c.Errors))
		}
		p("\n")
	}

	if len(r.StackAreas) > 0 {
		p("### CPU per send-script over the whole stack, by area (every process profiled at maximum rate)\n\n| area | CPU ms per send-script |\n|---|---|\n")
		total := 0.0
		for _, a := range r.StackAreas {
			p("| %s | %.3f |\n", a.Area, a.MsPerScript)
			total += a.MsPerScript
		}
		p("| all | %.3f |\n\n", total)
	}
	if len(r.Profiles) > 0 {
		p("### CPU profiles\n\nOpen one with `go tool pprof -http=: bench/results/<file>`.\n\n")
		p("| profile | file | CPU s sampled | where the time goes |\n|---|---|---|---|\n")
		for _, pr := range r.Profiles {
			var parts []string
			for _, a := range pr.Areas[:min(len(pr.Areas), 4)] {
				parts = append(parts, fmt.Sprintf("%s %.0f %%", a.Name, a.Pct))
			}
			p("| %s | `%s` | %.1f in %.0f s | %s |\n", pr.Service, pr.File, pr.SampledCPUSeconds, pr.Seconds, strings.Join(parts, ", "))
		}
		p("\n")
		for _, pr := range detailedProfiles(r) {
			p("**%s**\n\n| where the time goes | %% |\n|---|---|\n", pr.Service)
			for _, a := range pr.Areas {
				p("| %s | %.1f |\n", a.Name, a.Pct)
			}
			p("\n| top cumulative (non-runtime) | %% |\n|---|---|\n")
			for _, e := range pr.TopCum[:min(len(pr.TopCum), 12)] {
				p("| `%s` | %.1f |\n", e.Name, e.Pct)
			}
			p("\n| top flat | %% |\n|---|---|\n")
			for _, e := range pr.TopFlat[:min(len(pr.TopFlat), 8)] {
				p("| `%s` | %.1f |\n", e.Name, e.Pct)
			}
			p("\n")
		}
	}

	if len(r.Scale) > 0 {
		p("### Registry scale (registry alone; get-se-id end to end over the bus)\n\n")
		p("| SEs enrolled | imported in this tier | import s | SEs/s | all records published after s | get-se-id p50 / p95 / p99 ms | get-se-id/s (%d in flight) | registry RSS / peak MiB | registry.db MiB |\n|---|---|---|---|---|---|---|---|---|\n", lookupConcurrency)
		for _, s := range r.Scale {
			p("| %d | %d | %.2f | %.0f | %.2f | %.2f / %.2f / %.2f | %.0f | %.0f / %.0f | %.0f |\n", s.SEs, s.Imported, s.ImportSeconds, s.ImportPerSec,
				s.PublishedSeconds, s.Lookups.P50Ms, s.Lookups.P95Ms, s.Lookups.P99Ms, s.LookupsPerSec, s.RegistryRSSMiB, s.RegistryPeakMiB, s.RegistryDBMiB)
		}
		p("\n")
	}
	if len(r.Notes) > 0 {
		p("Notes:\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	return b.String()
}

// detailedProfiles picks the profiles shown in full: the two busiest
// services at maximum rate, this process (the NATS server), and the registry
// at its largest scale tier.
func detailedProfiles(r *Result) []ProfileResult {
	byName := map[string]ProfileResult{}
	var scale []ProfileResult
	for _, pr := range r.Profiles {
		if strings.HasPrefix(pr.Service, "registry with ") {
			scale = append(scale, pr)
			continue
		}
		byName[pr.Service] = pr
	}
	var out []ProfileResult
	services := 0
	if r.Throughput != nil {
		for _, u := range r.Throughput.Processes {
			pr, ok := byName[u.Name]
			if !ok {
				continue
			}
			if u.Name == selfName {
				out = append(out, pr)
			} else if services < 2 {
				out = append(out, pr)
				services++
			}
		}
	}
	if len(scale) > 0 {
		out = append(out, scale[len(scale)-1])
	}
	return out
}

// latencyTable renders per-operation latencies in report order.
func latencyTable(b *strings.Builder, lat map[string]stats.Summary) {
	fmt.Fprintf(b, "| operation | count | mean ms | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n")
	for _, op := range recordedOps {
		s := lat[op]
		fmt.Fprintf(b, "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n", op, s.Count, s.MeanMs, s.P50Ms, s.P95Ms, s.P99Ms, s.MaxMs)
	}
	b.WriteString("\n")
}

// handlerTable renders handler statistics.
func handlerTable(b *strings.Builder, hs []HandlerStat, perScript bool) {
	if perScript {
		fmt.Fprintf(b, "| consumer | messages | per send-script | mean handler ms |\n|---|---|---|---|\n")
	} else {
		fmt.Fprintf(b, "| consumer | messages | mean handler ms |\n|---|---|---|\n")
	}
	for _, h := range hs {
		if perScript {
			fmt.Fprintf(b, "| %s | %d | %.2f | %.2f |\n", h.Consumer, h.Messages, h.PerScript, h.MeanMs)
		} else {
			fmt.Fprintf(b, "| %s | %d | %.2f |\n", h.Consumer, h.Messages, h.MeanMs)
		}
	}
	b.WriteString("\n")
}

// hopTable renders hop latencies.
func hopTable(b *strings.Builder, hops []HopStat) {
	fmt.Fprintf(b, "| hop | mean ms | p50 ms | p99 ms |\n|---|---|---|---|\n")
	for _, h := range hops {
		fmt.Fprintf(b, "| %s | %.2f | %.2f | %.2f |\n", h.Hop, h.Latency.MeanMs, h.Latency.P50Ms, h.Latency.P99Ms)
	}
	b.WriteString("\n")
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func errorList(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s x%d", k, m[k]))
	}
	return strings.Join(parts, "; ")
}
