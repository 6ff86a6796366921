package app_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tsmhub/tsmhub/services/registry/app"
)

// BenchmarkLookupSEID measures the get-se-id use case (MSI index read in a
// bbolt read transaction) against a store holding 100,000 SEs.
func BenchmarkLookupSEID(b *testing.B) {
	const fleet = 100_000
	f := newFixture(b)
	seq := func(yield func(app.ImportLine) bool) {
		for i := 1; i <= fleet; i++ {
			if !yield(app.ImportLine{Line: i, SEID: seID(i), Input: seInput(fmt.Sprintf("4917%08d", i))}) {
				return
			}
		}
	}
	rep, err := f.reg.ImportSEs(context.Background(), seq, app.ImportConfig{BatchSize: 5000})
	if err != nil || rep.Imported != fleet {
		b.Fatalf("setup: %+v %v", rep, err)
	}
	msis := make([]string, 1024)
	want := make([]string, len(msis))
	for i := range msis {
		n := 1 + (i*7919)%fleet
		msis[i], want[i] = fmt.Sprintf("+4917%08d", n), seID(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % len(msis)
		id, err := f.reg.LookupSEIDView("MSISDN", msis[k])
		if err != nil || id != want[k] {
			b.Fatalf("lookup %d: %q %v", k, id, err)
		}
	}
}

// BenchmarkLookupSEIDParallel is the same look-up from many goroutines, as
// the request consumer's workers do.
func BenchmarkLookupSEIDParallel(b *testing.B) {
	const fleet = 100_000
	f := newFixture(b)
	seq := func(yield func(app.ImportLine) bool) {
		for i := 1; i <= fleet; i++ {
			if !yield(app.ImportLine{Line: i, SEID: seID(i), Input: seInput(fmt.Sprintf("4917%08d", i))}) {
				return
			}
		}
	}
	if _, err := f.reg.ImportSEs(context.Background(), seq, app.ImportConfig{BatchSize: 5000}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := f.reg.LookupSEIDView("", fmt.Sprintf("4917%08d", 1+(i*7919)%fleet)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
