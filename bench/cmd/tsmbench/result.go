package main

import (
	"time"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
)

// Result is everything one run measured; it is written as JSON to
// <out>/<timestamp>.json and rendered as the tables of BENCHMARKS.md.
type Result struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Command is the command line that produced the run.
	Command []string `json:"command"`
	// Source is the git commit of the working tree the binaries were built
	// from, and how many files differed from it.
	Source  string  `json:"source"`
	Machine Machine `json:"machine"`
	// Flags holds every flag's value (defaults included), to reproduce the
	// run.
	Flags   map[string]string `json:"flags"`
	Options Options           `json:"-"`
	// Workload describes one measured conversation.
	Workload   Workload        `json:"workload"`
	Steps      *StepsResult    `json:"steps,omitempty"`
	Baseline   *BaselineResult `json:"baseline,omitempty"`
	Sweep      []SweepPoint    `json:"sweep,omitempty"`
	Throughput *LoadResult     `json:"throughput,omitempty"`
	Ratios     *Ratios         `json:"ratios,omitempty"`
	Curve      []CurvePoint    `json:"curve,omitempty"`
	Profiles   []ProfileResult `json:"profiles,omitempty"`
	// StackAreas is the CPU per send-script of the whole stack by area,
	// when every process was profiled (-profile-all).
	StackAreas []AreaCost      `json:"stackAreas,omitempty"`
	Scale      []ScaleTier     `json:"scale,omitempty"`
	Targets    []TargetCheck   `json:"targets"`
	LoadAvg    []LoadAvgSample `json:"loadAverage"`
	Notes      []string        `json:"notes"`
}

// SweepPoint is one short closed-loop run of the concurrency sweep that
// finds the number of drivers giving the maximum rate.
type SweepPoint struct {
	Clients       int              `json:"clients"`
	ScriptsPerSec float64          `json:"scriptsPerSec"`
	ScriptP50Ms   float64          `json:"sendScriptP50Ms"`
	ScriptP99Ms   float64          `json:"sendScriptP99Ms"`
	Errors        map[string]int64 `json:"errors"`
}

// Machine describes where the run happened.
type Machine struct {
	Hostname  string  `json:"hostname"`
	NProc     int     `json:"nproc"`
	CPUModel  string  `json:"cpuModel"`
	MemoryGiB float64 `json:"memoryGiB"`
	Kernel    string  `json:"kernel"`
	GoVersion string  `json:"goVersion"`
	// Disk is the file system of the data directory (JetStream store and
	// bbolt files): device, type, size.
	Disk string `json:"disk"`
	// FsyncP50Ms / FsyncP99Ms: write 4 KiB + fdatasync in the data
	// directory, the floor of every durable commit.
	FsyncP50Ms float64 `json:"fsyncP50Ms"`
	FsyncP99Ms float64 `json:"fsyncP99Ms"`
	// BoltCommitUs / BoltCommitCPUUs: one durable bbolt commit (put 800
	// bytes, delete one key), wall and CPU microseconds, in this process.
	BoltCommitUs    float64 `json:"boltCommitUs"`
	BoltCommitCPUUs float64 `json:"boltCommitCpuUs"`
	// LoadBefore is the load average when the run started measuring.
	LoadBefore [3]float64 `json:"loadBefore"`
}

// LoadAvgSample is one reading of /proc/loadavg during the run.
type LoadAvgSample struct {
	At    time.Time  `json:"at"`
	Phase string     `json:"phase"`
	Load  [3]float64 `json:"load"`
}

// Workload says what one measured conversation does.
type Workload struct {
	SEs                 int      `json:"ses"`
	SPs                 []string `json:"sps"`
	MNOLatencyMs        int      `json:"mnoLatencyMs"`
	Conversation        []string `json:"conversation"`
	APDUsPerSecured     int      `json:"apdusPerSecuredScript"`
	APDUsPerSetup       int      `json:"apdusPerSetupScript"`
	ScriptsPerConv      int      `json:"scriptsPerConversation"`
	APDUsPerConv        int      `json:"apdusPerConversation"`
	SecurityLevel       string   `json:"securityLevel"`
	ServiceLogLevel     string   `json:"serviceLogLevel"`
	ServiceEnv          string   `json:"serviceEnv"`
	ServiceBinaries     string   `json:"serviceBinaries"`
	ResponseSubscribers string   `json:"responseSubscribers"`
}

// StepsResult is the number of durable bus messages per operation, counted
// from stream sequence deltas on an otherwise idle system.
type StepsResult struct {
	// PerScript is the messages one send-script writes to all streams.
	PerScript float64 `json:"perScript"`
	// PerBegin, PerEnd and PerConversation likewise.
	PerBegin        float64 `json:"perBegin"`
	PerEnd          float64 `json:"perEnd"`
	PerConversation float64 `json:"perConversation"`
	// ScriptByStream splits PerScript by stream.
	ScriptByStream map[string]float64 `json:"scriptByStream"`
	// ScriptSubjects are the subjects of one secured script's messages in
	// stream order (SE id replaced by <se>).
	ScriptSubjects []string `json:"scriptSubjects"`
	// ScriptMessageBytes: sizes (headers + data) of one secured script's
	// messages.
	ScriptMessageBytes ByteStats `json:"scriptMessageBytes"`
	// Samples is how many scripts were counted.
	Samples int `json:"samples"`
	// IdleHops splits the secured scripts (one at a time, idle system) by
	// the stream timestamps of their messages.
	IdleHops []HopStat `json:"idleHops"`
	// IdleHandlers: mean handler time per consumer during the step count.
	IdleHandlers []HandlerStat `json:"idleHandlers"`
}

// ByteStats summarises message sizes.
type ByteStats struct {
	Mean       int `json:"mean"`
	Min        int `json:"min"`
	Max        int `json:"max"`
	HeaderMean int `json:"headerMean"`
}

// BaselineResult is raw JetStream on the same server.
type BaselineResult struct {
	// MessageBytes is the size of each published message (headers + data),
	// a copy of a typical step event of a secured script.
	MessageBytes int `json:"messageBytes"`
	HeaderBytes  int `json:"headerBytes"`
	// Sync: one publish at a time, waiting for the PubAck.
	SyncCount int           `json:"syncCount"`
	Sync      stats.Summary `json:"sync"`
	// Async: one connection, up to MaxPending unacknowledged publishes.
	AsyncCount      int     `json:"asyncCount"`
	AsyncSeconds    float64 `json:"asyncSeconds"`
	AsyncPerSec     float64 `json:"asyncPerSec"`
	AsyncMaxPending int     `json:"asyncMaxPending"`
	// AsyncParallel: as Async from Publishers connections at once.
	Publishers          int     `json:"publishers"`
	AsyncParallelPerSec float64 `json:"asyncParallelPerSec"`
}

// LoadResult is one closed-loop run.
type LoadResult struct {
	Clients         int     `json:"clients"`
	DurationSeconds float64 `json:"durationSeconds"`
	Conversations   int64   `json:"conversations"`
	Scripts         int64   `json:"scripts"`
	SecuredScripts  int64   `json:"securedScripts"`
	APDUs           int64   `json:"apdus"`
	ConvPerSec      float64 `json:"conversationsPerSec"`
	// ScriptsPerSec counts every send-script (setup and secured);
	// SecuredPerSec only the 5-APDU secured ones.
	ScriptsPerSec float64 `json:"scriptsPerSec"`
	SecuredPerSec float64 `json:"securedScriptsPerSec"`
	APDUsPerSec   float64 `json:"apdusPerSec"`
	// ScriptsPerSecond is the send-scripts completed in each second of the
	// window.
	ScriptsPerSecond []int64 `json:"scriptsPerSecond"`
	// Latency per operation (begin, send-script setup, send-script
	// secured, end) and per whole conversation.
	Latency map[string]stats.Summary `json:"latency"`
	Errors  map[string]int64         `json:"errors"`
	// BusMsgsPerSec: messages written to all streams per second during the
	// window; BusMsgsPerConversation the same per completed conversation.
	BusMsgsPerSec          float64 `json:"busMsgsPerSec"`
	BusMsgsPerConversation float64 `json:"busMsgsPerConversation"`
	// Processes: CPU and memory of every service process and of this one
	// (embedded NATS server + load generator) during the window.
	Processes []ProcUsage `json:"processes"`
	// MachineBusyPct: share of all CPUs busy during the window; IOWaitPct
	// idle with I/O outstanding.
	MachineBusyPct   float64 `json:"machineBusyPct"`
	MachineIOWaitPct float64 `json:"machineIOWaitPct"`
	// OthersPct is the share of all CPUs other processes used meanwhile
	// (the machine is shared with other jobs).
	OthersPct float64 `json:"othersPct"`
	// Hops splits a sample of the measured secured scripts (HopSamples of
	// them) by the stream timestamps of their step messages.
	Hops       []HopStat `json:"hops"`
	HopSamples int       `json:"hopSamples"`
	// Handlers: mean handler time per consumer in the window (from the
	// services' own metrics).
	Handlers []HandlerStat `json:"handlers"`
}

// ProcUsage is one process during a window.
type ProcUsage struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// SystemPct is the kernel's share of CPUSeconds (syscalls).
	SystemPct float64 `json:"systemPct"`
	// CPUPct is CPU seconds per wall second x 100 (200 = both cores).
	CPUPct float64 `json:"cpuPct"`
	// CPUMsPerScript is the process's CPU per send-script (all kinds).
	CPUMsPerScript float64 `json:"cpuMsPerScript"`
	// WritesPerScript: write-type syscalls (bbolt writes a page per
	// pwrite; socket writes) per send-script; DiskKiBPerScript: bytes
	// written to storage per send-script.
	WritesPerScript  float64 `json:"writeSyscallsPerScript"`
	DiskKiBPerScript float64 `json:"diskKiBPerScript"`
	RSSMiB           float64 `json:"rssMiB"`
	PeakRSSMiB       float64 `json:"peakRssMiB"`
}

// Ratios are the two figures issue 6 asks for.
type Ratios struct {
	// BusEfficiency = (scripts/s x steps per script) / raw async publishes/s.
	BusEfficiency float64 `json:"busEfficiency"`
	// BusEfficiencyAllMsgs uses every message written during the run (begin
	// and end included) instead of scripts x steps.
	BusEfficiencyAllMsgs float64 `json:"busEfficiencyAllMessages"`
	// LatencyOverhead = send-script p50 / (steps per script x raw sync p50),
	// for the secured script (the measured one).
	LatencyOverhead float64 `json:"latencyOverhead"`
	// LatencyOverheadAllScripts uses the p50 of every send-script.
	LatencyOverheadAllScripts float64 `json:"latencyOverheadAllScripts"`
	// LatencyOverheadLight is LatencyOverhead at the lightest point of the
	// latency-at-load curve (LightPercent of the maximum rate), where
	// queueing does not dominate: what the system adds per step.
	LatencyOverheadLight float64 `json:"latencyOverheadLight,omitempty"`
	LightPercent         int     `json:"lightPercent,omitempty"`
}

// CurvePoint is one open-loop run at a fixed rate.
type CurvePoint struct {
	// Percent of the maximum send-script rate of the closed-loop run.
	Percent int `json:"percent"`
	// TargetScriptsPerSec counts every send-script; conversations start at
	// half that rate (two scripts each).
	TargetScriptsPerSec   float64                  `json:"targetScriptsPerSec"`
	AchievedScriptsPerSec float64                  `json:"achievedScriptsPerSec"`
	DurationSeconds       float64                  `json:"durationSeconds"`
	Latency               map[string]stats.Summary `json:"latency"`
	// StartLag is how late conversations began against their schedule (an
	// open loop must not slip: a large lag means the driver fell behind).
	StartLag stats.Summary    `json:"startLag"`
	Errors   map[string]int64 `json:"errors"`
	// MachineBusyPct during the window; OthersPct of it by other jobs.
	MachineBusyPct float64 `json:"machineBusyPct"`
	OthersPct      float64 `json:"othersPct"`
}

// ProfileResult is one CPU profile taken at maximum rate.
type ProfileResult struct {
	Service string  `json:"service"`
	File    string  `json:"file"`
	Seconds float64 `json:"seconds"`
	// SampledCPUSeconds is the CPU time the profile saw.
	SampledCPUSeconds float64 `json:"sampledCpuSeconds"`
	// Top lists the functions with the most cumulative time in the
	// service's own, tsmhub and library code (flat and cumulative shares).
	TopFlat []ProfileEntry `json:"topFlat"`
	TopCum  []ProfileEntry `json:"topCum"`
	// Areas groups the samples by what the time was spent on.
	Areas []ProfileEntry `json:"areas"`
}

// AreaCost is the CPU one send-script costs in one area, over all processes.
type AreaCost struct {
	Area        string  `json:"area"`
	MsPerScript float64 `json:"msPerScript"`
}

// ProfileEntry is one function or area of a profile.
type ProfileEntry struct {
	Name string  `json:"name"`
	Pct  float64 `json:"pct"`
}

// ScaleTier is the registry with a given number of SEs enrolled.
type ScaleTier struct {
	SEs int `json:"ses"`
	// Imported is how many SEs this tier's import added, in ImportSeconds
	// (HTTP request to answer: decoded, validated, committed).
	Imported      int     `json:"imported"`
	ImportSeconds float64 `json:"importSeconds"`
	ImportPerSec  float64 `json:"importPerSec"`
	// PublishedSeconds is from the start of the import until the registry's
	// outbox had published every SE record to TSM_REG.
	PublishedSeconds float64 `json:"publishedSeconds"`
	// Lookups: sequential get-se-id calls (SP -> bus -> registry -> bus ->
	// SP) for random enrolled MSIs.
	Lookups stats.Summary `json:"lookups"`
	// LookupsPerSec: get-se-id with LookupConcurrency calls in flight.
	LookupConcurrency int     `json:"lookupConcurrency"`
	LookupsPerSec     float64 `json:"lookupsPerSec"`
	RegistryRSSMiB    float64 `json:"registryRssMiB"`
	RegistryPeakMiB   float64 `json:"registryPeakRssMiB"`
	RegistryDBMiB     float64 `json:"registryDbMiB"`
	RegistryCPUSecs   float64 `json:"registryImportCpuSeconds"`
}

// TargetCheck compares one measurement with issue 6's target.
type TargetCheck struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	// Met is nil when the run did not measure it.
	Met *bool `json:"met"`
}
