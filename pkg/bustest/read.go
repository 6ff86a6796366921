package bustest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ordered makes an ordered consumer that reads stream from its start,
// filtered to the non-empty filterSubjects if any.
func ordered(ctx context.Context, t testing.TB, js jetstream.JetStream, stream string, filterSubjects ...string) jetstream.Consumer {
	t.Helper()
	var cfg jetstream.OrderedConsumerConfig
	for _, f := range filterSubjects {
		if f != "" {
			cfg.FilterSubjects = append(cfg.FilterSubjects, f)
		}
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		t.Fatalf("consumer on %s: %v", stream, err)
	}
	return cons
}

// NextMessage reads the first message of stream on filterSubject ("" for
// any) with an ordered consumer, waiting up to timeout for it to be stored.
func NextMessage(t testing.TB, js jetstream.JetStream, stream, filterSubject string, timeout time.Duration) jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := ordered(ctx, t, js, stream, filterSubject).Next(jetstream.FetchMaxWait(timeout))
	if err != nil {
		t.Fatalf("no message on %s %s within %s: %v", stream, filterSubject, timeout, err)
	}
	return m
}

// Collect reads every message stream holds on filterSubject ("" for any)
// at the time of the call, in stream order.
func Collect(t testing.TB, js jetstream.JetStream, stream, filterSubject string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cons := ordered(ctx, t, js, stream, filterSubject)
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for n := info.NumPending; n > 0; n-- {
		m, err := cons.Next(jetstream.FetchMaxWait(Timeout))
		if err != nil {
			t.Fatalf("reading %s %s (%d of %d): %v", stream, filterSubject, len(out), info.NumPending, err)
		}
		out = append(out, m)
	}
	return out
}

// CountMessages returns how many messages stream holds on subjects matching
// filterSubject ("" for all), as the stream itself counts them.
func CountMessages(t testing.TB, js jetstream.JetStream, stream, filterSubject string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if filterSubject == "" {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(info.State.Msgs)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filterSubject))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// Recorder keeps the messages of a stream, from its start and as they come,
// with one ordered consumer.
type Recorder struct {
	mu   sync.Mutex
	msgs []jetstream.Msg
	cc   jetstream.ConsumeContext
	once sync.Once
}

// Record starts recording the messages of stream on filterSubjects (none:
// all of them) until Stop or the end of the test.
func Record(t testing.TB, js jetstream.JetStream, stream string, filterSubjects ...string) *Recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	r := &Recorder{}
	var err error
	r.cc, err = ordered(ctx, t, js, stream, filterSubjects...).Consume(func(m jetstream.Msg) {
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Messages returns the messages recorded so far, in stream order.
func (r *Recorder) Messages() []jetstream.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]jetstream.Msg(nil), r.msgs...)
}

// Wait waits up to timeout until at least n of the recorded messages satisfy
// match (nil: any) and returns those that do, in stream order; what names
// them in the failure.
func (r *Recorder) Wait(t testing.TB, timeout time.Duration, what string, n int, match func(jetstream.Msg) bool) []jetstream.Msg {
	t.Helper()
	var got []jetstream.Msg
	EventuallyReport(t, timeout, what, func() (bool, string) {
		all := r.Messages()
		got = got[:0]
		for _, m := range all {
			if match == nil || match(m) {
				got = append(got, m)
			}
		}
		return len(got) >= n, fmt.Sprintf("%d of %d (%d messages recorded in all)", len(got), n, len(all))
	})
	return got
}

// Stop ends the recording; the messages stay.
func (r *Recorder) Stop() { r.once.Do(r.cc.Stop) }
