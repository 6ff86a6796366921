package app_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"

	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
)

// openSession enrols seID and opens an SCP03 session (C-DEC, C-MAC, R-MAC,
// R-ENC) with its pre-issued SD, through scripts as an SP would.
func openSession(b *testing.B, f *fixture, seID string) *scp03.Host {
	b.Helper()
	f.enrol(b, seID, "uicc")
	host := cardtest.Host(b, seID)
	iu, err := host.InitializeUpdate(card.KVNIssuer, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.execute(b, bus.NewID(), seID, "bench", cardtest.SelectSD(), cardtest.Hex(iu)); err != nil {
		b.Fatal(err)
	}
	r := f.fleet.last(b)
	if err := host.ProcessInitializeUpdateResponse(cardtest.Unhex(b, r.Responses[1])); err != nil {
		b.Fatal(err)
	}
	ea, err := host.ExternalAuthenticate(0x33)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.execute(b, bus.NewID(), seID, "bench", cardtest.Hex(ea)); err != nil {
		b.Fatal(err)
	}
	return host
}

// BenchmarkExecuteScript measures the execute path of one script of 5
// secured APDUs (secured GET STATUS at level 33): Transmit on the card,
// marshal and seal of the card state, and the bbolt commit (fsync) of the
// state, counters, inbox record and result event. The host-side wrapping is
// outside the timer.
//
//   - cached: the decoded card stays in the LRU between scripts.
//   - decoded: two cards alternate through a one-card cache, so every
//     script first decodes its card from bbolt (a cold SE).
func BenchmarkExecuteScript(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
		ses   []string
	}{{"cached", 16, []string{seA}}, {"decoded", 1, []string{seA, seB}}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, bc.cache)
			hosts := make([]*scp03.Host, len(bc.ses))
			for i, se := range bc.ses {
				hosts[i] = openSession(b, f, se)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(bc.ses)
				b.StopTimer()
				cmds := make([]string, 5)
				for j := range cmds {
					w, err := hosts[k].Wrap(cardtest.GetStatusPlain)
					if err != nil {
						b.Fatal(err)
					}
					cmds[j] = cardtest.Hex(w)
				}
				id := bus.NewID()
				b.StartTimer()
				if err := f.execute(b, id, bc.ses[k], "bench", cmds...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			r := f.fleet.last(b)
			if len(r.Responses) != 5 || cardtest.SW(b, r.Responses[4]) != 0x9000 {
				b.Fatalf("last script answered %v", r.Responses)
			}
			b.ReportMetric(float64(b.N*5)/b.Elapsed().Seconds(), "apdus/s")
		})
	}
}

// BenchmarkScriptCPU is the CPU part of BenchmarkExecuteScript/cached
// without the commit: Transmit of 5 secured APDUs, then marshal and seal of
// the card state (what runs on a consumer worker, outside the committer).
func BenchmarkScriptCPU(b *testing.B) {
	f := newFixture(b, 16)
	host := openSession(b, f, seA)
	c, err := f.fleet.DecodeCard(seA, mustStored(b, f))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cmds := make([][]byte, 5)
		for j := range cmds {
			if cmds[j], err = host.Wrap(cardtest.GetStatusPlain); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for _, cmd := range cmds {
			if r := c.Transmit(cmd); r[len(r)-2] != 0x90 {
				b.Fatalf("SW %X", r[len(r)-2:])
			}
		}
		if _, err := f.fleet.EncodeCard(seA, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*5)/b.Elapsed().Seconds(), "apdus/s")
}

func mustStored(b *testing.B, f *fixture) app.StoredCard {
	var s app.StoredCard
	err := f.fleet.Read(func(r app.FleetReader) error {
		var err error
		s, err = r.Card(seA)
		return err
	})
	if err != nil || s == nil {
		b.Fatalf("stored card: %v", err)
	}
	return s
}

// BenchmarkExecuteScriptParallel runs the same scripts for 32 SEs at once,
// as the consumer workers do: concurrent scripts share bbolt commits (group
// commit), so throughput is far above 1/fsync. Host-side wrapping is inside
// the timer here (a few microseconds per script).
func BenchmarkExecuteScriptParallel(b *testing.B) {
	const ses = 32
	f := newFixture(b, 1024)
	type session struct {
		seID string
		host *scp03.Host
	}
	sessions := make(chan session, ses)
	for i := 0; i < ses; i++ {
		se := fmt.Sprintf("01020304050607%02X", 0x10+i)
		sessions <- session{se, openSession(b, f, se)}
	}
	b.SetParallelism((ses + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := <-sessions
		cmds := make([]string, 5)
		for pb.Next() {
			for j := range cmds {
				w, err := s.host.Wrap(cardtest.GetStatusPlain)
				if err != nil {
					b.Error(err)
					return
				}
				cmds[j] = cardtest.Hex(w)
			}
			if err := f.execute(b, bus.NewID(), s.seID, "bench", cmds...); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*5)/b.Elapsed().Seconds(), "apdus/s")
}
