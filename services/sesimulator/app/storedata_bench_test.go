package app_test

import (
	"fmt"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"

	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
)

// wrapStoreData wraps a sequence of n STORE DATA blocks (0..n-1, the last
// one flagged) at the session's level (33: C-DEC, C-MAC).
func wrapStoreData(tb testing.TB, host *scp03.Host, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		w, err := host.Wrap(cardtest.StoreDataBlock(i, i == n-1))
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = w
	}
	return out
}

// BenchmarkStoreDataTransmit measures secured STORE DATA (level 33, 132
// bytes of plain data per block) on one card in memory: card.Transmit only,
// the card's CPU cost per APDU. The host-side wrapping runs outside the
// timer, in batches of 8-block sequences.
func BenchmarkStoreDataTransmit(b *testing.B) {
	f := newFixture(b, 16)
	host := openSession(b, f, seA)
	c, err := f.fleet.DecodeCard(seA, mustStored(b, f))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		batch := make([][]byte, 0, 256)
		for len(batch) < 256 {
			batch = append(batch, wrapStoreData(b, host, 8)...)
		}
		b.StartTimer()
		for _, cmd := range batch {
			if done == b.N {
				break
			}
			if r := c.Transmit(cmd); len(r) != 10 || r[8] != 0x90 || r[9] != 0x00 {
				b.Fatalf("STORE DATA answered %X, want R-MAC || 9000", r)
			}
			done++
		}
		if done < b.N && done%8 != 0 {
			b.Fatal("batch ended inside a block sequence")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "apdus/s")
}

// BenchmarkStoreDataExecute measures secured STORE DATA through the
// service's execute use case (what the bus handler of tsm.se.<seId>.execute
// calls): Transmit, marshal and seal of the card state, and the bbolt commit
// (fsync) of state, counters, inbox record and result event, once per
// script. A script carries a whole block sequence of 1 or 8 blocks; one op
// is one script.
func BenchmarkStoreDataExecute(b *testing.B) {
	for _, perScript := range []int{1, 8} {
		b.Run(fmt.Sprintf("apdus-per-script=%d", perScript), func(b *testing.B) {
			f := newFixture(b, 16)
			host := openSession(b, f, seA)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cmds := make([]string, perScript)
				for j, w := range wrapStoreData(b, host, perScript) {
					cmds[j] = cardtest.Hex(w)
				}
				id := bus.NewID()
				b.StartTimer()
				if err := f.execute(b, id, seA, "bench", cmds...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			r := f.fleet.last(b)
			if len(r.Responses) != perScript || cardtest.SW(b, r.Responses[perScript-1]) != 0x9000 {
				b.Fatalf("last script answered %v", r.Responses)
			}
			b.ReportMetric(float64(b.N*perScript)/b.Elapsed().Seconds(), "apdus/s")
		})
	}
}

// BenchmarkStoreDataReader measures secured STORE DATA as a card reader
// (vpcd) sends it: one APDU per call, each committed (fsync) before the
// answer.
func BenchmarkStoreDataReader(b *testing.B) {
	f := newFixture(b, 16)
	host := openSession(b, f, seA)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		seq := wrapStoreData(b, host, 8)
		b.StartTimer()
		for _, cmd := range seq {
			if done == b.N {
				break
			}
			r, err := f.app.TransmitFromReader(ctx, seA, cmd)
			if err != nil || len(r) != 10 || r[8] != 0x90 {
				b.Fatalf("STORE DATA answered %X, %v", r, err)
			}
			done++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "apdus/s")
}
