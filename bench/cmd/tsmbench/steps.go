package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
)

// stepsSample is one conversation's stream deltas per operation.
type stepsSample struct {
	begin, setup, secured, end map[string]uint64
	securedRange               map[string][2]uint64 // stream -> (first, last] sequences
}

// measureSteps runs conversations one at a time on an idle system and counts
// the messages every stream gained during each operation. Nothing is
// hard-coded: what the services write is what is counted.
func measureSteps(ctx context.Context, s *system, ses []*benchSE, samples int) (*StepsResult, *nats.Msg, error) {
	m := newMeter()
	var all []stepsSample
	h0 := s.scrapeHandlers(ctx)
	for i := 0; i < samples; i++ {
		se := ses[i%len(ses)]
		smp, err := stepsOfConversation(ctx, s, se, m)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, smp)
	}
	res := &StepsResult{ScriptByStream: map[string]float64{}, Samples: 2 * len(all)}
	res.IdleHandlers = handlerDelta(h0, s.scrapeHandlers(ctx), 0)
	var begin, end, scripts uint64
	for _, smp := range all {
		for stream, n := range smp.setup {
			res.ScriptByStream[stream] += float64(n)
			scripts += n
		}
		for stream, n := range smp.secured {
			res.ScriptByStream[stream] += float64(n)
			scripts += n
		}
		for _, n := range smp.begin {
			begin += n
		}
		for _, n := range smp.end {
			end += n
		}
	}
	k := float64(len(all))
	for stream, n := range res.ScriptByStream {
		if n == 0 {
			delete(res.ScriptByStream, stream)
			continue
		}
		res.ScriptByStream[stream] = n / (2 * k)
	}
	res.PerScript = float64(scripts) / (2 * k)
	res.PerBegin = float64(begin) / k
	res.PerEnd = float64(end) / k
	res.PerConversation = res.PerBegin + 2*res.PerScript + res.PerEnd
	// Hops of every secured script; subjects and sizes of the last one, and
	// its most typical step message, copied for the raw baseline.
	hopSamples := map[string][]time.Duration{}
	var hopOrder []string
	var msgs []*jetstream.RawStreamMsg
	for _, smp := range all {
		var err error
		if msgs, err = readRanges(ctx, s.js, smp.securedRange); err != nil {
			return nil, nil, err
		}
		for _, h := range idleHops(msgs) {
			if _, ok := hopSamples[h.Hop]; !ok {
				hopOrder = append(hopOrder, h.Hop)
			}
			hopSamples[h.Hop] = append(hopSamples[h.Hop], time.Duration(h.Latency.MeanMs*float64(time.Millisecond)))
		}
	}
	for _, h := range hopOrder {
		res.IdleHops = append(res.IdleHops, HopStat{Hop: h, Latency: stats.Summarize(hopSamples[h])})
	}
	if len(msgs) == 0 {
		return nil, nil, fmt.Errorf("the secured script wrote no message to any stream")
	}
	var total, hdrTotal int
	res.ScriptMessageBytes.Min = 1 << 30
	for _, rm := range msgs {
		res.ScriptSubjects = append(res.ScriptSubjects, rm.Subject)
		h, n := msgSize(rm.Header, rm.Data)
		total += n
		hdrTotal += h
		res.ScriptMessageBytes.Min = min(res.ScriptMessageBytes.Min, n)
		res.ScriptMessageBytes.Max = max(res.ScriptMessageBytes.Max, n)
	}
	res.ScriptMessageBytes.Mean = total / len(msgs)
	res.ScriptMessageBytes.HeaderMean = hdrTotal / len(msgs)
	for i, subj := range res.ScriptSubjects {
		res.ScriptSubjects[i] = strings.ReplaceAll(subj, ses[(len(all)-1)%len(ses)].ID, "<se>")
	}
	return res, typicalMessage(msgs, res.ScriptMessageBytes.Mean), nil
}

// stepsOfConversation runs begin, the two scripts and end on se, counting
// each operation's messages after the bus went quiet.
func stepsOfConversation(ctx context.Context, s *system, se *benchSE, m *meter) (stepsSample, error) {
	var smp stepsSample
	c := se.SP.Client
	seq0, err := s.quiesce(ctx)
	if err != nil {
		return smp, err
	}
	// The same calls as the load, one at a time, with a quiet bus between.
	var snaps []map[string]uint64
	step := func() error {
		seqs, err := s.quiesce(ctx)
		if err != nil {
			return err
		}
		snaps = append(snaps, seqs)
		return nil
	}
	call := func(op string, f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := f(cctx); err != nil {
			m.fail(op, err)
			return err
		}
		return step()
	}
	var convID string
	err = call(opBegin, func(ctx context.Context) error {
		r, err := c.BeginConversation(ctx, beginRequest(se))
		if err == nil {
			convID = r.ConversationID
		}
		return err
	})
	if err != nil {
		return smp, fmt.Errorf("steps: begin-conversation on %s: %w", se.ID, err)
	}
	if err := conversationScripts(ctx, c, se, convID, call); err != nil {
		return smp, fmt.Errorf("steps: scripts on %s: %w", se.ID, err)
	}
	err = call(opEnd, func(ctx context.Context) error {
		_, err := c.EndConversation(ctx, endRequest(convID))
		return err
	})
	if err != nil {
		return smp, fmt.Errorf("steps: end-conversation on %s: %w", se.ID, err)
	}
	if len(snaps) != 4 {
		return smp, fmt.Errorf("steps: %d snapshots", len(snaps))
	}
	smp.begin, _ = seqDelta(seq0, snaps[0])
	smp.setup, _ = seqDelta(snaps[0], snaps[1])
	smp.secured, _ = seqDelta(snaps[1], snaps[2])
	smp.end, _ = seqDelta(snaps[2], snaps[3])
	smp.securedRange = map[string][2]uint64{}
	for stream, last := range snaps[2] {
		if first := snaps[1][stream]; last > first {
			smp.securedRange[stream] = [2]uint64{first, last}
		}
	}
	return smp, nil
}

// readRanges reads the messages of (first, last] of each stream, in time
// order.
func readRanges(ctx context.Context, js jetstream.JetStream, ranges map[string][2]uint64) ([]*jetstream.RawStreamMsg, error) {
	var out []*jetstream.RawStreamMsg
	for stream, r := range ranges {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		for seq := r[0] + 1; seq <= r[1]; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				return nil, fmt.Errorf("%s message %d: %w", stream, seq, err)
			}
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// msgSize is the NATS wire size of a message's header block and of headers
// plus data.
func msgSize(h nats.Header, data []byte) (hdr, total int) {
	if len(h) > 0 {
		hdr = len("NATS/1.0\r\n") + 2
		for k, vs := range h {
			for _, v := range vs {
				hdr += len(k) + 2 + len(v) + 2
			}
		}
	}
	return hdr, hdr + len(data)
}

// typicalMessage copies the step message whose size is closest to the mean
// (with its Nats-Msg-Id): the raw baseline publishes the same bytes again,
// each time with a fresh Nats-Msg-Id of the same length.
func typicalMessage(msgs []*jetstream.RawStreamMsg, mean int) *nats.Msg {
	best := msgs[0]
	bestDiff := 1 << 30
	for _, rm := range msgs {
		_, n := msgSize(rm.Header, rm.Data)
		if d := abs(n - mean); d < bestDiff {
			best, bestDiff = rm, d
		}
	}
	m := nats.NewMsg(best.Subject)
	for k, v := range best.Header {
		m.Header[k] = append([]string(nil), v...)
	}
	m.Data = append([]byte(nil), best.Data...)
	return m
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
