package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// rawStream is the baseline's stream: file storage and the duplicate window
// of TSM_STEPS, on the same server, so that every publish pays what a step
// publish pays (store write, Nats-Msg-Id de-duplication) and nothing else.
const rawStream = "BENCH_RAW"

// asyncMaxPending bounds unacknowledged async publishes (nats.go's default).
const asyncMaxPending = 4000

// measureBaseline publishes copies of a step message (same headers, same
// data, a fresh Nats-Msg-Id each) with plain nats.go: first one at a time
// (sync round trip), then as fast as the server acknowledges (async), from one
// connection and then from publishers connections at once.
func measureBaseline(ctx context.Context, url string, tmpl *nats.Msg, d time.Duration, publishers int) (*BaselineResult, error) {
	nc, err := nats.Connect(url, nats.Name("tsmbench-raw"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	var failed atomic.Int64
	countFailure := jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) })
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(asyncMaxPending), countFailure)
	if err != nil {
		return nil, err
	}
	steps := topology.StreamSteps
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: rawStream, Subjects: []string{"bench.raw.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, MaxAge: steps.MaxAge,
		Duplicates: steps.Duplicates, MaxMsgsPerSubject: -1, Replicas: 1})
	if err != nil {
		return nil, fmt.Errorf("baseline stream: %w", err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), rawStream) }()
	idLen := max(len(tmpl.Header.Get(nats.MsgIdHdr)), 20)
	var seq atomic.Int64
	// msg copies the template for publisher pub with a fresh id.
	msg := func(pub int) *nats.Msg {
		m := nats.NewMsg("bench.raw." + strconv.Itoa(pub) + ".0200000000000000.execute")
		for k, v := range tmpl.Header {
			m.Header[k] = v
		}
		n := strconv.FormatInt(seq.Add(1), 10)
		m.Header[nats.MsgIdHdr] = []string{"raw-" + strings.Repeat("0", max(idLen-4-len(n), 0)) + n}
		m.Data = tmpl.Data
		return m
	}
	hdr, size := msgSize(msg(0).Header, tmpl.Data)
	res := &BaselineResult{MessageBytes: size, HeaderBytes: hdr, AsyncMaxPending: asyncMaxPending, Publishers: publishers}
	// Warm the stream up (file blocks created, connections settled).
	for i := 0; i < 200; i++ {
		if _, err := js.PublishMsg(ctx, msg(0)); err != nil {
			return nil, err
		}
	}
	// Sync: one at a time for half the time.
	var lat []time.Duration
	end := time.Now().Add(d / 2)
	for time.Now().Before(end) {
		m := msg(0)
		start := time.Now()
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return nil, fmt.Errorf("sync publish: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	res.SyncCount = len(lat)
	res.Sync = stats.Summarize(lat)
	// Async from one connection.
	n, secs, err := publishAsync(ctx, js, &failed, func() *nats.Msg { return msg(0) }, d)
	if err != nil {
		return nil, err
	}
	res.AsyncCount, res.AsyncSeconds, res.AsyncPerSec = n, round(secs, 3), round(float64(n)/secs, 0)
	// Async from several connections (the services publish from six
	// processes at once).
	if publishers > 1 {
		var wg sync.WaitGroup
		var total atomic.Int64
		var firstErr error
		var mu sync.Mutex
		start := time.Now()
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pc, err := nats.Connect(url, nats.Name("tsmbench-raw-"+strconv.Itoa(p)))
				if err == nil {
					defer pc.Close()
					var pjs jetstream.JetStream
					if pjs, err = jetstream.New(pc, jetstream.WithPublishAsyncMaxPending(asyncMaxPending), countFailure); err == nil {
						var n int
						n, _, err = publishAsync(ctx, pjs, &failed, func() *nats.Msg { return msg(p) }, d)
						total.Add(int64(n))
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
		res.AsyncParallelPerSec = round(float64(total.Load())/time.Since(start).Seconds(), 0)
	}
	return res, nil
}

// publishAsync publishes for d and then waits for every acknowledgement; it
// returns how many were acknowledged and the seconds from first publish to
// last acknowledgement. failed counts negative acknowledgements (the
// JetStream context's error handler adds to it).
func publishAsync(ctx context.Context, js jetstream.JetStream, failed *atomic.Int64, next func() *nats.Msg, d time.Duration) (int, float64, error) {
	before := failed.Load()
	start := time.Now()
	end := start.Add(d)
	n := 0
	for time.Now().Before(end) {
		for i := 0; i < 100; i++ {
			if _, err := js.PublishMsgAsync(next(), jetstream.WithStallWait(10*time.Second)); err != nil {
				return 0, 0, fmt.Errorf("async publish: %w", err)
			}
			n++
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return 0, 0, fmt.Errorf("async publish: %d acknowledgements missing after 30 s", js.PublishAsyncPending())
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	secs := time.Since(start).Seconds()
	if f := failed.Load() - before; f > 0 {
		return 0, 0, fmt.Errorf("async publish: %d of %d failed", f, n)
	}
	return n, secs, nil
}
