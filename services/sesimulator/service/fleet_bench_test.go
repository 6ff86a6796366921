package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/natsembed"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/adapters"
	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/fleettest"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports"
	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

// Fleet-scale benchmarks (issue 3, acceptance 7). They share one fleet file
// of SESIM_BENCH_FLEET cards (default 100,000), built once per `go test`
// run in a temporary directory that TestMain removes. Run them explicitly:
//
//	cd services/sesimulator
//	go test -run '^$' -bench 'Fleet|IdleCard|ServiceStartup|StoreDataOverTheBus' -benchtime 1x ./service/

// fleetSize is SESIM_BENCH_FLEET, default 100,000.
func fleetSize(tb testing.TB) int {
	v := os.Getenv("SESIM_BENCH_FLEET")
	if v == "" {
		return 100_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("SESIM_BENCH_FLEET=%q: want a positive number of cards", v)
	}
	return n
}

var sharedFleet struct {
	once  sync.Once
	dir   string
	stats fleettest.Stats
	err   error
}

// fleet returns the data directory of the shared fleet (the service's
// DATA_DIR: the bbolt file is sesimulator.db in it) and its size.
func fleet(b *testing.B) (dir string, n int) {
	b.Helper()
	n = fleetSize(b)
	sharedFleet.once.Do(func() {
		sharedFleet.dir, sharedFleet.err = os.MkdirTemp("", "sesim-fleet-")
		if sharedFleet.err != nil {
			return
		}
		sharedFleet.stats, sharedFleet.err = fleettest.Build(filepath.Join(sharedFleet.dir, service.Name+".db"), n,
			service.DemoStateKEK)
		if sharedFleet.err == nil {
			st := sharedFleet.stats
			b.Logf("fleet of %d cards built in %s (manufacture %.1f µs/card of CPU), bbolt file %.0f MB (%.0f B/card)",
				st.Cards, st.Total.Round(time.Millisecond), float64(st.ManufactureCPU.Microseconds())/float64(st.Cards),
				float64(st.FileBytes)/1e6, float64(st.FileBytes)/float64(st.Cards))
		}
	})
	if sharedFleet.err != nil {
		b.Fatalf("build the fleet: %v", sharedFleet.err)
	}
	return sharedFleet.dir, n
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedFleet.dir != "" {
		_ = os.RemoveAll(sharedFleet.dir)
	}
	os.Exit(code)
}

// BenchmarkFleetBuild measures making a fleet file of SESIM_BENCH_FLEET
// cards: manufacture, marshal and seal in parallel on every core, bbolt
// commits of fleettest.BatchSize cards. One op is a whole fleet.
func BenchmarkFleetBuild(b *testing.B) {
	n := fleetSize(b)
	var cpu time.Duration
	var bytes int64
	for i := 0; i < b.N; i++ {
		st, err := fleettest.Build(filepath.Join(b.TempDir(), "sesimulator.db"), n, service.DemoStateKEK)
		if err != nil {
			b.Fatal(err)
		}
		cpu += st.ManufactureCPU
		bytes = st.FileBytes
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "cards/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "manufacture-µs/card")
	b.ReportMetric(float64(bytes)/float64(n), "file-B/card")
}

// BenchmarkServiceStartup measures the se-simulator's start on the shared
// fleet: from service.Run to the HTTP listener, to /readyz answering 200
// (NATS connected, streams checked, bbolt open, consumers starting), and to
// the first card served (GET /v1/cards/{seId} of a random SE: decoded from
// bbolt on demand, nothing is loaded at start). NATS is an embedded server
// already running; the streams exist after the first op.
func BenchmarkServiceStartup(b *testing.B) {
	dir, n := fleet(b)
	ns, err := natsembed.Start(natsembed.Config{Port: -1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	var toBound, toReady, toCard time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bound := make(chan string, 1)
		cfg := service.Config{Kit: servicekit.Config{Name: service.Name, NATSURL: ns.ClientURL(), DataDir: dir,
			HTTPAddr: "127.0.0.1:0", HTTPBound: bound, Workers: 32,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- service.Run(ctx, cfg) }()
		var addr string
		select {
		case addr = <-bound:
		case err := <-done:
			b.Fatalf("service did not start: %v", err)
		case <-time.After(deadline):
			b.Fatal("no HTTP listener in time")
		}
		toBound += time.Since(start)
		waitHTTP(b, "http://"+addr+"/readyz")
		toReady += time.Since(start)
		waitHTTP(b, "http://"+addr+"/v1/cards/"+fleettest.SEID(rand.IntN(n)))
		toCard += time.Since(start)
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Fatal(err)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(toBound), "ms-to-listen")
	b.ReportMetric(ms(toReady), "ms-to-ready")
	b.ReportMetric(ms(toCard), "ms-to-first-card")
}

// waitHTTP polls url until it answers 200.
func waitHTTP(b *testing.B, url string) {
	b.Helper()
	end := time.Now().Add(deadline)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(end) {
			b.Fatalf("%s did not answer 200 in time (%v)", url, err)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// heapBytes is the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIdleCardMemory opens the shared fleet with the se-simulator's use
// cases and a bounded card cache, then touches every card once (each is
// decoded from bbolt on demand; the cache keeps the most recent ones). One
// op is loading one cold card (ns/op). Reported:
//
//   - heap-B/card: live heap the fleet costs (bbolt handle, use cases and
//     cache, measured from before the bbolt file was opened) divided by
//     the number of enrolled cards: memory per idle card;
//   - heap-MB: that heap in total;
//   - B/cached-card: the same heap divided by the cache size: what one
//     decoded card costs, so the bound is about SESIM_CACHE_CARDS times it.
func BenchmarkIdleCardMemory(b *testing.B) {
	dir, n := fleet(b)
	for _, cacheCards := range []int{64, 1024} {
		b.Run(fmt.Sprintf("cache=%d", cacheCards), func(b *testing.B) {
			before := heapBytes()
			store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(dir, service.Name+".db"), Buckets: adapters.Buckets})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			sealer, err := adapters.NewStateSealer(service.DemoStateKEK)
			if err != nil {
				b.Fatal(err)
			}
			a := app.New(adapters.NewFleetStore(store, sealer), app.Config{CacheCards: cacheCards,
				Factory: domain.Factory{IssuerMasterKey: domain.DemoIssuerMasterKey},
				Log:     slog.New(slog.NewTextHandler(io.Discard, nil))})
			ctx := context.Background()
			load := func(i int) {
				if _, err := a.Card(ctx, fleettest.SEID(i)); err != nil {
					b.Fatal(err)
				}
			}
			// Every card once, on both cores; then the timed loads.
			var wg sync.WaitGroup
			workers := runtime.GOMAXPROCS(0)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < n; i += workers {
						if _, err := a.Card(ctx, fleettest.SEID(i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				load(rand.IntN(n))
			}
			b.StopTimer()
			if c := a.CachedCards(); c > cacheCards {
				b.Fatalf("%d cards in memory, cache bounded at %d", c, cacheCards)
			}
			after := heapBytes()
			runtime.KeepAlive(a)
			heap := after - min(before, after)
			b.ReportMetric(float64(heap)/float64(n), "heap-B/card")
			b.ReportMetric(float64(heap)/1e6, "heap-MB")
			b.ReportMetric(float64(heap)/float64(cacheCards), "B/cached-card")
		})
	}
}

// BenchmarkStoreDataOverTheBus measures secured STORE DATA through the
// running service: an SP's script of 8 STORE DATA blocks (level 33) is
// published on tsm.se.<seId>.execute and its result awaited on
// tsm.se.<seId>.executed, one script at a time on one card, as a
// conversation runs them. One op is one script; apdus/s counts blocks.
func BenchmarkStoreDataOverTheBus(b *testing.B) {
	const blocks = 8
	h := newHarness(b, func(c *service.Config) { c.CacheCards = 64 })
	h.enrol(cardtest.Record(seUICC, "uicc"))
	h.waitCard(seUICC)

	results := make(chan *nats.Msg, 16)
	sub, err := h.nc.ChanSubscribe(topology.SEExecuted(seUICC), results)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	run := func(scriptID string, commands ...string) events.SEExecuted {
		h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-bench", scriptID, commands...), "")
		for {
			select {
			case m := <-results:
				ev, err := bus.Decode(m.Header, m.Data)
				if err != nil {
					b.Fatal(err)
				}
				var r events.SEExecuted
				if err := ev.DataAs(&r); err != nil {
					b.Fatal(err)
				}
				if r.ScriptID == scriptID {
					return r
				}
			case <-time.After(deadline):
				b.Fatalf("no result for script %s", scriptID)
			}
		}
	}
	host := cardtest.Host(b, seUICC)
	iu, err := host.InitializeUpdate(0x30, nil)
	if err != nil {
		b.Fatal(err)
	}
	r := run("iu", cardtest.SelectSD(), cardtest.Hex(iu))
	if err := host.ProcessInitializeUpdateResponse(cardtest.Unhex(b, r.Responses[1])); err != nil {
		b.Fatal(err)
	}
	ea, err := host.ExternalAuthenticate(0x33)
	if err != nil {
		b.Fatal(err)
	}
	if r := run("ea", cardtest.Hex(ea)); cardtest.SW(b, r.Responses[0]) != 0x9000 {
		b.Fatalf("EXTERNAL AUTHENTICATE %v", r.Responses)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cmds := make([]string, blocks)
		for j := range cmds {
			w, err := host.Wrap(cardtest.StoreDataBlock(j, j == blocks-1))
			if err != nil {
				b.Fatal(err)
			}
			cmds[j] = cardtest.Hex(w)
		}
		id := fmt.Sprintf("store-%d", i)
		b.StartTimer()
		r := run(id, cmds...)
		if len(r.Responses) != blocks || cardtest.SW(b, r.Responses[blocks-1]) != 0x9000 {
			b.Fatalf("script %s answered %v", id, r.Responses)
		}
	}
	b.ReportMetric(float64(b.N*blocks)/b.Elapsed().Seconds(), "apdus/s")
}

// TestServiceServesABuiltFleet checks that the benchmarks' fleet is what
// the service reads: every card counted, any card decoded with the
// service's default state key.
func TestServiceServesABuiltFleet(t *testing.T) {
	dir := t.TempDir()
	const n = 40
	st, err := fleettest.Build(filepath.Join(dir, service.Name+".db"), n, service.DemoStateKEK)
	if err != nil || st.Cards != n {
		t.Fatalf("built %d cards: %v", st.Cards, err)
	}
	h := &harness{t: t, natsDir: t.TempDir(), dataDir: dir, cfg: service.Config{CacheCards: 8}}
	h.startNATS()
	h.startService()
	t.Cleanup(h.shutdown)
	var count ports.CardCountJSON
	if h.getJSON("/v1/cards?count=true", &count); count.Count != n {
		t.Fatalf("count %d, want %d", count.Count, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		var c ports.CardJSON
		if code := h.getJSON("/v1/cards/"+fleettest.SEID(i), &c); code != http.StatusOK ||
			c.Configuration != fleettest.Configurations[i%len(fleettest.Configurations)] {
			t.Fatalf("card %d: HTTP %d, configuration %q", i, code, c.Configuration)
		}
	}
}
