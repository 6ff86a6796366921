package stats

import (
	"testing"
	"time"
)

func TestSummarizeNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // reversed: Summarize must sort
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(s)
	want := Summary{Count: 100, MeanMs: 50.5, P50Ms: 50, P95Ms: 95, P99Ms: 99, MaxMs: 100}
	if got != want {
		t.Fatalf("Summarize = %+v, want %+v", got, want)
	}
}

func TestSummarizeSmallAndEmpty(t *testing.T) {
	if got := Summarize(nil); got != (Summary{}) {
		t.Fatalf("empty: %+v", got)
	}
	got := Summarize([]time.Duration{1500 * time.Microsecond})
	if got.P50Ms != 1.5 || got.P99Ms != 1.5 || got.Count != 1 {
		t.Fatalf("one sample: %+v", got)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	var r Recorder
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 1000; i++ {
				r.Add(time.Millisecond)
			}
			done <- struct{}{}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if r.Len() != 4000 || r.Summary().P99Ms != 1 {
		t.Fatalf("recorder: %d samples, %+v", r.Len(), r.Summary())
	}
}
