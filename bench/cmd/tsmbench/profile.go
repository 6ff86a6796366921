package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// fetchProfile takes a CPU profile of seconds from a service's PPROF_ADDR
// and writes it to file.
func fetchProfile(ctx context.Context, addr string, seconds int, file string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w (the service binaries must be the profiled builds of bench/cmd/profiled, which serve PPROF_ADDR)", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, truncate(string(b), 200))
	}
	return os.WriteFile(file, b, 0o644)
}

// profileSelf takes a CPU profile of this process (the embedded JetStream
// server and the load generator) for d.
func profileSelf(ctx context.Context, d time.Duration, file string) error {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return err
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	pprof.StopCPUProfile()
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

// area is a group of functions that time can be spent on; a sample counts
// for the first area (in this order) that any frame of its stack belongs to,
// so that, e.g., the garbage produced by JSON schema validation and the
// syscalls of a bbolt fsync count for validation and bbolt.
type area struct {
	name     string
	prefixes []string
}

var areas = []area{
	{"bbolt (write transactions, fsync)", []string{"go.etcd.io/bbolt."}},
	{"JSON Schema validation", []string{"github.com/santhosh-tekuri/jsonschema"}},
	{"Prometheus metrics", []string{"github.com/prometheus/"}},
	{"CloudEvents SDK (event model, encoding)", []string{"github.com/cloudevents/"}},
	{"NATS server (embedded JetStream)", []string{"github.com/nats-io/nats-server/"}},
	{"nats.go client (publish, consume, acks)", []string{"github.com/nats-io/nats.go"}},
	{"encoding/json", []string{"encoding/json."}},
	{"crypto (AES, CMAC, hashes)", []string{"crypto/", "github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"}},
	{"logging (log/slog)", []string{"log/slog."}},
	{"net/http", []string{"net/http."}},
	{"garbage collector", []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcStart",
		"runtime.markroot", "runtime.gcDrain"}},
	{"scheduler, timers, netpoll (runtime)", []string{"runtime.schedule", "runtime.findRunnable", "runtime.mcall",
		"runtime.park_m", "runtime.netpoll", "runtime.sysmon", "runtime.goexit0", "runtime.timerproc", "runtime.runtimer"}},
	{"network syscalls (read/write on sockets)", []string{"internal/poll.", "syscall.", "net."}},
	{"tsmhub code", []string{"github.com/tsmhub/"}},
}

// summarizeProfile reads a profile and returns its top functions (flat and
// cumulative) and its areas, as shares of all sampled CPU time.
func summarizeProfile(file string, top int) (*ProfileResult, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	vi := len(p.SampleType) - 1 // cpu nanoseconds
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	flat := map[string]int64{}
	cum := map[string]int64{}
	byArea := map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		seen := map[string]bool{}
		var names []string
		for li, loc := range s.Location {
			for lj := range loc.Line {
				fn := loc.Line[lj].Function
				if fn == nil {
					continue
				}
				name := fn.Name
				names = append(names, name)
				if li == 0 && lj == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
		byArea[classify(names)] += v
	}
	if total == 0 {
		return nil, fmt.Errorf("%s: no samples", file)
	}
	res := &ProfileResult{File: filepath.Base(file), SampledCPUSeconds: round(float64(total)/1e9, 2)}
	if p.DurationNanos > 0 {
		res.Seconds = round(float64(p.DurationNanos)/1e9, 1)
	}
	res.TopFlat = topEntries(flat, total, top, nil)
	// Cumulative: skip the runtime's and the goroutine roots that every
	// stack shares; they say nothing about where the time goes.
	res.TopCum = topEntries(cum, total, top, func(name string) bool {
		return !strings.HasPrefix(name, "runtime.") && !strings.HasPrefix(name, "internal/runtime")
	})
	res.Areas = topEntries(byArea, total, len(areas)+1, nil)
	return res, nil
}

// classify returns the area of a stack (leaf first).
func classify(stack []string) string {
	for _, a := range areas {
		for _, name := range stack {
			for _, pre := range a.prefixes {
				if strings.HasPrefix(name, pre) {
					return a.name
				}
			}
		}
	}
	return "other (runtime: malloc, maps, strings, ...)"
}

func topEntries(m map[string]int64, total int64, n int, keep func(string) bool) []ProfileEntry {
	var out []ProfileEntry
	for name, v := range m {
		if keep != nil && !keep(name) {
			continue
		}
		out = append(out, ProfileEntry{Name: name, Pct: round(float64(v)/float64(total)*100, 1)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pct != out[j].Pct {
			return out[i].Pct > out[j].Pct
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
