package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// checkResponse asserts the attributes every response carries and that its
// body matches the published response schema.
func checkResponse(t *testing.T, h *harness, r spResponse, op, ceSubject string) {
	t.Helper()
	if r.Subject != "tsm.sp.bank-a.res."+op && !strings.HasSuffix(r.Subject, ".res."+op) {
		t.Errorf("response on %s, want res.%s", r.Subject, op)
	}
	if got := r.Header.Get("ce-type"); got != "tsm."+op+".response" {
		t.Errorf("ce-type %q", got)
	}
	if got := r.Header.Get("ce-source"); got != topology.CentralSource {
		t.Errorf("ce-source %q", got)
	}
	if got := r.Header.Get("ce-subject"); got != ceSubject {
		t.Errorf("ce-subject %q, want %q", got, ceSubject)
	}
	if typ := "tsm." + op + ".response"; h.schemas.Has(typ) {
		if err := h.schemas.Validate(typ, r.Body); err != nil {
			t.Errorf("response %s does not match its schema: %v", r.Body, err)
		}
	}
}

func wantFailure(t *testing.T, r spResponse, code contract.Code) *contract.Error {
	t.Helper()
	res := r.result(t)
	if res.Status != contract.StatusFailed || res.Error == nil || res.Error.Code != code {
		t.Fatalf("want Failed/%s, got %s", code, r.Body)
	}
	if res.Error.Message == "" {
		t.Fatalf("failure without a message: %s", r.Body)
	}
	return res.Error
}

const (
	seA = "0A0A0A0A0A0A0A0A" // active, MSISDN, mno-b, bank-a has a pre-issued SD
	seB = "0B0B0B0B0B0B0B0B" // active, MDN
	seL = "0C0C0C0C0C0C0C0C" // lost
	seX = "0D0D0D0D0D0D0D0D" // expired
)

func enrollFleet(t *testing.T, h *harness) {
	t.Helper()
	enrollBasics(t, h)
	a := seBody("+491701111111", "mno-b")
	a["preIssuedSpDomains"] = []map[string]any{{"spId": "bank-a"}}
	h.mustDo("PUT", "/v1/ses/"+strings.ToLower(seA), a, http.StatusCreated)
	b := seBody("5550100", "mno-a")
	b["msiType"] = "MDN"
	b["preIssuedSpDomains"] = []map[string]any{{"spId": "bank-a"}}
	h.mustDo("PUT", "/v1/ses/"+seB, b, http.StatusCreated)
	h.mustDo("PUT", "/v1/ses/"+seL, seBody("491703333333", "mno-a"), http.StatusCreated)
	h.mustDo("POST", "/v1/ses/"+seL+"/status", map[string]any{"status": "stolen"}, http.StatusAccepted)
	x := seBody("491704444444", "mno-a")
	x["expiresAt"] = "2020-01-01T00:00:00Z"
	h.mustDo("PUT", "/v1/ses/"+seX, x, http.StatusCreated)
}

func TestGetSEIDOverBus(t *testing.T) {
	h := startRegistry(t)
	enrollFleet(t, h)
	sp := newSP(t, h, "bank-a")

	r := sp.call(t, "get-se-id", "id-1", map[string]any{"msi": "+491701111111"})
	checkResponse(t, h, r, "get-se-id", seA)
	var got contract.GetSEIDResponse
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != contract.StatusSuccess || got.SEID != seA || got.SEIDType != "CIN" || got.MSI != "+491701111111" {
		t.Fatalf("get-se-id %s", r.Body)
	}
	if r.Header.Get("ce-correlationid") != "id-1" || r.Header.Get("ce-id") == "" || r.Header.Get("ce-id") == "id-1" {
		t.Fatalf("ids: ce-id %q correlation %q", r.Header.Get("ce-id"), r.Header.Get("ce-correlationid"))
	}

	r = sp.call(t, "get-se-id", "id-2", map[string]any{"msi": "5550100", "msiType": "MDN"})
	if err := json.Unmarshal(r.Body, &got); err != nil || got.SEID != seB {
		t.Fatalf("MDN look-up %s", r.Body)
	}

	r = sp.call(t, "get-se-id", "id-3", map[string]any{"msi": "491709999999"})
	checkResponse(t, h, r, "get-se-id", "")
	e := wantFailure(t, r, contract.CodeNotFound)
	if !strings.Contains(e.Message, "MSISDN") || strings.Contains(e.Message, "491709999999") {
		t.Fatalf("NOT_FOUND message %q: want the MSI type, not the MSI", e.Message)
	}
	// An MSI held as MSISDN is not found as an MDN.
	wantFailure(t, sp.call(t, "get-se-id", "id-4", map[string]any{"msi": "491701111111", "msiType": "MDN"}), contract.CodeNotFound)

	// A re-sent ce-id gets the original response again, with a new ce-id.
	sp.send(t, "get-se-id", "id-1", map[string]any{"msi": "+491701111111"})
	rs := sp.await(t, "id-1", 2)
	if !bytes.Equal(rs[0].Body, rs[1].Body) || rs[0].Header.Get("ce-id") == rs[1].Header.Get("ce-id") {
		t.Fatalf("re-sent request: bodies %s / %s, ce-ids %s / %s", rs[0].Body, rs[1].Body,
			rs[0].Header.Get("ce-id"), rs[1].Header.Get("ce-id"))
	}
	// Even when the SE moved meanwhile: the request is not executed again.
	h.mustDo("POST", "/v1/ses/"+seA+"/subscription", map[string]any{"msi": "491701111112"}, http.StatusOK)
	sp.send(t, "get-se-id", "id-1", map[string]any{"msi": "+491701111111"})
	rs = sp.await(t, "id-1", 3)
	if !bytes.Equal(rs[0].Body, rs[2].Body) {
		t.Fatalf("third answer %s differs from the first %s", rs[2].Body, rs[0].Body)
	}
}

func TestGetSEDataOverBus(t *testing.T) {
	h := startRegistry(t)
	enrollFleet(t, h)
	a := newSP(t, h, "bank-a")
	b := newSP(t, h, "bank-b")

	r := a.call(t, "get-se-data", "d-1", map[string]any{"seId": strings.ToLower(seA)})
	checkResponse(t, h, r, "get-se-data", seA)
	var got contract.GetSEDataResponse
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	d := got.SEData
	if got.Status != contract.StatusSuccess || got.SEID != seA || got.SEIDType != "CIN" || got.MSI != "491701111111" || d == nil ||
		d.MNO != "mno-b" || d.SEType != "eSE" || d.Configuration != "embedded" || d.ProfileID != "demo-ese" ||
		d.GPVersion != "2.3.1" || d.JavaCardVersion != "3.0.5" || d.CertificationLevel != "EAL5+" ||
		!d.ExpiresAt.Equal(time.Date(2035, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("get-se-data %s", r.Body)
	}
	wantSD := contract.SecurityDomain{AID: defaultSDAID("bank-a"), LifeCycle: "PERSONALIZED",
		KeyVersion: 48, MasterKeyIndex: 1}
	if d.SecurityDomain == nil || *d.SecurityDomain != wantSD {
		t.Fatalf("securityDomain %+v, want %+v", d.SecurityDomain, wantSD)
	}
	if !bytes.Contains(r.Body, []byte(`"services":[]`)) {
		t.Fatalf("services is not an empty list: %s", r.Body)
	}

	// Another SP sees no SD of its own; look-up by MSI.
	r = b.call(t, "get-se-data", "d-1", map[string]any{"msi": "+491701111111"})
	checkResponse(t, h, r, "get-se-data", seA)
	if !bytes.Contains(r.Body, []byte(`"securityDomain":null`)) || !bytes.Contains(r.Body, []byte(`"seId":"`+seA+`"`)) {
		t.Fatalf("bank-b get-se-data %s", r.Body)
	}
	// Both given: they must designate the same SE.
	r = a.call(t, "get-se-data", "d-2", map[string]any{"seId": seA, "msi": "491703333333"})
	checkResponse(t, h, r, "get-se-data", seA)
	if e := wantFailure(t, r, contract.CodeInvalidArgument); strings.Contains(e.Message, "491703333333") {
		t.Fatalf("message quotes the MSI: %s", e.Message)
	}
	r = a.call(t, "get-se-data", "d-3", map[string]any{"seId": seB, "msi": "5550100", "msiType": "MDN"})
	if res := r.result(t); res.Status != contract.StatusSuccess {
		t.Fatalf("MDN SE by id and msi: %s", r.Body)
	}
	wantFailure(t, a.call(t, "get-se-data", "d-4", map[string]any{"seId": "0E0E0E0E0E0E0E0E"}), contract.CodeNotFound)
	wantFailure(t, a.call(t, "get-se-data", "d-5", map[string]any{"msi": "491709999999"}), contract.CodeNotFound)
	wantFailure(t, a.call(t, "get-se-data", "d-6", map[string]any{}), contract.CodeInvalidArgument)
}

func TestMalformedRequestsAreAnswered(t *testing.T) {
	h := startRegistry(t)
	enrollFleet(t, h)
	sp := newSP(t, h, "bank-a")

	r := sp.call(t, "get-coffee", "m-1", map[string]any{"msi": "491701111111"})
	checkResponse(t, h, r, "get-coffee", "")
	if e := wantFailure(t, r, contract.CodeInvalidArgument); !strings.Contains(e.Message, "get-coffee") {
		t.Fatalf("unknown op message %q", e.Message)
	}
	wantFailure(t, sp.call(t, "get-se-id", "m-2", "this is not JSON"), contract.CodeInvalidArgument)
	wantFailure(t, sp.call(t, "get-se-id", "m-3", ""), contract.CodeInvalidArgument)
	// Schema: unknown field, wrong MSI syntax.
	wantFailure(t, sp.call(t, "get-se-id", "m-4", map[string]any{"msi": "491701111111", "colour": "red"}), contract.CodeInvalidArgument)
	wantFailure(t, sp.call(t, "get-se-id", "m-5", map[string]any{"msi": "call me"}), contract.CodeInvalidArgument)

	m := sp.requestMsg("get-se-id", "m-6", map[string]any{"msi": "491701111111"})
	m.Header.Set("ce-source", "urn:tsm:sp:bank-b")
	sp.publish(t, m)
	if e := wantFailure(t, sp.await(t, "m-6", 1)[0], contract.CodeInvalidArgument); !strings.Contains(e.Message, "urn:tsm:sp:bank-a") {
		t.Fatalf("ce-source message %q", e.Message)
	}
	m = sp.requestMsg("get-se-id", "m-7", map[string]any{"msi": "491701111111"})
	m.Header.Set("ce-type", "tsm.get-se-data.request")
	sp.publish(t, m)
	wantFailure(t, sp.await(t, "m-7", 1)[0], contract.CodeInvalidArgument)

	// No ce-id: still answered (no correlation id to give), on the op's subject.
	z := newSP(t, h, "bank-z")
	m = z.requestMsg("get-se-id", "", map[string]any{"msi": "491701111111"})
	m.Header.Del("ce-id")
	z.publish(t, m)
	r = z.awaitMatching(t, "answer to the request without ce-id", 1, func(r spResponse) bool {
		return r.Subject == "tsm.sp.bank-z.res.get-se-id"
	})[0]
	if e := wantFailure(t, r, contract.CodeInvalidArgument); !strings.Contains(e.Message, "ce-id") {
		t.Fatalf("missing ce-id message %q", e.Message)
	}

	// Service operations are checked (TestServiceOperationRefusals has them all).
	r = sp.call(t, "pre-personalize", "m-8", map[string]any{"seId": seA, "serviceId": map[string]any{"number": "pay", "version": "1"}})
	checkResponse(t, h, r, "pre-personalize", seA)
	if e := wantFailure(t, r, contract.CodeNotFound); e.Message != "service pay/1 is not in the catalog" {
		t.Fatalf("pre-personalize message %q", e.Message)
	}

	// send-script belongs to the conversation service: the registry acks it
	// and answers nothing.
	sp.send(t, "send-script", "m-10", map[string]any{"conversationId": "c-1", "commands": []string{"00A4040000"}})
	// A subject nobody can be answered on is dead-lettered with the reason.
	bad := rawRequest("tsm.sp.BANK_A.req.get-se-id", `{"msi":"491701111111"}`)
	bustest.PublishMsg(t, h.js, bad)
	bustest.EventuallyReport(t, waitTimeout, "registry consumer drained", h.requestsDrained)
	for _, r := range sp.all() {
		if strings.HasSuffix(r.Subject, ".send-script") {
			t.Fatalf("the registry answered send-script: %s", r.Body)
		}
	}
	var dlq *jetstream.RawStreamMsg
	bustest.EventuallyReport(t, waitTimeout, "dead letter of the bad subject", func() (bool, string) {
		s, err := h.js.Stream(context.Background(), "TSM_DLQ")
		if err != nil {
			return false, err.Error()
		}
		dlq, err = s.GetLastMsgForSubject(context.Background(), topology.DeadLetter("registry", "registry-requests"))
		return err == nil, fmt.Sprint(err)
	})
	if dlq.Header.Get("Tsm-Dlq-Subject") != "tsm.sp.BANK_A.req.get-se-id" || dlq.Header.Get("Tsm-Dlq-Reason") == "" {
		t.Fatalf("dead letter headers %v", dlq.Header)
	}
}

func TestBeginConversationOverBus(t *testing.T) {
	h := startRegistry(t)
	enrollFleet(t, h)
	sp := newSP(t, h, "bank-a")
	begin := func(seID, msi string) map[string]any {
		b := map[string]any{"seId": seID, "targetAid": "A000000555AA0001", "requestedOperation": "key-rotation",
			"serviceId": map[string]any{"number": "pay", "version": "1"}, "validitySeconds": 60}
		if msi != "" {
			b["msi"] = msi
		}
		return b
	}

	sp.send(t, "begin-conversation", "b-1", begin(strings.ToLower(seA), "+491701111111"))
	var msg *jetstream.RawStreamMsg
	bustest.EventuallyReport(t, waitTimeout, "ConversationBegin on TSM_STEPS", func() (bool, string) {
		s, err := h.js.Stream(context.Background(), "TSM_STEPS")
		if err != nil {
			return false, err.Error()
		}
		msg, err = s.GetLastMsgForSubject(context.Background(), topology.ConversationBegin(seA))
		return err == nil, fmt.Sprint(err)
	})
	for name, want := range map[string]string{"ce-type": events.TypeConvBegin, "ce-subject": seA,
		"ce-source": "urn:tsm:svc:registry", "ce-correlationid": "b-1"} {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if h.schemas.Has(events.TypeConvBegin) {
		if err := h.schemas.Validate(events.TypeConvBegin, msg.Data); err != nil {
			t.Errorf("ConversationBegin does not match its schema: %v", err)
		}
	}
	var cb events.ConversationBegin
	if err := json.Unmarshal(msg.Data, &cb); err != nil {
		t.Fatal(err)
	}
	if cb.Request != (events.RequestRef{SPID: "bank-a", RequestID: "b-1", Op: "begin-conversation"}) ||
		cb.Params.SEID != seA || cb.Params.TargetAID != "A000000555AA0001" || cb.Params.RequestedOperation != "key-rotation" ||
		cb.Params.ServiceID == nil || cb.Params.ServiceID.Number != "pay" || cb.SE.SEID != seA || cb.SE.MNO != "mno-b" ||
		cb.MNO.MNOID != "mno-b" || cb.MNO.OTACarrier != "sms" || cb.MNO.MaxAPDUsPerScript != 8 || cb.MNO.LatencyMs != 40 ||
		cb.ReceivedAt.IsZero() || !cb.ValidUntil.After(cb.ReceivedAt) {
		t.Fatalf("ConversationBegin %s", msg.Data)
	}

	// Refusals are answered by the registry itself.
	r := sp.call(t, "begin-conversation", "b-2", begin(seL, ""))
	checkResponse(t, h, r, "begin-conversation", seL)
	wantFailure(t, r, contract.CodeSEInaccessible)
	r = sp.call(t, "begin-conversation", "b-3", begin(seX, ""))
	if e := wantFailure(t, r, contract.CodeNotAllowed); !strings.Contains(e.Message, "the SE expired at 2020-01-01T00:00:00Z") {
		t.Fatalf("expired message %q", e.Message)
	}
	wantFailure(t, sp.call(t, "begin-conversation", "b-4", begin(seA, "491703333333")), contract.CodeInvalidArgument)
	wantFailure(t, sp.call(t, "begin-conversation", "b-5", begin("0E0E0E0E0E0E0E0E", "")), contract.CodeNotFound)
	wantFailure(t, sp.call(t, "begin-conversation", "b-6", map[string]any{"seId": seA}), contract.CodeInvalidArgument)
	// The MDN SE, with its MDN given (begin-conversation has no msiType).
	sp.send(t, "begin-conversation", "b-7", begin(seB, "5550100"))
	// A re-sent refused request gets the same refusal.
	sp.send(t, "begin-conversation", "b-2", begin(seL, ""))
	rs := sp.await(t, "b-2", 2)
	if !bytes.Equal(rs[0].Body, rs[1].Body) {
		t.Fatalf("re-sent refusal %s differs from %s", rs[1].Body, rs[0].Body)
	}

	bustest.EventuallyReport(t, waitTimeout, "registry consumer drained", h.requestsDrained)
	bustest.EventuallyReport(t, waitTimeout, "ConversationBegin of the MDN SE", func() (bool, string) {
		n := bustest.CountMessages(t, h.js, "TSM_STEPS", topology.ConversationBegin(seB))
		return n == 1, fmt.Sprint(n)
	})
	for subject, want := range map[string]int{topology.ConversationBegin(seA): 1, "tsm.conv.*.begin": 2} {
		if n := bustest.CountMessages(t, h.js, "TSM_STEPS", subject); n != want {
			t.Errorf("%s: %d messages, want exactly %d", subject, n, want)
		}
	}
	for _, r := range sp.all() {
		if id := r.Header.Get("ce-correlationid"); id == "b-1" || id == "b-7" {
			t.Errorf("the registry answered the accepted begin %s itself: %s", id, r.Body)
		}
	}
}
