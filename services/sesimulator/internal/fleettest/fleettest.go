// Package fleettest builds large card fleets for the se-simulator's
// benchmarks: a bbolt file with n manufactured cards, written as the
// enrolment use case writes them (sealed state, zero counters, an inbox
// record of the registry event), but manufactured in parallel and committed
// in batches so that 100,000 cards take seconds, not a bus round trip each.
package fleettest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/sesimulator/adapters"
	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
)

// Configurations are assigned round-robin, so a fleet has a quarter of each.
var Configurations = []string{"embedded", "uicc", "embedded-3p", "uicc-3p"}

// SEID returns the SE id of the i-th card of a fleet.
func SEID(i int) string { return fmt.Sprintf("47%014X", i) }

// Stats says what building a fleet cost.
type Stats struct {
	// Cards is the number of cards written.
	Cards int
	// Total is the wall time of manufacturing, marshalling and sealing every
	// card (parallel, all cores) and committing them (batches of BatchSize),
	// which overlap.
	Total time.Duration
	// ManufactureCPU is the summed time the workers spent in
	// card.Manufacture alone, for the per-card cost.
	ManufactureCPU time.Duration
	// FileBytes is the size of the bbolt file.
	FileBytes int64
}

// BatchSize is the number of cards per bbolt transaction.
const BatchSize = 1000

// Build writes n cards (SE ids SEID(0..n-1), one pre-issued SP SD each) into
// the se-simulator's bbolt file at path, sealed under kek (the service's
// SESIM_STATE_KEK). The file must not exist.
func Build(path string, n int, kek []byte) (Stats, error) {
	if _, err := os.Stat(path); err == nil {
		return Stats{}, fmt.Errorf("%s exists", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return Stats{}, err
	}
	store, err := bus.OpenStore(bus.StoreConfig{Path: path, Buckets: adapters.Buckets})
	if err != nil {
		return Stats{}, err
	}
	defer store.Close()
	sealer, err := adapters.NewStateSealer(kek)
	if err != nil {
		return Stats{}, err
	}
	fleet := adapters.NewFleetStore(store, sealer)
	factory := domain.Factory{IssuerMasterKey: domain.DemoIssuerMasterKey, IIN: domain.DefaultIIN,
		SPMasterKeys: domain.DemoSPMasterKeys()}

	type made struct {
		seID   string
		stored app.StoredCard
	}
	start := time.Now()
	jobs := make(chan int, 4*BatchSize)
	out := make(chan made, 4*BatchSize)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		cpu     time.Duration
		failure error
	)
	fail := func(err error) {
		mu.Lock()
		if failure == nil {
			failure = err
		}
		mu.Unlock()
	}
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var spent time.Duration
			for i := range jobs {
				seID := SEID(i)
				spec, err := factory.Spec(cardtest.Record(seID, Configurations[i%len(Configurations)]))
				if err != nil {
					fail(err)
					continue
				}
				t0 := time.Now()
				c, err := card.Manufacture(spec)
				spent += time.Since(t0)
				if err != nil {
					fail(err)
					continue
				}
				s, err := fleet.EncodeCard(seID, c)
				if err != nil {
					fail(err)
					continue
				}
				out <- made{seID, s}
			}
			mu.Lock()
			cpu += spent
			mu.Unlock()
		}()
	}
	go func() {
		for i := 0; i < n; i++ {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(out)
	}()
	written := 0
	batch := make([]made, 0, BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := fleet.Write(func(w app.FleetWriter) error {
			for _, m := range batch {
				if err := w.PutCard(m.seID, m.stored); err != nil {
					return err
				}
				if err := w.PutCounters(m.seID, domain.Counters{}); err != nil {
					return err
				}
				if _, err := w.MarkProcessed(app.InboxEnrol, "enrol-"+m.seID); err != nil {
					return err
				}
			}
			return nil
		})
		written += len(batch)
		batch = batch[:0]
		return err
	}
	for m := range out {
		batch = append(batch, m)
		if len(batch) == BatchSize {
			if err := flush(); err != nil {
				fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		fail(err)
	}
	if failure != nil {
		return Stats{}, failure
	}
	st := Stats{Cards: written, Total: time.Since(start), ManufactureCPU: cpu}
	if fi, err := os.Stat(path); err == nil {
		st.FileBytes = fi.Size()
	}
	return st, nil
}
