package service_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

const mno = "mno-a"

// Commands used by the tests: SELECT of sp-bank's SD (see registerSPs), GET
// DATA, GET STATUS, INSTALL (case 4S).
var (
	selectSD  = "00A4040007" + bankSD + "00"
	getData   = "80CA006600"
	getStatus = "80f22000024f0000"
	install   = "80E60C0005AABBCCDDEE00"
)

func requested(seID, scriptID string, commands ...string) events.ScriptRequested {
	return events.ScriptRequested{
		Request:        events.RequestRef{SPID: "sp-bank", RequestID: "req-" + scriptID, Op: topology.OpSendScript},
		ConversationID: "conv-" + scriptID, ScriptID: scriptID, SEID: seID, MNO: mno, TargetAID: "A0000005550101",
		Commands: commands, Securing: contract.SecuringEndToEnd, MaxAPDUsPerScript: 4, MaxScriptBytes: 64,
	}
}

func (e *env) request(req events.ScriptRequested) {
	e.t.Helper()
	e.publish(topology.ScriptRequested(req.SEID), events.TypeScriptRequested, "ev-"+req.ScriptID, "", req)
}

func (e *env) executed(ex events.SEExecuted, eventID, msgID string) {
	e.t.Helper()
	e.publish(topology.SEExecuted(ex.SEID), events.TypeSEExecuted, eventID, msgID, ex)
}

func decodeCompleted(t *testing.T, m jetstream.Msg) events.ScriptCompleted {
	t.Helper()
	var c events.ScriptCompleted
	if err := json.Unmarshal(m.Data(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// routeAndDeliver requests a script and waits for its MNODeliver.
func (e *env) routeAndDeliver(req events.ScriptRequested) events.MNODeliver {
	e.t.Helper()
	e.request(req)
	m := e.waitFor(topology.MNODeliver(mno, req.SEID), 1, forScript(req.ScriptID))[0]
	var d events.MNODeliver
	if err := json.Unmarshal(m.Data(), &d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func TestValidScriptIsRoutedToTheMNOAdapter(t *testing.T) {
	e := newEnv(t, nil)
	req := requested("0A01", "s-valid", selectSD, getData, getStatus)
	req.ContinueOnError = true
	e.request(req)
	msgs := e.waitFor(topology.MNODeliver(mno, "0A01"), 1, forScript("s-valid"))
	m := msgs[0]
	h := m.Headers()
	for name, want := range map[string]string{"ce-type": events.TypeMNODeliver, "ce-source": "urn:tsm:svc:scriptrouter",
		"ce-subject": "0A01", "ce-correlationid": "corr-ev-s-valid"} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if h.Get("ce-id") == "" || h.Get(bus.HeaderMsgID) != h.Get("ce-id") {
		t.Errorf("ce-id %q, Nats-Msg-Id %q", h.Get("ce-id"), h.Get(bus.HeaderMsgID))
	}
	var d events.MNODeliver
	if err := json.Unmarshal(m.Data(), &d); err != nil {
		t.Fatal(err)
	}
	if d.ConversationID != "conv-s-valid" || d.SEID != "0A01" || !d.ContinueOnError || d.Request != req.Request {
		t.Errorf("deliver %+v", d)
	}
	if strings.Join(d.Commands, ",") != selectSD+",80CA006600,80F22000024F0000" {
		t.Errorf("commands %v: want the canonical hex of the SP's bytes", d.Commands)
	}
	if got := e.matching(topology.ScriptCompleted("0A01"), nil); len(got) != 0 {
		t.Errorf("a routed script must not complete yet: %d completions", len(got))
	}

	var sum domain.Summary
	if code := e.getJSON("/v1/scripts/s-valid", &sum); code != 200 {
		t.Fatalf("GET status %d", code)
	}
	if sum.State != domain.StateInFlight || sum.Commands != 3 || sum.SEID != "0A01" || sum.MNO != mno {
		t.Errorf("summary %+v", sum)
	}
	if code := e.getJSON("/v1/scripts/nope", nil); code != 404 {
		t.Errorf("GET unknown script: status %d, want 404", code)
	}
}

func TestInvalidScriptsCompleteAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	const se = "0A02"
	cases := []struct {
		req     events.ScriptRequested
		status  contract.Status
		code    contract.Code
		message string
		failed  []int
	}{
		{req: requested(se, "s-malformed", getData, getData, "80E2000005AABBCC"), status: contract.StatusFailed,
			code: contract.CodeInvalidArgument, message: "command 2: Lc says 5 bytes but 3 follow", failed: []int{2}},
		{req: requested(se, "s-nothex", "80CA00660", getData), status: contract.StatusFailed,
			code: contract.CodeInvalidArgument, message: "command 0: not a hex string: odd number of hex digits (9)", failed: []int{0}},
		{req: requested(se, "s-many", getData, getData, getData, getData, getData), status: contract.StatusFailed,
			code:    contract.CodeScriptTooLarge,
			message: "the script has 5 APDUs but at most 4 are allowed per script in this conversation: split it into several scripts"},
		{req: requested(se, "s-bytes", "80E2000040"+strings.Repeat("AB", 64)), status: contract.StatusFailed,
			code:    contract.CodeScriptTooLarge,
			message: "the script has 69 bytes of APDUs but at most 64 bytes are allowed per script in this conversation: split it into several scripts"},
		{req: func() events.ScriptRequested {
			r := requested(se, "s-central", getData)
			r.Securing = contract.SecuringCentral
			return r
		}(), status: contract.StatusFailed, code: contract.CodeNotAllowed,
			message: "the central TSM holds no keys of security domain A000000555AA01: it did not create it with temporary keys"},
		{req: func() events.ScriptRequested {
			r := requested(se, "s-central-many", getData, getData, getData, getData)
			r.Securing = contract.SecuringCentral
			return r
		}(), status: contract.StatusFailed, code: contract.CodeScriptTooLarge,
			message: "the script has 4 APDUs but at most 3 are allowed per script in this conversation: split it into several scripts (with securing central the central TSM's secure channel takes 1 of the conversation's 4 APDUs)"},
		{req: func() events.ScriptRequested {
			r := requested(se, "s-late", getData)
			r.ValidUntil = time.Now().Add(-time.Minute)
			return r
		}(), status: contract.StatusExpired, code: contract.CodeExpired, message: "the request's validity ended at"},
	}
	for _, tc := range cases {
		e.request(tc.req)
	}
	// Barrier: a valid script for the same SE is handled after all of them
	// (per-SE order) and its deliver is published after their completions
	// (outbox order), so when it shows up every answer is in.
	e.routeAndDeliver(requested(se, "s-sentinel", selectSD))
	for _, tc := range cases {
		id := tc.req.ScriptID
		if got := e.matching(topology.MNODeliver(mno, se), forScript(id)); len(got) != 0 {
			t.Errorf("%s: routed to the MNO", id)
		}
		got := e.matching(topology.ScriptCompleted(se), forScript(id))
		if len(got) != 1 {
			t.Errorf("%s: %d completions, want 1", id, len(got))
			continue
		}
		if ct := got[0].Headers().Get("ce-type"); ct != events.TypeScriptCompleted {
			t.Errorf("%s: ce-type %q", id, ct)
		}
		if corr := got[0].Headers().Get("ce-correlationid"); corr != "corr-ev-"+id {
			t.Errorf("%s: correlation id %q", id, corr)
		}
		c := decodeCompleted(t, got[0])
		r := c.Response
		if c.ConversationID != "conv-"+id || c.Request != tc.req.Request || r.ConversationID != "conv-"+id {
			t.Errorf("%s: completion names %+v", id, c)
		}
		if r.Status != tc.status || r.Error == nil || r.Error.Code != tc.code || !strings.HasPrefix(r.Error.Message, tc.message) {
			t.Errorf("%s: response %s %+v, want %s %s %q", id, r.Status, r.Error, tc.status, tc.code, tc.message)
		}
		if r.Responses == nil || len(r.Responses) != 0 {
			t.Errorf("%s: responses %v, want []", id, r.Responses)
		}
		if len(r.Failed) != len(tc.failed) {
			t.Errorf("%s: failed %+v, want indexes %v", id, r.Failed, tc.failed)
			continue
		}
		for i, f := range r.Failed {
			if f.Index != tc.failed[i] || f.Command != tc.req.Commands[f.Index] || f.Reason == "" {
				t.Errorf("%s: failed[%d] = %+v", id, i, f)
			}
		}
	}
	var sum domain.Summary
	if code := e.getJSON("/v1/scripts/s-central", &sum); code != 200 || sum.State != domain.StateCompleted ||
		sum.Status != contract.StatusFailed || sum.ErrorCode != contract.CodeNotAllowed {
		t.Errorf("GET rejected script: %d %+v", code, sum)
	}
}

func TestExecutedScripts(t *testing.T) {
	e := newEnv(t, nil)
	const se = "0A03"
	cases := []struct {
		name      string
		cont      bool
		responses []string
		seErr     *contract.Error
		status    contract.Status
		code      contract.Code
		message   string
		failed    []contract.ScriptFailure
	}{
		{name: "success", responses: []string{"660A9000", "9000", "9000"}, status: contract.StatusSuccess},
		{name: "6982 in the middle", responses: []string{"9000", "6982"}, status: contract.StatusFailed,
			code: contract.CodeSecureElementError, message: "command 1 (INS F2) returned SW 6982: security status not satisfied; execution stopped",
			failed: []contract.ScriptFailure{{Index: 1, Command: "80F22000024F0000", SW: "6982", Reason: "security status not satisfied"}}},
		{name: "continue on error", cont: true, responses: []string{"9000", "6982", "9000"}, status: contract.StatusWithWarning,
			code: contract.CodeSecureElementError, message: "1 of 3 commands failed",
			failed: []contract.ScriptFailure{{Index: 1, Command: "80F22000024F0000", SW: "6982", Reason: "security status not satisfied"}}},
		{name: "expired at the MNO", responses: []string{}, seErr: contract.Errorf(contract.CodeExpired, "validity ended before delivery"),
			status: contract.StatusExpired, code: contract.CodeExpired, message: "validity ended before delivery"},
	}
	for i, tc := range cases {
		id := "s-exec-" + string(rune('a'+i))
		req := requested(se, id, selectSD, getStatus, install)
		req.ContinueOnError = tc.cont
		e.routeAndDeliver(req)
		e.executed(events.SEExecuted{Request: req.Request, ConversationID: req.ConversationID, ScriptID: id, SEID: se,
			Responses: tc.responses, Error: tc.seErr}, "ex-"+id, "")
		c := decodeCompleted(t, e.waitFor(topology.ScriptCompleted(se), 1, forScript(id))[0])
		r := c.Response
		if r.Status != tc.status {
			t.Errorf("%s: status %s, want %s", tc.name, r.Status, tc.status)
		}
		if tc.code == "" && r.Error != nil || tc.code != "" && (r.Error == nil || r.Error.Code != tc.code || r.Error.Message != tc.message) {
			t.Errorf("%s: error %+v, want %s %q", tc.name, r.Error, tc.code, tc.message)
		}
		if strings.Join(r.Responses, ",") != strings.Join(tc.responses, ",") {
			t.Errorf("%s: responses %v", tc.name, r.Responses)
		}
		if len(r.Failed) != len(tc.failed) || len(tc.failed) > 0 && r.Failed[0] != tc.failed[0] {
			t.Errorf("%s: failed %+v, want %+v", tc.name, r.Failed, tc.failed)
		}
		var sum domain.Summary
		if code := e.getJSON("/v1/scripts/"+id, &sum); code != 200 || sum.State != domain.StateCompleted ||
			sum.Status != tc.status || sum.Commands != 3 || sum.Responses != len(tc.responses) {
			t.Errorf("%s: GET %d %+v", tc.name, code, sum)
		}
	}
}

func TestDuplicateDeliveriesProduceOneOutput(t *testing.T) {
	e := newEnv(t, nil)
	const se = "0A04"
	req := requested(se, "s-dup", selectSD)
	// The same event twice, the second beyond JetStream's duplicate window
	// (another Nats-Msg-Id): only the router's inbox can stop it.
	e.publish(topology.ScriptRequested(se), events.TypeScriptRequested, "ev-dup", "", req)
	e.publish(topology.ScriptRequested(se), events.TypeScriptRequested, "ev-dup", "ev-dup-again", req)
	// The same script under a new event id (a re-sent step) is not routed twice either.
	e.publish(topology.ScriptRequested(se), events.TypeScriptRequested, "ev-dup-other", "", req)
	e.routeAndDeliver(requested(se, "s-barrier-1", selectSD))
	if got := e.matching(topology.MNODeliver(mno, se), forScript("s-dup")); len(got) != 1 {
		t.Fatalf("%d delivers for one script, want 1", len(got))
	}

	ex := events.SEExecuted{Request: req.Request, ConversationID: req.ConversationID, ScriptID: "s-dup", SEID: se,
		Responses: []string{"9000"}}
	e.executed(ex, "ex-dup", "")
	e.executed(ex, "ex-dup", "ex-dup-again")
	e.executed(ex, "ex-dup-other", "") // a second result for a script that completed
	e.waitFor(topology.ScriptCompleted(se), 1, forScript("s-dup"))
	barrier := requested(se, "s-barrier-2", getData)
	barrier.Securing = contract.SecuringCentral
	e.request(barrier)
	e.waitFor(topology.ScriptCompleted(se), 1, forScript("s-barrier-2"))
	if got := e.matching(topology.ScriptCompleted(se), forScript("s-dup")); len(got) != 1 {
		t.Fatalf("%d completions for one script, want 1", len(got))
	}
	if got := e.matching(topology.DeadLetter("scriptrouter", topology.ScriptRouterExecuted.Name), nil); len(got) != 0 {
		t.Errorf("duplicates were dead-lettered: %d", len(got))
	}
}

func TestResultForUnknownScriptIsDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	e.executed(events.SEExecuted{ConversationID: "c", ScriptID: "s-ghost", SEID: "0A05", Responses: []string{"9000"}}, "ex-ghost", "")
	dlq := topology.DeadLetter("scriptrouter", topology.ScriptRouterExecuted.Name)
	m := e.waitFor(dlq, 1, nil)[0]
	if reason := m.Headers().Get(bus.HeaderDLQReason); !strings.Contains(reason, "s-ghost") || !strings.Contains(reason, "lost") {
		t.Errorf("reason %q: want the script id and that its state was lost", reason)
	}
	if got := e.matching(topology.ScriptCompleted("0A05"), nil); len(got) != 0 {
		t.Errorf("completed an unknown script")
	}
}

func TestUndecodableEventsAreDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	// The subject names another SE than the payload: per-SE order would break.
	e.publish(topology.ScriptRequested("0A06"), events.TypeScriptRequested, "ev-wrong-se", "", requested("0A07", "s-x", getData))
	dlq := topology.DeadLetter("scriptrouter", topology.ScriptRouterRequested.Name)
	m := e.waitFor(dlq, 1, nil)[0]
	if reason := m.Headers().Get(bus.HeaderDLQReason); !strings.Contains(reason, "0A07") {
		t.Errorf("reason %q", reason)
	}
}

func TestStepFailingItsSchemaIsAnsweredNotDropped(t *testing.T) {
	e := newEnv(t, nil)
	const se = "0A08"
	raw, err := json.Marshal(requested(se, "s-noaid", getData))
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	delete(payload, "targetAid") // required by the schema, not needed to answer
	e.publish(topology.ScriptRequested(se), events.TypeScriptRequested, "ev-noaid", "", payload)
	c := decodeCompleted(t, e.waitFor(topology.ScriptCompleted(se), 1, forScript("s-noaid"))[0])
	if r := c.Response; r.Status != contract.StatusFailed || r.Error == nil || r.Error.Code != contract.CodeInternalError {
		t.Errorf("response %s %+v, want Failed INTERNAL_ERROR", r.Status, r.Error)
	}
	if got := e.matching(topology.MNODeliver(mno, se), forScript("s-noaid")); len(got) != 0 {
		t.Errorf("a malformed step was routed")
	}
}
