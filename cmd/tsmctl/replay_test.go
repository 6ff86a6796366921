package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

func TestReplayMessage(t *testing.T) {
	orig := topology.SEExecute(seA)
	h, body := encode(t, orig, "ev-1", "urn:tsm:svc:x", events.TypeSEExecute, seA, "req-1", events.SEExecute{SEID: seA})
	h.Set(bus.HeaderDLQReason, "boom")
	h.Set(bus.HeaderDLQSubject, orig)
	h.Set(bus.HeaderDLQStreamSeq, "12")
	m, oldID, err := replayMessage(topology.StreamDeadLetters.Name,
		&jetstream.RawStreamMsg{Subject: topology.DeadLetter("sesimulator", "sesimulator-execute"), Sequence: 5, Header: h, Data: body}, "new-1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != orig || oldID != "ev-1" || m.Header.Get("ce-id") != "new-1" || m.Header.Get(bus.HeaderMsgID) != "new-1" ||
		m.Header.Get(headerReplayOf) != "TSM_DLQ/5" || m.Header.Get(headerReplayOfID) != "ev-1" {
		t.Errorf("replayed %s %v", m.Subject, m.Header)
	}
	for k := range m.Header {
		if strings.HasPrefix(strings.ToLower(k), "tsm-dlq-") {
			t.Errorf("DLQ header %s kept", k)
		}
	}
	if m.Header.Get("ce-correlationid") != "req-1" || string(m.Data) != string(body) {
		t.Error("attributes or body changed")
	}
	// A dead letter without its origin cannot be replayed.
	if _, _, err := replayMessage(topology.StreamDeadLetters.Name, &jetstream.RawStreamMsg{Subject: "tsm.dlq.a.b", Header: nats.Header{}}, "x"); err == nil {
		t.Error("DLQ message without origin replayed")
	}
	// Structured mode: the id is rewritten in the body.
	sh := nats.Header{"content-type": {bus.ContentTypeStructured}}
	m, oldID, err = replayMessage(topology.StreamSteps.Name, &jetstream.RawStreamMsg{Subject: orig, Sequence: 9, Header: sh,
		Data: []byte(`{"specversion":"1.0","id":"s-1","source":"x","type":"t"}`)}, "new-2")
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	_ = json.Unmarshal(m.Data, &ev)
	if oldID != "s-1" || ev["id"] != "new-2" || m.Header.Get("ce-id") != "" {
		t.Errorf("structured: old %s body %s", oldID, m.Data)
	}
}

func TestReplayCommand(t *testing.T) {
	url, js := startBus(t)
	subj := topology.SEExecute(seA)
	h, b := encode(t, subj, "ev-9", "urn:tsm:svc:x", events.TypeSEExecute, seA, "req-9", events.SEExecute{SEID: seA})
	publish(t, js, subj, h, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, topology.StreamSteps.Name)
	if err != nil {
		t.Fatal(err)
	}
	last := func() uint64 {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	if last() != 1 {
		t.Fatalf("setup: last seq %d", last())
	}
	code, out, _ := runCLI(t, "--nats", url, "replay", "--stream", "TSM_STEPS", "--seq", "1")
	if code != exitUsage || !strings.Contains(out, "--yes") || last() != 1 {
		t.Errorf("without --yes: exit %d, last seq %d\n%s", code, last(), out)
	}
	code, out, errOut := runCLI(t, "--nats", url, "replay", "--stream", "TSM_STEPS", "--seq", "1", "--yes")
	if code != exitOK || last() != 2 {
		t.Fatalf("replay: exit %d, last seq %d\n%s%s", code, last(), out, errOut)
	}
	msg, err := stream.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	id := msg.Header.Get("ce-id")
	if msg.Subject != subj || id == "" || id == "ev-9" || msg.Header.Get(headerReplayOf) != "TSM_STEPS/1" || !strings.Contains(out, id) {
		t.Errorf("replayed message %s %v\n%s", msg.Subject, msg.Header, out)
	}
	if l := summarize(topology.StreamSteps.Name, msg.Subject, msg.Header, msg.Data, 2, msg.Time); !strings.Contains(l.String(), "replay-of=TSM_STEPS/1") {
		t.Errorf("tail line of the copy: %s", l)
	}
	if code, _, _ := runCLI(t, "--nats", url, "replay", "--stream", "TSM_NOPE", "--seq", "1", "--yes"); code != exitUsage {
		t.Errorf("unknown stream: exit %d", code)
	}
	if code, _, _ := runCLI(t, "--nats", url, "replay", "--stream", "TSM_STEPS", "--seq", "99", "--yes"); code != exitFailed {
		t.Errorf("missing message: exit %d", code)
	}
}
