package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsmhub/tsmhub/bench/internal/procstat"
	"github.com/tsmhub/tsmhub/bench/internal/stats"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/spclient"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// scaleSEID and scaleMSI number the registry-scale SEs.
func scaleSEID(i int) string { return fmt.Sprintf("%016X", uint64(0x0300000000000000)+uint64(i)) }
func scaleMSI(i int) string  { return fmt.Sprintf("+4917%09d", i) }

// lookupConcurrency is the number of get-se-id calls in flight for the
// look-up throughput figure.
const lookupConcurrency = 32

// measureScale runs the registry alone (the only service get-se-id and the
// import touch; without the se-simulator no card is manufactured, which
// would otherwise run for minutes at 1,000,000 SEs and disturb the
// look-ups) and grows it through the tiers, importing the difference each
// time, then timing get-se-id.
//
// During each tier's concurrent look-ups the registry is CPU-profiled into
// profDir (when its binary serves PPROF_ADDR).
func measureScale(ctx context.Context, dir, binDir string, env map[string]string, tiers []int, lookups int, lookupSeconds time.Duration,
	profDir string, logf func(string, ...any)) ([]ScaleTier, []ProfileResult, error) {
	s, err := startSystem(ctx, dir, binDir, env, []string{"registry"})
	if err != nil {
		return nil, nil, err
	}
	defer s.stop()
	reg := s.stack.HTTPAddr("registry")
	if err := devstack.SeedDemo(ctx, reg); err != nil {
		return nil, nil, err
	}
	c, err := spclient.New(s.js, "bank1", spclient.WithTimeout(30*time.Second))
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	regStream, err := s.js.Stream(ctx, topology.StreamRegistry.Name)
	if err != nil {
		return nil, nil, err
	}
	var out []ScaleTier
	var profs []ProfileResult
	enrolled := 0
	for _, tier := range tiers {
		if tier <= enrolled {
			continue
		}
		logf("registry scale: importing SEs %d..%d", enrolled, tier-1)
		var body bytes.Buffer
		body.Grow((tier - enrolled) * 330)
		for i := enrolled; i < tier; i++ {
			importLine(&body, scaleSEID(i), scaleMSI(i), shapes[i%len(shapes)], nil)
		}
		info, err := regStream.Info(ctx)
		if err != nil {
			return nil, nil, err
		}
		lastSeq := info.State.LastSeq
		before, err := procstat.Read(s.pids["registry"])
		if err != nil {
			return nil, nil, err
		}
		start := time.Now()
		rep, err := s.importSEs(ctx, body.Bytes())
		if err != nil {
			return nil, nil, err
		}
		importDur := time.Since(start)
		if rep.Imported != tier-enrolled {
			return nil, nil, fmt.Errorf("import of %d SEs reported %+v", tier-enrolled, rep)
		}
		body = bytes.Buffer{}
		// Published: TSM_REG gained one record per imported SE.
		want := lastSeq + uint64(rep.Imported)
		if err := poll(ctx, 30*time.Minute, "SE records published", func() (bool, error) {
			info, err := regStream.Info(ctx)
			if err != nil {
				return false, err
			}
			return info.State.LastSeq >= want, nil
		}); err != nil {
			return nil, nil, err
		}
		published := time.Since(start)
		after, err := procstat.Read(s.pids["registry"])
		if err != nil {
			return nil, nil, err
		}
		enrolled = tier
		t := ScaleTier{SEs: tier, Imported: rep.Imported, ImportSeconds: round(importDur.Seconds(), 2),
			ImportPerSec: round(float64(rep.Imported)/importDur.Seconds(), 0), PublishedSeconds: round(published.Seconds(), 2),
			RegistryCPUSecs: round((after.CPU - before.CPU).Seconds(), 2), LookupConcurrency: lookupConcurrency}
		logf("registry scale: %d SEs imported in %.1fs (%.0f/s), published after %.1fs", rep.Imported,
			importDur.Seconds(), t.ImportPerSec, published.Seconds())
		// Sequential look-ups of random enrolled MSIs.
		rng := rand.New(rand.NewPCG(uint64(tier), 6))
		var lat []time.Duration
		for i := 0; i < lookups; i++ {
			n := rng.IntN(tier)
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			st := time.Now()
			r, err := c.GetSEID(cctx, contract.GetSEIDRequest{MSI: scaleMSI(n)})
			cancel()
			if err != nil {
				return nil, nil, fmt.Errorf("get-se-id at %d SEs: %w", tier, err)
			}
			if r.SEID != scaleSEID(n) {
				return nil, nil, fmt.Errorf("get-se-id at %d SEs answered %s for SE %s", tier, r.SEID, scaleSEID(n))
			}
			lat = append(lat, time.Since(st))
		}
		t.Lookups = stats.Summarize(lat)
		// Concurrent look-ups for throughput.
		var done atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		profFile := filepath.Join(profDir, fmt.Sprintf("registry-%d-ses.cpu.pprof", tier))
		profErr := make(chan error, 1)
		go func() {
			if err := os.MkdirAll(profDir, 0o755); err != nil {
				profErr <- err
				return
			}
			profErr <- fetchProfile(ctx, s.pprofAddrs["registry"], max(int(lookupSeconds.Seconds()), 1), profFile)
		}()
		end := time.Now().Add(lookupSeconds)
		lstart := time.Now()
		for w := 0; w < lookupConcurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(tier), uint64(w)))
				for time.Now().Before(end) {
					n := rng.IntN(tier)
					cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err := c.GetSEID(cctx, contract.GetSEIDRequest{MSI: scaleMSI(n)})
					cancel()
					if err != nil {
						firstErr.Store(err)
						return
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		if e, ok := firstErr.Load().(error); ok {
			return nil, nil, fmt.Errorf("concurrent get-se-id at %d SEs: %w", tier, e)
		}
		t.LookupsPerSec = round(float64(done.Load())/time.Since(lstart).Seconds(), 0)
		if err := <-profErr; err != nil {
			logf("registry scale: no profile: %v", err)
		} else if pr, err := summarizeProfile(profFile, 15); err == nil {
			pr.Service = fmt.Sprintf("registry with %d SEs, get-se-id with %d in flight", tier, lookupConcurrency)
			pr.File = filepath.Join(filepath.Base(profDir), pr.File)
			profs = append(profs, *pr)
		}
		if p, err := procstat.Read(s.pids["registry"]); err == nil {
			t.RegistryRSSMiB = round(float64(p.RSS)/(1<<20), 1)
			t.RegistryPeakMiB = round(float64(p.PeakRSS)/(1<<20), 1)
		}
		if fi, err := os.Stat(filepath.Join(dir, "registry", "registry.db")); err == nil {
			t.RegistryDBMiB = round(float64(fi.Size())/(1<<20), 1)
		}
		logf("registry scale: %d SEs: get-se-id p50 %.2f ms p99 %.2f ms, %.0f/s with %d in flight",
			tier, t.Lookups.P50Ms, t.Lookups.P99Ms, t.LookupsPerSec, lookupConcurrency)
		out = append(out, t)
	}
	return out, profs, nil
}
