package service_test

import (
	"encoding/hex"
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
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

const (
	seGood  = "0E0E0E0E0E0E0E01" // eSE, embedded, GP 2.3.1, EAL5+: eligible for pay/1
	seOldGP = "0E0E0E0E0E0E0E02" // GP 2.1.1
	seLost  = "0E0E0E0E0E0E0E03" // stolen
	seExp   = "0E0E0E0E0E0E0E04" // expired
)

// enrollCatalog enrolls MNOs, SPs bank-a and bank-b, the services and the SEs
// of the content tests.
func enrollCatalog(t *testing.T, h *harness) {
	t.Helper()
	enrollBasics(t, h)
	svc := func(sp string, extra map[string]any) map[string]any {
		b := map[string]any{"spId": sp, "elfAid": "A00000055501", "moduleAid": "A0000005550101", "instanceAid": "A000000555010101"}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	h.mustDo("PUT", "/v1/services/pay/1", svc("bank-a", nil), http.StatusCreated)
	h.mustDo("PUT", "/v1/services/other/1", svc("bank-b", nil), http.StatusCreated)
	h.mustDo("PUT", "/v1/services/p-type/1", svc("bank-a", map[string]any{"seTypes": []string{"UICC"}}), http.StatusCreated)
	h.mustDo("PUT", "/v1/services/p-conf/1", svc("bank-a", map[string]any{"configurations": []string{"uicc", "uicc-3p"}}), http.StatusCreated)
	h.mustDo("PUT", "/v1/services/p-gp/1", svc("bank-a", map[string]any{"minGpVersion": "2.3.2"}), http.StatusCreated)
	h.mustDo("PUT", "/v1/services/p-cert/1", svc("bank-a", map[string]any{"certificationLevels": []string{"EMVCo"}}), http.StatusCreated)
	// All requirements met: eSE, embedded, GP 2.3.1 >= 2.3, EAL5+.
	h.mustDo("PUT", "/v1/services/p-all/1", svc("bank-a", map[string]any{"seTypes": []string{"eSE"},
		"configurations": []string{"embedded"}, "minGpVersion": "2.3", "certificationLevels": []string{"EAL5+"}}), http.StatusCreated)
	h.mustDo("PUT", "/v1/ses/"+seGood, seBody("491702000001", "mno-a"), http.StatusCreated)
	old := seBody("491702000002", "mno-a")
	old["gpVersion"] = "2.1.1"
	h.mustDo("PUT", "/v1/ses/"+seOldGP, old, http.StatusCreated)
	h.mustDo("PUT", "/v1/ses/"+seLost, seBody("491702000003", "mno-a"), http.StatusCreated)
	h.mustDo("POST", "/v1/ses/"+seLost+"/status", map[string]any{"status": "stolen"}, http.StatusAccepted)
	exp := seBody("491702000004", "mno-a")
	exp["expiresAt"] = "2021-05-01T00:00:00Z"
	h.mustDo("PUT", "/v1/ses/"+seExp, exp, http.StatusCreated)
}

func serviceReq(seID, number string) map[string]any {
	return map[string]any{"seId": seID, "serviceId": map[string]any{"number": number, "version": "1"}}
}

// procedures returns the ProcedureRequested events on the SE's procedure
// subject, in stream order, once there are n of them.
func procedures(t *testing.T, h *harness, seID string, n int) []events.ProcedureRequested {
	t.Helper()
	subject := topology.ConversationProcedure(seID)
	var msgs []jetstream.Msg
	bustest.EventuallyReport(t, waitTimeout, fmt.Sprintf("%d procedures on %s", n, subject), func() (bool, string) {
		c := bustest.CountMessages(t, h.js, "TSM_STEPS", subject)
		return c >= n, fmt.Sprint(c)
	})
	msgs = bustest.Collect(t, h.js, "TSM_STEPS", subject)
	if len(msgs) != n {
		t.Fatalf("%s: %d procedures, want %d", subject, len(msgs), n)
	}
	out := make([]events.ProcedureRequested, n)
	for i, m := range msgs {
		hd := m.Headers()
		if hd.Get("ce-type") != events.TypeProcedureRequested || hd.Get("ce-subject") != seID ||
			hd.Get("ce-source") != "urn:tsm:svc:registry" {
			t.Fatalf("procedure %d headers %v", i, hd)
		}
		if err := h.schemas.Validate(events.TypeProcedureRequested, m.Data()); err != nil {
			t.Fatalf("procedure %s does not match its schema: %v", m.Data(), err)
		}
		if err := json.Unmarshal(m.Data(), &out[i]); err != nil {
			t.Fatal(err)
		}
		if got := hd.Get("ce-correlationid"); got != out[i].Request.RequestID {
			t.Fatalf("ce-correlationid %q, request id %q", got, out[i].Request.RequestID)
		}
	}
	return out
}

// publishContent publishes a ContentChanged as the conversation service does.
func publishContent(t *testing.T, h *harness, c events.ContentChanged) {
	t.Helper()
	if err := h.schemas.Validate(events.TypeContentChanged, mustJSON(t, c)); err != nil {
		t.Fatalf("test content change does not match its schema: %v", err)
	}
	bustest.Publish(t, h.js, topology.ContentChanged(c.SEID), bustest.Event{Source: "urn:tsm:svc:conversation",
		Type: events.TypeContentChanged, Subject: c.SEID, Data: c})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seData asks get-se-data as sp.
func seData(t *testing.T, sp *spTester, id, seID string) *contract.SEData {
	t.Helper()
	r := sp.call(t, "get-se-data", id, map[string]any{"seId": seID})
	var got contract.GetSEDataResponse
	if err := json.Unmarshal(r.Body, &got); err != nil || got.Status != contract.StatusSuccess || got.SEData == nil {
		t.Fatalf("get-se-data %s: %v", r.Body, err)
	}
	return got.SEData
}

func TestServiceOperationRefusals(t *testing.T) {
	h := startRegistry(t)
	enrollCatalog(t, h)
	sp := newSP(t, h, "bank-a")

	n := 0
	refuse := func(op string, body map[string]any, code contract.Code, msgParts ...string) {
		t.Helper()
		n++
		id := fmt.Sprintf("r-%d", n)
		r := sp.call(t, op, id, body)
		seID, _ := body["seId"].(string)
		if code == contract.CodeInvalidArgument {
			seID = "" // the schema check answers before the SE is looked at
		}
		checkResponse(t, h, r, op, strings.ToUpper(seID))
		e := wantFailure(t, r, code)
		for _, p := range msgParts {
			if !strings.Contains(e.Message, p) {
				t.Errorf("%s %s: message %q does not say %q", op, id, e.Message, p)
			}
		}
	}
	refuse("pre-personalize", map[string]any{"seId": seGood}, contract.CodeInvalidArgument, "serviceId")
	refuse("activate-service", map[string]any{"seId": seGood, "serviceId": map[string]any{"number": "pay"}},
		contract.CodeInvalidArgument, "version")
	refuse("suspend-service", map[string]any{"serviceId": map[string]any{"number": "pay", "version": "1"}},
		contract.CodeInvalidArgument, "seId")
	refuse("pre-personalize", serviceReq("0E0E0E0E0E0E0E99", "pay"), contract.CodeNotFound, "no SE 0E0E0E0E0E0E0E99")
	refuse("pre-personalize", serviceReq(seGood, "nope"), contract.CodeNotFound, "service nope/1 is not in the catalog")
	refuse("terminate-service", serviceReq(seGood, "other"), contract.CodeNotAllowed, "service other/1 belongs to another SP")
	for _, op := range []string{"pre-personalize", "activate-service", "resume-service"} {
		refuse(op, serviceReq(seLost, "pay"), contract.CodeNotAllowed, "SE "+seLost+" is reported stolen")
	}
	refuse("pre-personalize", serviceReq(seExp, "pay"), contract.CodeNoEligibleSE, "expired at 2021-05-01T00:00:00Z")
	refuse("pre-personalize", serviceReq(seOldGP, "pay"), contract.CodeNoEligibleSE, "GP 2.1.1", "GP 2.2 or later")
	refuse("pre-personalize", serviceReq(seGood, "p-type"), contract.CodeNoEligibleSE, "requires an SE of type UICC")
	refuse("pre-personalize", serviceReq(seGood, "p-conf"), contract.CodeNoEligibleSE, "requires configuration uicc or uicc-3p")
	refuse("pre-personalize", serviceReq(seGood, "p-gp"), contract.CodeNoEligibleSE, "requires GP 2.3.2 or later")
	refuse("pre-personalize", serviceReq(seGood, "p-cert"), contract.CodeNoEligibleSE, "requires certification level EMVCo")

	// Deployed per the content model: ALREADY_EXISTS naming the state; an
	// in-error instance may be pre-personalized again.
	publishContent(t, h, events.ContentChanged{SEID: seGood, SPID: "bank-a", ChangedAt: time.Now().UTC(),
		Services: []events.InstanceContent{{ServiceID: contract.ServiceID{Number: "pay", Version: "1"},
			InstanceAID: "A000000555010101", State: contract.StatePersonalized}}})
	bustest.Eventually(t, waitTimeout, "content applied", func() bool {
		return len(seData(t, sp, bus1ID(), seGood).Services) == 1
	})
	refuse("pre-personalize", serviceReq(seGood, "pay"), contract.CodeAlreadyExists, "already deployed", "personalized")

	// None of the refusals reached the conversation service; the stolen SE's
	// lock-se is the only procedure.
	bustest.EventuallyReport(t, waitTimeout, "registry consumer drained", h.requestsDrained)
	if c := bustest.CountMessages(t, h.js, "TSM_STEPS", "tsm.conv.*.procedure"); c != 1 {
		t.Fatalf("%d procedures requested, want only the lock-se of the stolen SE", c)
	}
	// Operations that stay allowed on a stolen SE.
	sp.send(t, "suspend-service", "ok-1", serviceReq(seLost, "pay"))
	sp.send(t, "get-service-state", "ok-2", serviceReq(seLost, "pay"))
	ps := procedures(t, h, seLost, 3)
	if ps[1].Kind != "suspend-service" || ps[2].Kind != "get-service-state" {
		t.Fatalf("procedures on the stolen SE: %+v", ps)
	}
}

var bus1Counter int

// bus1ID is a fresh request id for polling look-ups.
func bus1ID() string {
	bus1Counter++
	return fmt.Sprintf("poll-%d", bus1Counter)
}

func TestPrePersonalizeRequestsProcedure(t *testing.T) {
	h := startRegistry(t)
	enrollCatalog(t, h)
	a := newSP(t, h, "bank-a")
	b := newSP(t, h, "bank-b")

	// bank-b has nothing on seGood: no conversation there.
	begin := map[string]any{"seId": seGood, "targetAid": "A000000555AA0001", "requestedOperation": "other",
		"serviceId": map[string]any{"number": "pay", "version": "1"}}
	r := b.call(t, "begin-conversation", "c-1", begin)
	if e := wantFailure(t, r, contract.CodeNotAllowed); !strings.Contains(e.Message, "bank-b has no security domain") {
		t.Fatalf("gating message %q", e.Message)
	}
	r = a.call(t, "begin-conversation", "c-1", begin)
	wantFailure(t, r, contract.CodeNotAllowed)

	req := serviceReq(strings.ToLower(seGood), "p-all")
	req["serviceQualifier"] = map[string]any{"spName": "Bank A", "prn": "42"}
	req["validitySeconds"] = 120
	a.send(t, "pre-personalize", "pp-1", req)
	p := procedures(t, h, seGood, 1)[0]
	if p.Request != (events.RequestRef{SPID: "bank-a", RequestID: "pp-1", Op: "pre-personalize"}) ||
		p.Kind != events.ProcedurePrePersonalize || p.SE.SEID != seGood || p.SE.MNO != "mno-a" || p.MNO.MNOID != "mno-a" ||
		p.MNO.OTACarrier != "https" || p.Service == nil || p.Service.Number != "p-all" || p.Service.SPID != "bank-a" ||
		p.Service.InstanceAID != "A000000555010101" || len(p.Service.SETypes) != 1 || p.Service.MinGPVersion != "2.3" ||
		p.ServiceQualifier == nil || p.ServiceQualifier.PRN != "42" ||
		p.SecurityDomainAID != defaultSDAID("bank-a") || p.SEStatus != "" || p.ReceivedAt.IsZero() ||
		!p.ValidUntil.After(p.ReceivedAt) {
		t.Fatalf("ProcedureRequested %+v", p)
	}
	// The registry does not answer an accepted operation itself.
	bustest.EventuallyReport(t, waitTimeout, "registry consumer drained", h.requestsDrained)
	for _, r := range a.all() {
		if r.Header.Get("ce-correlationid") == "pp-1" {
			t.Fatalf("the registry answered the accepted pre-personalize: %s", r.Body)
		}
	}
	// A service is being deployed: bank-a may now open conversations there.
	a.send(t, "begin-conversation", "c-2", begin)
	bustest.EventuallyReport(t, waitTimeout, "ConversationBegin of bank-a", func() (bool, string) {
		c := bustest.CountMessages(t, h.js, "TSM_STEPS", topology.ConversationBegin(seGood))
		return c == 1, fmt.Sprint(c)
	})
	var se struct {
		Content []struct {
			SPID      string `json:"spId"`
			Deploying bool   `json:"deploying"`
		} `json:"content"`
	}
	h.mustDo("GET", "/v1/ses/"+seGood, nil, http.StatusOK).decode(t, &se)
	if len(se.Content) != 1 || se.Content[0].SPID != "bank-a" || !se.Content[0].Deploying {
		t.Fatalf("content while deploying %+v", se.Content)
	}

	// The other service operations are passed on without the eligibility
	// checks (a re-sent ce-id is passed on again: the conversation service
	// answers it once).
	a.send(t, "activate-service", "act-1", serviceReq(seOldGP, "pay"))
	a.send(t, "activate-service", "act-1", serviceReq(seOldGP, "pay"))
	ps := procedures(t, h, seOldGP, 2)
	if ps[0].Kind != "activate-service" || ps[0].Request.RequestID != "act-1" || ps[1].Request != ps[0].Request {
		t.Fatalf("activate procedures %+v", ps)
	}
}

func TestContentModelInLookups(t *testing.T) {
	h := startRegistry(t)
	enrollCatalog(t, h)
	// seShared: bank-a has a pre-issued SD.
	const seShared = "0E0E0E0E0E0E0E05"
	body := seBody("491702000005", "mno-b")
	body["preIssuedSpDomains"] = []map[string]any{{"spId": "bank-a"}}
	h.mustDo("PUT", "/v1/ses/"+seShared, body, http.StatusCreated)
	a := newSP(t, h, "bank-a")
	b := newSP(t, h, "bank-b")

	// Before any content: the pre-issued SD, no services.
	d := seData(t, a, "d-1", seShared)
	if d.SecurityDomain == nil || d.SecurityDomain.LifeCycle != "PERSONALIZED" || d.SecurityDomain.MasterKeyIndex != 1 ||
		len(d.Services) != 0 {
		t.Fatalf("before content: %+v", d)
	}
	at := time.Now().UTC().Truncate(time.Second)
	// bank-b: pre-personalize created its SD (temporary keys) and instance.
	publishContent(t, h, events.ContentChanged{SEID: seShared, SPID: "bank-b", ChangedAt: at,
		SecurityDomain: &events.SDContent{AID: "A0000005550B0B0B", LifeCycle: "PERSONALIZED", KeyVersion: 0x30,
			KeysHeldBy: events.KeysHeldByCentral, CreatedByCentral: true},
		Services: []events.InstanceContent{{ServiceID: contract.ServiceID{Number: "other", Version: "1"},
			InstanceAID: "A000000555010102", State: contract.StateInstalled}}})
	// bank-a: its pre-issued SD, rotated to key version 0x31, with an active instance.
	publishContent(t, h, events.ContentChanged{SEID: seShared, SPID: "bank-a", ChangedAt: at,
		SecurityDomain: &events.SDContent{AID: defaultSDAID("bank-a"), LifeCycle: "PERSONALIZED", KeyVersion: 0x31,
			KeysHeldBy: events.KeysHeldBySP},
		Services: []events.InstanceContent{{ServiceID: contract.ServiceID{Number: "pay", Version: "1"},
			InstanceAID: "A000000555010101", State: contract.StateActive}}})
	// An audit of the card.
	publishContent(t, h, events.ContentChanged{SEID: seShared, ChangedAt: at, Services: []events.InstanceContent{},
		Audit: &events.CardAudit{ProcedureID: "op-audit-1", AuditedAt: at, Entries: []events.CardEntry{
			{AID: "A000000151000000", Kind: "isd", LifeCycle: "0x0F"},
			{AID: "A000000555010101", Kind: "app", LifeCycle: "0x07", SecurityDomain: defaultSDAID("bank-a")}}}})

	bustest.Eventually(t, waitTimeout, "bank-a's content in get-se-data", func() bool {
		d = seData(t, a, bus1ID(), seShared)
		return d.SecurityDomain != nil && d.SecurityDomain.KeyVersion == 0x31
	})
	wantSD := contract.SecurityDomain{AID: defaultSDAID("bank-a"), LifeCycle: "PERSONALIZED", KeyVersion: 0x31, MasterKeyIndex: 1}
	if *d.SecurityDomain != wantSD || len(d.Services) != 1 || d.Services[0] != (contract.ServiceInstance{
		ServiceID: contract.ServiceID{Number: "pay", Version: "1"}, InstanceAID: "A000000555010101", State: "active"}) {
		t.Fatalf("bank-a get-se-data: %+v %+v", d.SecurityDomain, d.Services)
	}
	bustest.Eventually(t, waitTimeout, "bank-b's content in get-se-data", func() bool {
		d = seData(t, b, bus1ID(), seShared)
		return d.SecurityDomain != nil
	})
	wantSD = contract.SecurityDomain{AID: "A0000005550B0B0B", LifeCycle: "PERSONALIZED", KeyVersion: 0x30, MasterKeyIndex: 0}
	if *d.SecurityDomain != wantSD || len(d.Services) != 1 || d.Services[0].InstanceAID != "A000000555010102" ||
		d.Services[0].State != "installed" {
		t.Fatalf("bank-b get-se-data: %+v %+v", d.SecurityDomain, d.Services)
	}

	var se struct {
		events.SERecord
		Content []struct {
			SPID           string                   `json:"spId"`
			SecurityDomain *events.SDContent        `json:"securityDomain"`
			Services       []events.InstanceContent `json:"services"`
		} `json:"content"`
		Audit *events.CardAudit `json:"audit"`
	}
	bustest.Eventually(t, waitTimeout, "audit in GET /v1/ses", func() bool {
		h.mustDo("GET", "/v1/ses/"+strings.ToLower(seShared), nil, http.StatusOK).decode(t, &se)
		return se.Audit != nil
	})
	if se.SEID != seShared || len(se.Content) != 2 || se.Content[0].SPID != "bank-a" || se.Content[1].SPID != "bank-b" ||
		se.Content[0].SecurityDomain.KeysHeldBy != "sp" || !se.Content[1].SecurityDomain.CreatedByCentral ||
		se.Content[1].Services[0].State != "installed" || se.Audit.ProcedureID != "op-audit-1" || len(se.Audit.Entries) != 2 {
		t.Fatalf("GET /v1/ses/%s: %+v", seShared, se)
	}
	// The same by MSI.
	h.mustDo("GET", "/v1/ses?msi=491702000005", nil, http.StatusOK).decode(t, &se)
	if len(se.Content) != 2 || se.Audit == nil {
		t.Fatalf("GET /v1/ses?msi: %+v", se)
	}

	// terminate-service removed bank-b's instance and SD: it is gone from
	// get-se-data, and bank-b may no longer open conversations there.
	publishContent(t, h, events.ContentChanged{SEID: seShared, SPID: "bank-b", ChangedAt: at.Add(time.Second),
		Services: []events.InstanceContent{}})
	bustest.Eventually(t, waitTimeout, "bank-b's content removed", func() bool {
		d = seData(t, b, bus1ID(), seShared)
		return d.SecurityDomain == nil && len(d.Services) == 0
	})
	r := b.call(t, "begin-conversation", "c-1", map[string]any{"seId": seShared, "targetAid": "A0000005550B0B0B",
		"requestedOperation": "other", "serviceId": map[string]any{"number": "other", "version": "1"}})
	wantFailure(t, r, contract.CodeNotAllowed)
}

func TestSEStatusAndAuditProcedures(t *testing.T) {
	h := startRegistry(t)
	enrollCatalog(t, h)
	type opAnswer struct {
		OperationID string `json:"operationId"`
		Status      string `json:"status"`
	}
	var op opAnswer
	h.mustDo("POST", "/v1/ses/"+seGood+"/status", map[string]any{"status": "lost"}, http.StatusAccepted).decode(t, &op)
	if op.Status != "lost" || op.OperationID == "" {
		t.Fatalf("lost: %+v", op)
	}
	h.lastRecord("tsm.reg.se."+seGood, func(m *jetstream.RawStreamMsg) bool {
		return strings.Contains(string(m.Data), `"status":"lost"`)
	})
	p := procedures(t, h, seGood, 1)[0]
	if p.Kind != events.ProcedureLockSE || p.Request != (events.RequestRef{RequestID: op.OperationID, Op: events.OpSEStatus}) ||
		p.SEStatus != "lost" || p.SE.Status != "lost" || p.MNO.MNOID != "mno-a" || p.Service != nil {
		t.Fatalf("lock-se %+v", p)
	}
	// Lost again: nothing changes.
	var again opAnswer
	h.mustDo("POST", "/v1/ses/"+seGood+"/status", map[string]any{"status": "lost"}, http.StatusOK).decode(t, &again)
	if again.OperationID != "" || again.Status != "lost" {
		t.Fatalf("lost again: %+v", again)
	}
	var found opAnswer
	h.mustDo("POST", "/v1/ses/"+seGood+"/status", map[string]any{"status": "found"}, http.StatusAccepted).decode(t, &found)
	ps := procedures(t, h, seGood, 2)
	if ps[1].Kind != events.ProcedureUnlockSE || ps[1].Request.RequestID != found.OperationID || ps[1].SEStatus != "found" ||
		found.OperationID == op.OperationID {
		t.Fatalf("unlock-se %+v (answer %+v)", ps[1], found)
	}
	// Found on an SE that is not lost or stolen.
	pr := wantProblem(t, h.do("POST", "/v1/ses/"+seGood+"/status", map[string]any{"status": "found"}), http.StatusConflict,
		"urn:tsm:problem:not-allowed")
	if !strings.Contains(pr.Detail, "not lost or stolen") {
		t.Fatalf("found twice: %q", pr.Detail)
	}
	wantProblem(t, h.do("POST", "/v1/ses/0E0E0E0E0E0E0E99/status", map[string]any{"status": "lost"}), http.StatusNotFound,
		"urn:tsm:problem:not-found")

	// Audit: with {} or without a body.
	var audit opAnswer
	h.mustDo("POST", "/v1/ses/"+seGood+"/audit", map[string]any{}, http.StatusAccepted).decode(t, &audit)
	h.mustDo("POST", "/v1/ses/"+seGood+"/audit", nil, http.StatusAccepted)
	ps = procedures(t, h, seGood, 4)
	if audit.OperationID == "" || ps[2].Kind != events.ProcedureAudit ||
		ps[2].Request != (events.RequestRef{RequestID: audit.OperationID, Op: events.OpAudit}) {
		t.Fatalf("audit %+v (answer %+v)", ps[2], audit)
	}
	wantProblem(t, h.do("POST", "/v1/ses/"+seGood+"/audit", map[string]any{"deep": true}), http.StatusBadRequest,
		"urn:tsm:problem:malformed-body")
	wantProblem(t, h.do("POST", "/v1/ses/0E0E0E0E0E0E0E99/audit", nil), http.StatusNotFound, "urn:tsm:problem:not-found")
}

func TestSubscriptionChangeNotifiesSPsOnTheSE(t *testing.T) {
	h := startRegistry(t)
	enrollCatalog(t, h)
	h.mustDo("PUT", "/v1/sps/bank-c", map[string]any{"name": "Bank C", "keyTransportKey": bankAKey}, http.StatusCreated)
	h.mustDo("PUT", "/v1/sps/bank-d", map[string]any{"name": "Bank D", "keyTransportKey": bankAKey}, http.StatusCreated)
	const seSub = "0E0E0E0E0E0E0E06"
	body := seBody("491702000006", "mno-a")
	body["preIssuedSpDomains"] = []map[string]any{{"spId": "bank-a"}}
	h.mustDo("PUT", "/v1/ses/"+seSub, body, http.StatusCreated)
	// bank-b has an instance on seSub (content model); bank-d only on seGood;
	// bank-c nothing anywhere.
	at := time.Now().UTC()
	publishContent(t, h, events.ContentChanged{SEID: seSub, SPID: "bank-b", ChangedAt: at,
		Services: []events.InstanceContent{{ServiceID: contract.ServiceID{Number: "other", Version: "1"},
			InstanceAID: "A000000555010102", State: contract.StateSuspended}}})
	publishContent(t, h, events.ContentChanged{SEID: seGood, SPID: "bank-d", ChangedAt: at,
		SecurityDomain: &events.SDContent{AID: "A000000555AADDDD", LifeCycle: "PERSONALIZED", KeyVersion: 0x30,
			KeysHeldBy: "central", CreatedByCentral: true}, Services: []events.InstanceContent{}})
	bustest.EventuallyReport(t, waitTimeout, "content consumer drained", func() (bool, string) {
		return consumerDrained(t, h, "TSM_STEPS", topology.RegistryContent.Name)
	})

	rec := bustest.Record(t, h.js, "TSM_RES", "tsm.sp.*.ntf.>")
	h.mustDo("POST", "/v1/ses/"+seSub+"/subscription", map[string]any{"msi": "+491702000066", "mno": "mno-b"}, http.StatusOK)
	msgs := rec.Wait(t, waitTimeout, "msi-changed notifications", 2, nil)
	got := map[string]contract.MSIChanged{}
	for _, m := range msgs {
		hd := m.Headers()
		if hd.Get("ce-type") != "tsm.msi-changed.notification" || hd.Get("ce-source") != "urn:tsm:central" ||
			hd.Get("ce-subject") != seSub {
			t.Fatalf("notification headers %v", hd)
		}
		if err := h.schemas.Validate("tsm.msi-changed.notification", m.Data()); err != nil {
			t.Fatalf("notification %s does not match its schema: %v", m.Data(), err)
		}
		var n contract.MSIChanged
		if err := json.Unmarshal(m.Data(), &n); err != nil {
			t.Fatal(err)
		}
		if m.Subject() != "tsm.sp."+n.SPID+".ntf.msi-changed" {
			t.Fatalf("notification for %s on %s", n.SPID, m.Subject())
		}
		got[n.SPID] = n
	}
	for _, sp := range []string{"bank-a", "bank-b"} {
		n, ok := got[sp]
		if !ok || n.SEID != seSub || n.MSI != "491702000066" || n.MSIType != "MSISDN" || n.MNO != "mno-b" || n.ChangedAt.IsZero() {
			t.Fatalf("notification of %s: %+v (all: %+v)", sp, n, got)
		}
	}
	// Exactly those two: an unchanged subscription notifies nobody.
	h.mustDo("POST", "/v1/ses/"+seSub+"/subscription", map[string]any{"msi": "491702000066"}, http.StatusOK)
	h.mustDo("POST", "/v1/ses/"+seGood+"/audit", nil, http.StatusAccepted)
	procedures(t, h, seGood, 1)
	if c := bustest.CountMessages(t, h.js, "TSM_RES", "tsm.sp.*.ntf.>"); c != 2 {
		t.Fatalf("%d notifications, want 2", c)
	}
}

// consumerDrained reports whether a durable consumer acknowledged
// everything its stream holds for it.
func consumerDrained(t *testing.T, h *harness, stream, name string) (bool, string) {
	t.Helper()
	c, err := h.js.Consumer(t.Context(), stream, name)
	if err != nil {
		return false, err.Error()
	}
	info, err := c.Info(t.Context())
	if err != nil {
		return false, err.Error()
	}
	return info.NumPending == 0 && info.NumAckPending == 0,
		fmt.Sprintf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
}

func TestSPRecordsRepublishedUnderANewExchangeKey(t *testing.T) {
	h := startRegistry(t)
	key := "00112233445566778899aabbccddeeff"
	h.mustDo("PUT", "/v1/sps/bank-r", map[string]any{"name": "Bank R", "keyTransportKey": key}, http.StatusCreated)
	first := h.lastRecord("tsm.reg.sp.bank-r", nil)
	other := make([]byte, 16)
	for i := range other {
		other[i] = byte(0xA0 + i)
	}
	h2 := h.restart(withExchangeKey(other))
	m := h2.lastRecord("tsm.reg.sp.bank-r", func(m *jetstream.RawStreamMsg) bool { return m.Sequence > first.Sequence })
	var rec events.SPRecord
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		t.Fatal(err)
	}
	k, err := keycustody.UnwrapTransportKey(other, rec.KeyTransportKeyWrapped)
	if err != nil || hex.EncodeToString(k) != key {
		t.Fatalf("republished record does not carry the key wrapped under the new key-exchange key: %v", err)
	}
	if strings.Contains(strings.ToLower(string(m.Data)), key) {
		t.Fatal("the SP record carries the key in clear")
	}
	// A PUT of the same SP changes nothing now.
	h2.mustDo("PUT", "/v1/sps/bank-r", map[string]any{"name": "Bank R", "keyTransportKey": key}, http.StatusOK)
}
