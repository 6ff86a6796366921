// Package stats records latencies and summarises them as percentiles.
package stats

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Recorder keeps every latency sample it is given (a 30 s run at a few
// thousand operations per second is a few hundred thousand samples, small
// enough to keep exactly instead of approximating with a histogram). It is
// safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	samples []time.Duration
}

// Add records one sample.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

// Len is the number of samples recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// Summary returns the percentiles of the samples recorded so far.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	s := slices.Clone(r.samples)
	r.mu.Unlock()
	return Summarize(s)
}

// Summary describes a latency distribution in milliseconds.
type Summary struct {
	Count  int     `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P95Ms  float64 `json:"p95Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MaxMs  float64 `json:"maxMs"`
}

// Summarize sorts samples in place and returns their percentiles (nearest
// rank). An empty slice gives a zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return Summary{
		Count:  len(samples),
		MeanMs: ms(sum / time.Duration(len(samples))),
		P50Ms:  ms(Percentile(samples, 50)),
		P95Ms:  ms(Percentile(samples, 95)),
		P99Ms:  ms(Percentile(samples, 99)),
		MaxMs:  ms(samples[len(samples)-1]),
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts to milliseconds rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
