package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

const (
	seA   = "0102030405060708"
	seB   = "1112131415161718"
	apduX = "80E60C002006A0000005550107A000000555010108A0000005550101010300000002C9000000"
)

var msgTime = time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)

// encode returns the headers and body of an event as they sit in a stream.
func encode(t *testing.T, subject, id, source, typ, ceSubject, corr string, data any) (nats.Header, []byte) {
	t.Helper()
	m := bustest.Encode(t, subject, bustest.Event{ID: id, Source: source, Type: typ, Subject: ceSubject, Correlation: corr, Data: data})
	return m.Header, m.Data
}

func TestSummarizeStepWithoutAPDUData(t *testing.T) {
	subject := topology.SEExecute(seA)
	h, body := encode(t, subject, "ev-1", topology.ServiceSourcePrefix+"mnoadapter", events.TypeSEExecute, seA, "req-1",
		events.SEExecute{Request: events.RequestRef{SPID: "bank-a", RequestID: "req-1", Op: topology.OpSendScript},
			ConversationID: "conv-1", SEID: seA, Commands: []string{apduX, "80CA006600", "00A4040000"}})
	l := summarize(topology.StreamSteps.Name, subject, h, body, 42, msgTime)
	if l.SE != seA || l.Conversation != "conv-1" || l.SP != "bank-a" || l.CorrelationID != "req-1" || l.ID != "ev-1" ||
		l.Commands == nil || *l.Commands != 3 || l.Type != events.TypeSEExecute || l.Seq != 42 {
		t.Errorf("summary %+v", l)
	}
	line := l.String()
	for _, want := range []string{"TSM_STEPS", "#42", subject, events.TypeSEExecute, "id=ev-1", "corr=req-1", "se=" + seA, "conv=conv-1", "cmds=3", "sp=bank-a"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %s", want, line)
		}
	}
	js, _ := json.Marshal(l)
	for _, out := range []string{line, string(js)} {
		if strings.Contains(out, "80E60C") || strings.Contains(out, "80CA006600") {
			t.Errorf("APDU data printed: %s", out)
		}
	}
}

func TestSummarizeResponsesAndNested(t *testing.T) {
	// A Failed SP response about an SE: status and error code, never the message.
	subject := topology.SPResponse("bank-a", topology.OpGetSEData)
	h, body := encode(t, subject, "res-1", topology.CentralSource, "tsm.get-se-data.response", seA, "req-9",
		contract.FailureBody{Result: contract.Failure(contract.Errorf(contract.CodeNotFound, "no SE for MSI +4915112345678"))})
	l := summarize(topology.StreamResponses.Name, subject, h, body, 7, msgTime)
	line := l.String()
	if l.SP != "bank-a" || l.SE != seA || l.Status != "Failed" || l.ErrorCode != "NOT_FOUND" {
		t.Errorf("summary %+v", l)
	}
	if strings.Contains(line, "+4915112345678") {
		t.Errorf("personal data printed: %s", line)
	}
	// A script.completed step carries status and counts in its response.
	subject = topology.ScriptCompleted(seB)
	h, body = encode(t, subject, "ev-2", topology.ServiceSourcePrefix+"scriptrouter", events.TypeScriptCompleted, seB, "req-2",
		events.ScriptCompleted{Request: events.RequestRef{SPID: "bank-b", RequestID: "req-2", Op: topology.OpSendScript},
			ConversationID: "conv-2", SEID: seB, Response: contract.SendScriptResponse{Result: contract.Failure(
				contract.Errorf(contract.CodeSecureElementError, "stopped")), Responses: []string{"9000", "6982"},
				Failed: []contract.ScriptFailure{{Index: 1, Command: "80CA006600", SW: "6982", Reason: "x"}}}})
	l = summarize(topology.StreamSteps.Name, subject, h, body, 8, msgTime)
	if l.Status != "Failed" || l.ErrorCode != "SECURE_ELEMENT_ERROR" || l.Responses == nil || *l.Responses != 2 ||
		l.Failed == nil || *l.Failed != 1 || l.Conversation != "conv-2" || l.SE != seB || l.SP != "bank-b" {
		t.Errorf("completed %+v", l)
	}
	// The SE of a request is in its body; an MNO step has it at token 3.
	subject = topology.SPRequest("bank-a", topology.OpBeginConversation)
	h, body = encode(t, subject, "req-3", topology.SPSourcePrefix+"bank-a", "tsm.begin-conversation.request", "", "",
		contract.BeginConversationRequest{SEID: seB, TargetAID: "A000000555AA01", RequestedOperation: "other"})
	if l = summarize(topology.StreamRequests.Name, subject, h, body, 9, msgTime); l.SE != seB || l.SP != "bank-a" {
		t.Errorf("request %+v", l)
	}
	if se := seFromSubject(topology.MNODeliver("mno-1", seA)); se != seA {
		t.Errorf("MNO subject SE %q", se)
	}
	if se := seFromSubject(topology.RegistrySE(seB)); se != seB {
		t.Errorf("registry subject SE %q", se)
	}
	if se := seFromSubject(topology.SPRequest("bank-a", "get-se-id")); se != "" {
		t.Errorf("SP subject SE %q", se)
	}
}

func TestSummarizeDeadLetter(t *testing.T) {
	orig := topology.SEExecute(seA)
	h, body := encode(t, orig, "ev-3", "urn:tsm:svc:mnoadapter", events.TypeSEExecute, seA, "req-4",
		events.SEExecute{ConversationID: "conv-3", SEID: seA, Commands: []string{apduX}})
	h.Set(bus.HeaderDLQReason, "card not manufactured")
	h.Set(bus.HeaderDLQSubject, orig)
	h.Set(bus.HeaderDLQConsumer, "sesimulator-execute")
	dlq := topology.DeadLetter("sesimulator", "sesimulator-execute")
	l := summarize(topology.StreamDeadLetters.Name, dlq, h, body, 3, msgTime)
	line := l.String()
	for _, want := range []string{`reason="card not manufactured"`, "from=" + orig, "consumer=sesimulator-execute", "se=" + seA, "conv=conv-3"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %s", want, line)
		}
	}
	// Not a CloudEvent at all: still one line, saying so.
	l = summarize(topology.StreamDeadLetters.Name, dlq, nats.Header{bus.HeaderDLQReason: {"no ce headers"}}, []byte("garbage"), 4, msgTime)
	if l.Undecodable == "" || !strings.Contains(l.String(), "undecodable=") {
		t.Errorf("undecodable %+v", l)
	}
}

func TestTailFilter(t *testing.T) {
	lines := []*eventLine{
		{SE: seA, Conversation: "c1", SP: "bank-a"},
		{SE: seB, Conversation: "c2", SP: "bank-b"},
		{ceSubject: seA, SP: "bank-a"},        // response about SE A
		{ceSubject: "c2", SP: "bank-b"},       // response about conversation c2
		{SE: seA, Conversation: "c3", SP: ""}, // internal step without SP
	}
	cases := []struct {
		f    tailFilter
		want []int
	}{
		{tailFilter{}, []int{0, 1, 2, 3, 4}},
		{tailFilter{SE: seA}, []int{0, 2, 4}},
		{tailFilter{Conversation: "c2"}, []int{1, 3}},
		{tailFilter{SP: "bank-a"}, []int{0, 2}},
		{tailFilter{SE: seA, SP: "bank-a"}, []int{0, 2}},
		{tailFilter{SE: seB, Conversation: "c1"}, nil},
	}
	for _, c := range cases {
		var got []int
		for i, l := range lines {
			if c.f.match(l) {
				got = append(got, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%+v matched %v, want %v", c.f, got, c.want)
		}
	}
}

func TestSubjectPatterns(t *testing.T) {
	for _, c := range []struct {
		a, b          string
		collide, aInB bool
	}{
		{"tsm.>", "tsm.sp.*.req.>", true, false},
		{"tsm.sp.bank-a.>", "tsm.sp.*.req.>", true, false},
		{"tsm.sp.bank-a.req.>", "tsm.sp.*.req.>", true, true},
		{"tsm.sp.*.res.get-se-id", "tsm.sp.*.req.>", false, false},
		{"tsm.se.*.execute", "tsm.se.>", true, true},
		{"tsm.se", "tsm.se.>", false, false},
		{"tsm.se.X.execute", "tsm.se.*.execute", true, true},
		{"tsm.se.*.execute", "tsm.se.X.execute", true, false},
		{"tsm.dlq.>", "tsm.conv.>", false, false},
	} {
		if got := subjectsCollide(c.a, c.b); got != c.collide {
			t.Errorf("collide(%s, %s) = %v", c.a, c.b, got)
		}
		if got := subjectsCollide(c.b, c.a); got != c.collide {
			t.Errorf("collide(%s, %s) = %v", c.b, c.a, got)
		}
		if got := subjectSubset(c.a, c.b); got != c.aInB {
			t.Errorf("subset(%s, %s) = %v", c.a, c.b, got)
		}
	}
	// The default reads every stream whole; a narrow pattern is a server filter.
	if f, read := streamFilters([]string{"tsm.>"}, topology.StreamSteps.Subjects); !read || f != nil {
		t.Errorf("tsm.> on TSM_STEPS: %v %v", f, read)
	}
	if f, read := streamFilters([]string{"tsm.se.>"}, topology.StreamSteps.Subjects); !read || len(f) != 1 {
		t.Errorf("tsm.se.> on TSM_STEPS: %v %v", f, read)
	}
	if _, read := streamFilters([]string{"tsm.se.>"}, topology.StreamRequests.Subjects); read {
		t.Error("tsm.se.> reads TSM_REQ")
	}
}

// startBus runs an embedded JetStream server with the streams.
func startBus(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv := bustest.StartJetStream(t)
	return srv.URL(), srv.JS
}

// publish stores an encoded event.
func publish(t *testing.T, js jetstream.JetStream, subject string, h nats.Header, body []byte) {
	t.Helper()
	bustest.PublishMsg(t, js, &nats.Msg{Subject: subject, Header: h, Data: body})
}

// tail against a real server: stored events of several streams are shown
// with --since, the SE filter drops the other SE, new events keep coming, and
// Ctrl-C (context cancel) ends it.
func TestTailCommand(t *testing.T) {
	url, js := startBus(t)
	subj := topology.SPRequest("bank-a", topology.OpGetSEData)
	h, b := encode(t, subj, "req-a", topology.SPSourcePrefix+"bank-a", "tsm.get-se-data.request", "", "", contract.GetSEDataRequest{SEID: seA})
	publish(t, js, subj, h, b)
	subj = topology.SEExecute(seB)
	h, b = encode(t, subj, "step-b", "urn:tsm:svc:x", events.TypeSEExecute, seB, "req-b", events.SEExecute{SEID: seB, ConversationID: "cb"})
	publish(t, js, subj, h, b)
	subj = topology.SEExecuted(seA)
	h, b = encode(t, subj, "step-a", "urn:tsm:svc:x", events.TypeSEExecuted, seA, "req-a2", events.SEExecuted{SEID: seA, ConversationID: "ca",
		Responses: []string{"9000"}})
	publish(t, js, subj, h, b)

	// A conversation: the begin request names the SE, its response (same
	// correlation id) the conversation, the send-script request only the
	// conversation: all three belong to SE A.
	subj = topology.SPRequest("bank-a", topology.OpBeginConversation)
	h, b = encode(t, subj, "begin-a", topology.SPSourcePrefix+"bank-a", "tsm.begin-conversation.request", "", "",
		contract.BeginConversationRequest{SEID: seA, TargetAID: "A000000555AA01", RequestedOperation: "other"})
	publish(t, js, subj, h, b)
	subj = topology.SPResponse("bank-a", topology.OpBeginConversation)
	h, b = encode(t, subj, "begun-a", topology.CentralSource, "tsm.begin-conversation.response", "conv-a", "begin-a",
		contract.BeginConversationResponse{Result: contract.Success(), ConversationID: "conv-a"})
	publish(t, js, subj, h, b)
	subj = topology.SPRequest("bank-a", topology.OpSendScript)
	h, b = encode(t, subj, "script-a", topology.SPSourcePrefix+"bank-a", "tsm.send-script.request", "", "",
		contract.SendScriptRequest{ConversationID: "conv-a", Commands: []string{apduX}})
	publish(t, js, subj, h, b)

	ctx, cancel := context.WithCancel(context.Background())
	out := &bustest.Buffer{}
	errOut := &bustest.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"--nats", url, "tail", "--se", seA, "--since", "1h"}, out, errOut) }()
	bustest.Eventually(t, 30*time.Second, "stored events", func() bool { return strings.Contains(out.String(), "id=script-a") })
	// Stored events of all streams come in time order.
	var order []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		order = append(order, strings.Fields(strings.SplitN(l, " id=", 2)[1])[0])
	}
	if got := strings.Join(order, ","); got != "req-a,step-a,begin-a,begun-a,script-a" {
		t.Errorf("stored events in order %s", got)
	}
	subj = topology.SPResponse("bank-a", topology.OpGetSEData)
	h, b = encode(t, subj, "res-a", topology.CentralSource, "tsm.get-se-data.response", seA, "req-a",
		contract.GetSEDataResponse{Result: contract.Success(), SEID: seA})
	publish(t, js, subj, h, b)
	bustest.Eventually(t, 30*time.Second, "a new event", func() bool { return strings.Contains(out.String(), "id=res-a") })
	subj = topology.SPRequest("bank-a", topology.OpEndConversation)
	h, b = encode(t, subj, "end-a", topology.SPSourcePrefix+"bank-a", "tsm.end-conversation.request", "", "",
		contract.EndConversationRequest{ConversationID: "conv-a", Outcome: "success"})
	publish(t, js, subj, h, b)
	bustest.Eventually(t, 30*time.Second, "a new event of the conversation", func() bool { return strings.Contains(out.String(), "id=end-a") })
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail did not stop on cancel")
	}
	s := out.String()
	if strings.Contains(s, "step-b") || strings.Contains(s, seB) {
		t.Errorf("SE filter let SE B through:\n%s", s)
	}
	if n := strings.Count(s, "\n"); n != 7 {
		t.Errorf("%d lines, want 7:\n%s", n, s)
	}
	if !strings.Contains(s, "id=script-a sp=bank-a se="+seA+" conv=conv-a cmds=1") {
		t.Errorf("send-script request not tied to its SE:\n%s", s)
	}
	if !strings.Contains(s, "status=Executed-Success") || !strings.Contains(s, "resps=1") {
		t.Errorf("output:\n%s", s)
	}
}
