package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// HopStat is the time one hop of a send-script took: from the moment the
// previous step's message was stored in its stream to the moment the next
// one was (consumer delivery, handler, bbolt commit with fsync, outbox relay,
// publish and store).
type HopStat struct {
	Hop     string        `json:"hop"`
	Latency stats.Summary `json:"latency"`
}

// scriptHops names the hops of a send-script by the subject kind of the
// message that ends them (DESIGN.md / docs/architecture.md flow).
var scriptHops = []struct{ suffix, name string }{
	{".requested", "conversation: SP request -> script requested"},
	{".deliver", "scriptrouter: validate, authorize, route -> deliver"},
	{".execute", "mnoadapter: OTA bearer (latency 0) -> execute"},
	{".executed", "sesimulator: run 5 APDUs on the card -> executed"},
	{".completed", "scriptrouter: collect the responses -> completed"},
	{".res.send-script", "conversation: script completed -> SP response"},
}

// idleHops returns the hop times of one script from the stream timestamps of
// its messages (in time order).
func idleHops(msgs []*jetstream.RawStreamMsg) []HopStat {
	var out []HopStat
	for i := 1; i < len(msgs); i++ {
		name := msgs[i].Subject
		for _, h := range scriptHops {
			if strings.HasSuffix(msgs[i].Subject, h.suffix) {
				name = h.name
			}
		}
		out = append(out, HopStat{Hop: name, Latency: stats.Summarize([]time.Duration{msgs[i].Time.Sub(msgs[i-1].Time)})})
	}
	return out
}

// scriptTrace is one secured script timed by the SP driver, to be matched
// with its step messages after the run.
type scriptTrace struct {
	seID       string
	sent, recv time.Time
}

// tracer keeps up to max traces, one every every-th offered.
type tracer struct {
	mu     sync.Mutex
	every  int
	max    int
	seen   int
	traces []scriptTrace
}

func (t *tracer) add(tr scriptTrace) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen++
	if t.seen%t.every == 0 && len(t.traces) < t.max {
		t.traces = append(t.traces, tr)
	}
}

// loadHops splits traced scripts into hops: SP publish -> requested stored,
// then the four inner hops from stream timestamps, then completed stored ->
// SP has the response. A trace whose five TSM_STEPS messages cannot be found
// in order is skipped.
func loadHops(ctx context.Context, js jetstream.JetStream, traces []scriptTrace) ([]HopStat, int) {
	names := []string{
		"SP publish -> script requested (TSM_REQ, conversation)",
		scriptHops[1].name, scriptHops[2].name, scriptHops[3].name, scriptHops[4].name,
		"script completed -> SP has the response (conversation, TSM_RES, SP client)",
	}
	want := []string{".requested", ".deliver", ".execute", ".executed", ".completed"}
	samples := make([][]time.Duration, len(names))
	used := 0
	for _, tr := range traces {
		start := tr.sent.Add(-time.Millisecond)
		cons, err := js.OrderedConsumer(ctx, topology.StreamSteps.Name, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"tsm.script." + tr.seID + ".>", "tsm.mno.*." + tr.seID + ".>", "tsm.se." + tr.seID + ".>"},
			DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start})
		if err != nil {
			continue
		}
		var times []time.Time
		for _, suffix := range want {
			m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
			if err != nil || !strings.HasSuffix(m.Subject(), suffix) {
				break
			}
			md, err := m.Metadata()
			if err != nil {
				break
			}
			times = append(times, md.Timestamp)
		}
		if len(times) != len(want) || times[len(times)-1].After(tr.recv) {
			continue
		}
		used++
		samples[0] = append(samples[0], times[0].Sub(tr.sent))
		for i := 1; i < len(times); i++ {
			samples[i] = append(samples[i], times[i].Sub(times[i-1]))
		}
		samples[5] = append(samples[5], tr.recv.Sub(times[len(times)-1]))
	}
	var out []HopStat
	for i, n := range names {
		out = append(out, HopStat{Hop: n, Latency: stats.Summarize(samples[i])})
	}
	return out, used
}
