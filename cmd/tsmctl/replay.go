package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// Headers replay adds, so that a replayed message can be told from the
// original in the streams.
const (
	headerReplayOf   = "Tsm-Replay-Of"
	headerReplayOfID = "Tsm-Replay-Of-Id"
)

var replayCommand = &command{
	name:    "replay",
	summary: "re-publish a stored message with a new event id to its subject (ops)",
	usage:   "--stream TSM_STEPS --seq N --yes",
	help: `Reads message N of the stream and publishes a copy to the same subject with a
NEW ce-id and Nats-Msg-Id (and headers Tsm-Replay-Of: <stream>/<seq> and
Tsm-Replay-Of-Id: <old ce-id>). A dead letter (stream TSM_DLQ) goes back to the
subject it was dead-lettered from, without its Tsm-Dlq-* headers.

Why a new id: consumers record the event ids they processed in their inbox and
JetStream drops a Nats-Msg-Id it saw within its duplicate window, so a copy with
the same id would be ignored. With a new id the step is EXECUTED AGAIN by its
consumer: use it to re-drive a step that was lost or dead-lettered after the
cause was fixed, never for a step that took effect. A replayed SP request
(TSM_REQ) is a new request: its response carries the new id as correlation id.

Without --yes nothing is published; the message that would be sent is
described.`,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		stream := fs.String("stream", "", "stream name, e.g. TSM_STEPS (required)")
		seq := fs.Uint64("seq", 0, "stream sequence of the message (required)")
		yes := fs.Bool("yes", false, "really publish")
		return func(ctx context.Context, e *env, args []string) int {
			if len(args) > 0 || *stream == "" || *seq == 0 {
				e.errorf("replay needs --stream and --seq (see tsmctl help replay)")
				return exitUsage
			}
			known := false
			for _, s := range topology.Streams {
				known = known || s.Name == *stream
			}
			if !known {
				e.errorf("unknown stream %q", *stream)
				return exitUsage
			}
			nc, js, err := e.connect()
			if err != nil {
				e.errorf("%v", err)
				return exitFailed
			}
			defer nc.Close()
			return replay(ctx, e, js, *stream, *seq, *yes)
		}
	},
}

// replayMessage builds the copy of a stored message with newID.
func replayMessage(stream string, raw *jetstream.RawStreamMsg, newID string) (*nats.Msg, string, error) {
	subject := raw.Subject
	h := nats.Header{}
	for k, v := range raw.Header {
		h[k] = append([]string(nil), v...)
	}
	if stream == topology.StreamDeadLetters.Name {
		subject = headerValue(h, bus.HeaderDLQSubject)
		if subject == "" {
			return nil, "", errors.New("the dead letter has no " + bus.HeaderDLQSubject + " header: nowhere to send it")
		}
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "tsm-dlq-") {
				delete(h, k)
			}
		}
	}
	oldID := headerValue(h, "ce-id")
	data := raw.Data
	for k := range h {
		if strings.EqualFold(k, "ce-id") || strings.EqualFold(k, bus.HeaderMsgID) {
			delete(h, k)
		}
	}
	switch {
	case oldID != "":
		h.Set("ce-id", newID)
	case strings.HasPrefix(strings.ToLower(headerValue(h, bus.HeaderContentType)), bus.ContentTypeStructured):
		// Structured mode: the id is inside the body.
		var ev map[string]any
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, "", fmt.Errorf("structured event body: %w", err)
		}
		oldID, _ = ev["id"].(string)
		ev["id"] = newID
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, "", err
		}
		data = b
	}
	h.Set(bus.HeaderMsgID, newID)
	h.Set(headerReplayOf, stream+"/"+strconv.FormatUint(raw.Sequence, 10))
	if oldID != "" {
		h.Set(headerReplayOfID, oldID)
	}
	m := nats.NewMsg(subject)
	m.Header, m.Data = h, data
	return m, oldID, nil
}

func replay(ctx context.Context, e *env, js jetstream.JetStream, stream string, seq uint64, yes bool) int {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		e.errorf("stream %s: %v", stream, err)
		return exitFailed
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		e.errorf("%s message %d: %v", stream, seq, err)
		return exitFailed
	}
	newID := bus.NewID()
	m, oldID, err := replayMessage(stream, raw, newID)
	if err != nil {
		e.errorf("%s message %d: %v", stream, seq, err)
		return exitFailed
	}
	what := fmt.Sprintf("%s #%d (%s, type %s, id %s) to %s as id %s", stream, seq, raw.Subject,
		headerValue(raw.Header, "ce-type"), oldID, m.Subject, newID)
	if !yes {
		fmt.Fprintf(e.stdout, "would replay %s\nconsumers will execute it again; re-run with --yes to publish\n", what)
		return exitUsage
	}
	ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(newID))
	if err != nil {
		e.errorf("publish: %v", err)
		return exitFailed
	}
	if e.g.json {
		b, _ := json.Marshal(map[string]any{"stream": stream, "seq": seq, "subject": m.Subject, "oldId": oldID,
			"newId": newID, "storedIn": ack.Stream, "storedSeq": ack.Sequence})
		fmt.Fprintln(e.stdout, string(b))
		return exitOK
	}
	fmt.Fprintf(e.stdout, "replayed %s: stored in %s #%d\n", what, ack.Stream, ack.Sequence)
	return exitOK
}
