package service_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// The test plays the registry (ProcedureRequested) and the script router
// (ScriptCompleted for each procedure step) around the real service.

const (
	bankSD   = "A000000555AA01"
	bankApp  = "A000000555010101"
	isdAID   = "A000000151000000"
	wrapped  = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF0011223344556677"
	bankOpID = "op-1"
)

var bankService = contract.ServiceID{Number: "1", Version: "1"}

func seRecord(seID string) events.SERecord {
	now := time.Now().UTC()
	return events.SERecord{SEID: seID, MSI: "4915100000001", MSIType: "MSISDN", MNO: mnoHTTPS.MNOID, SEType: "eSE",
		Configuration: "embedded", ProfileID: "p1", GPVersion: "2.3.1", JavaCardVersion: "3.0.5",
		CertificationLevel: "EAL5+", ExpiresAt: now.AddDate(5, 0, 0), Status: "active", UpdatedAt: now}
}

// spProcedure is the registry's ProcedureRequested for an SP request.
func spProcedure(sp, requestID, kind, seID string, validUntil time.Time) events.ProcedureRequested {
	return events.ProcedureRequested{
		Request: events.RequestRef{SPID: sp, RequestID: requestID, Op: kind}, Kind: kind, SE: seRecord(seID), MNO: mnoHTTPS,
		Service: &events.ServiceRecord{Number: "1", Version: "1", SPID: sp, ELFAID: "A00000055501", ModuleAID: "A0000005550101",
			InstanceAID: bankApp},
		SecurityDomainAID: bankSD, ReceivedAt: time.Now().UTC(), ValidUntil: validUntil,
	}
}

// operatorProcedure is the registry's ProcedureRequested of an operator operation.
func operatorProcedure(opID, kind, seID, status string) events.ProcedureRequested {
	op := events.OpSEStatus
	if kind == events.ProcedureAudit {
		op = events.OpAudit
	}
	return events.ProcedureRequested{Request: events.RequestRef{RequestID: opID, Op: op}, Kind: kind, SE: seRecord(seID),
		MNO: mnoHTTPS, SEStatus: status, ReceivedAt: time.Now().UTC()}
}

func (h *harness) procedure(ev events.ProcedureRequested) {
	h.t.Helper()
	if h.schemas.Has(events.TypeProcedureRequested) {
		if err := h.schemas.Validate(events.TypeProcedureRequested, mustJSON(h.t, ev)); err != nil {
			h.t.Fatalf("test event does not match its schema: %v", err)
		}
	}
	bustest.Publish(h.t, h.js, topology.ConversationProcedure(ev.SE.SEID), bustest.Event{Source: "urn:tsm:svc:registry",
		Type: events.TypeProcedureRequested, Subject: ev.SE.SEID, Correlation: ev.Request.RequestID, Data: ev})
}

func okResponses(n int) contract.SendScriptResponse {
	r := contract.SendScriptResponse{Result: contract.Success(), Failed: []contract.ScriptFailure{}}
	for i := 0; i < n; i++ {
		r.Responses = append(r.Responses, "9000")
	}
	return r
}

// completeStep answers a procedure step as the script router does.
func (h *harness) completeStep(s events.ScriptRequested, resp contract.SendScriptResponse, keys *contract.TemporaryKeys) {
	h.t.Helper()
	h.publishStep(topology.ScriptCompleted(s.SEID), events.TypeScriptCompleted, "urn:tsm:svc:scriptrouter", s.SEID,
		s.Request.RequestID, events.ScriptCompleted{Request: s.Request, ConversationID: s.ConversationID,
			ScriptID: s.ScriptID, SEID: s.SEID, Response: resp, TemporaryKeys: keys})
}

var tempKeys = &contract.TemporaryKeys{KeyVersion: 0x30, Algorithm: contract.TemporaryKeyAlgorithm, Wrapped: wrapped}

// step waits for the n-th script request and checks it is the procedure step.
func (h *harness) step(n int, step string) events.ScriptRequested {
	h.t.Helper()
	_, s := h.scriptRequest(n)
	if s.Procedure == nil || s.Procedure.Step != step || s.Securing != contract.SecuringCentral ||
		s.TargetAID != isdAID || s.Procedure.SecurityDomainAID != isdAID || s.ConversationID != s.Procedure.ProcedureID ||
		s.MNO != mnoHTTPS.MNOID {
		h.t.Fatalf("script request %d: %+v (procedure %+v), want step %s through the ISD", n, s, s.Procedure, step)
	}
	return s
}

// notificationsTo lists the notifications sent to sp so far, as kind:state.
func (h *harness) notificationsTo(sp string) []string {
	var out []string
	for _, m := range h.res.Messages() {
		if !strings.HasPrefix(m.Subject(), "tsm.sp."+sp+".ntf.") {
			continue
		}
		var body struct{ State, Status string }
		_ = json.Unmarshal(m.Data(), &body)
		out = append(out, strings.TrimPrefix(m.Subject(), "tsm.sp."+sp+".ntf.")+":"+body.State+body.Status)
	}
	return out
}

func (h *harness) waitNotifications(sp string, want ...string) {
	h.t.Helper()
	bustest.EventuallyReport(h.t, waitLimit, "notifications to "+sp, func() (bool, string) {
		got := h.notificationsTo(sp)
		return strings.Join(got, " ") == strings.Join(want, " "), strings.Join(got, " ")
	})
}

// prePersonalizeOK runs a successful pre-personalize (both steps) for bank.
func (h *harness) prePersonalizeOK(requestID, seID string, firstScript int) contract.PrePersonalizeResponse {
	h.t.Helper()
	h.procedure(spProcedure("bank", requestID, events.ProcedurePrePersonalize, seID, time.Time{}))
	s1 := h.step(firstScript, "create-sd")
	if tk := s1.Procedure.TemporaryKeys; tk == nil || tk.SPID != "bank" || tk.SecurityDomainAID != bankSD || tk.KeyVersion != 0x30 {
		h.t.Fatalf("create-sd asks for temporary keys %+v", tk)
	}
	h.completeStep(s1, okResponses(3), tempKeys)
	s2 := h.step(firstScript+1, "install-instance")
	if s2.Procedure.ProcedureID != s1.Procedure.ProcedureID || s2.Procedure.TemporaryKeys != nil {
		h.t.Fatalf("install-instance %+v", s2.Procedure)
	}
	h.completeStep(s2, okResponses(2), nil)
	var resp contract.PrePersonalizeResponse
	h.decode(h.response("bank", requestID), &resp)
	return resp
}

func TestPrePersonalizeRunsBothStepsAndAnswersOnce(t *testing.T) {
	h := newHarness(t, nil)
	contents := bustest.Record(t, h.js, topology.StreamSteps.Name, topology.ContentChanged("*"))
	resp := h.prePersonalizeOK("pp-1", se1, 1)
	if resp.Status != contract.StatusSuccess || resp.State != contract.StateInstalled || resp.SecurityDomainAID != bankSD ||
		resp.InstanceAID != bankApp || resp.TemporaryKeys == nil || resp.TemporaryKeys.Wrapped != wrapped || resp.SEID != se1 {
		t.Fatalf("pre-personalize response %+v", resp)
	}
	h.waitNotifications("bank", "service-state-changed:installed")
	// One after create-sd (the SD), one at the end (SD and instance).
	got := contents.Wait(t, waitLimit, "content changes", 2, nil)
	var cc events.ContentChanged
	if err := json.Unmarshal(got[1].Data(), &cc); err != nil {
		t.Fatal(err)
	}
	if got[1].Headers().Get("ce-type") != events.TypeContentChanged || cc.SPID != "bank" || cc.SecurityDomain == nil ||
		!cc.SecurityDomain.CreatedByCentral || cc.SecurityDomain.KeysHeldBy != "central" || len(cc.Services) != 1 ||
		cc.Services[0].State != contract.StateInstalled {
		t.Fatalf("content change %s", got[1].Data())
	}

	// Re-sent with the same ce-id (the registry forwards it again): the
	// stored response again, nothing run twice.
	h.procedure(spProcedure("bank", "pp-1", events.ProcedurePrePersonalize, se1, time.Time{}))
	again := h.responseN("bank", "pp-1", 2)
	first := h.response("bank", "pp-1")
	if string(again.Data) != string(first.Data) {
		t.Fatalf("re-sent pre-personalize answered %s, want %s", again.Data, first.Data)
	}
	// A new pre-personalize of the same service is refused.
	h.procedure(spProcedure("bank", "pp-2", events.ProcedurePrePersonalize, se1, time.Time{}))
	h.failure("bank", "pp-2", contract.StatusFailed, contract.CodeAlreadyExists, "already deployed")
	if n := h.scriptRequestsStored(se1); n != 2 {
		t.Fatalf("%d scripts requested, want 2", n)
	}
	// get-service-state is answered at once.
	h.procedure(spProcedure("bank", "gs-1", events.ProcedureGetState, se1, time.Time{}))
	var st contract.ServiceStateResponse
	h.decode(h.response("bank", "gs-1"), &st)
	if st.Status != contract.StatusSuccess || st.State != contract.StateInstalled || st.InstanceAID != bankApp {
		t.Fatalf("get-service-state %+v", st)
	}
}

func TestProcedureHoldsTheSELikeAConversation(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank", "b1")
	// An SP procedure without validitySeconds on a busy SE: refused at once.
	h.procedure(spProcedure("bank", "pp-busy", events.ProcedurePrePersonalize, se1, time.Time{}))
	h.failure("bank", "pp-busy", contract.StatusFailed, contract.CodeConversationBusy, "open conversation")
	// With validitySeconds it waits, and runs when the conversation ends.
	h.procedure(spProcedure("bank", "pp-wait", events.ProcedurePrePersonalize, se1, time.Now().Add(time.Minute)))
	var view conversationView
	bustest.Eventually(t, waitLimit, "the procedure to wait", func() bool {
		h.get("/v1/ses/"+se1+"/conversation", &view)
		return view.WaitingBegins == 1
	})
	h.endOK("bank", "e1", conv.ConversationID)
	s1 := h.step(1, "create-sd")
	var held struct {
		Kind      string `json:"kind"`
		Procedure struct {
			Kind, Step string
		} `json:"procedure"`
	}
	if h.get("/v1/ses/"+se1+"/conversation", &held); held.Kind != "procedure" ||
		held.Procedure.Kind != events.ProcedurePrePersonalize || held.Procedure.Step != "create-sd" {
		t.Fatalf("the SE's holder: %+v", held)
	}
	// While it runs, a begin-conversation gets CONVERSATION_BUSY.
	h.begin("transit", "b2", se1, mnoHTTPS, time.Time{})
	h.failure("transit", "b2", contract.StatusFailed, contract.CodeConversationBusy, "pre-personalize")
	// A begin that may wait opens when the procedure ends.
	h.begin("transit", "b3", se1, mnoHTTPS, time.Now().Add(time.Minute))
	h.completeStep(s1, okResponses(3), tempKeys)
	h.completeStep(h.step(2, "install-instance"), okResponses(2), nil)
	var resp contract.PrePersonalizeResponse
	h.decode(h.response("bank", "pp-wait"), &resp)
	if resp.Status != contract.StatusSuccess {
		t.Fatalf("%+v", resp)
	}
	h.beginOK("transit", "b3")
}

func TestPrePersonalizeFailureCompensates(t *testing.T) {
	h := newHarness(t, nil)
	h.procedure(spProcedure("bank", "pp-f", events.ProcedurePrePersonalize, se1, time.Time{}))
	h.completeStep(h.step(1, "create-sd"), okResponses(3), tempKeys)
	s2 := h.step(2, "install-instance")
	h.completeStep(s2, contract.SendScriptResponse{Responses: []string{"6A80"},
		Failed: []contract.ScriptFailure{{Index: 0, Command: s2.Commands[0], SW: "6A80", Reason: "incorrect data"}},
		Result: contract.Failure(contract.Errorf(contract.CodeSecureElementError, "command 0 returned SW 6A80"))}, nil)
	comp := h.step(3, "compensate")
	if !comp.ContinueOnError || strings.Join(comp.Commands, " ") != "80E400000A4F08A00000055501010100 80E40000094F07A000000555AA0100" {
		t.Fatalf("compensation script %+v", comp)
	}
	h.completeStep(comp, contract.SendScriptResponse{Responses: []string{"6A88", "9000"}, Failed: []contract.ScriptFailure{},
		Result: contract.Result{Status: contract.StatusWithWarning}}, nil)
	cerr := h.failure("bank", "pp-f", contract.StatusFailed, contract.CodeSecureElementError,
		"INSTALL [for install and make selectable] (80E60C00) returned SW 6A80")
	if !strings.Contains(cerr.Message, "removed") {
		t.Fatalf("message %q", cerr.Message)
	}
	h.waitNotifications("bank", "service-state-changed:in-error")
	h.procedure(spProcedure("bank", "gs", events.ProcedureGetState, se1, time.Time{}))
	var st contract.ServiceStateResponse
	h.decode(h.response("bank", "gs"), &st)
	if st.State != contract.StateInError || !strings.Contains(st.Reason, "6A80") {
		t.Fatalf("state after compensation %+v", st)
	}
	if n := len(h.responsesTo("bank", "pp-f")); n != 1 {
		t.Fatalf("%d responses to the pre-personalize, want 1", n)
	}
}

func TestProcedureResumesAfterARestart(t *testing.T) {
	h := newHarness(t, nil)
	h.procedure(spProcedure("bank", "pp-r", events.ProcedurePrePersonalize, se1, time.Time{}))
	s1 := h.step(1, "create-sd")
	h.restart()
	// The router's answer arrives while the service is back.
	h.completeStep(s1, okResponses(3), tempKeys)
	s2 := h.step(2, "install-instance")
	h.restart()
	h.completeStep(s2, okResponses(2), nil)
	var resp contract.PrePersonalizeResponse
	h.decode(h.response("bank", "pp-r"), &resp)
	if resp.Status != contract.StatusSuccess || resp.TemporaryKeys == nil {
		t.Fatalf("%+v", resp)
	}
	if n := h.scriptRequestsStored(se1); n != 2 {
		t.Fatalf("%d scripts requested across restarts, want 2", n)
	}
	if n := len(h.responsesTo("bank", "pp-r")); n != 1 {
		t.Fatalf("%d responses, want 1", n)
	}
}

func TestLockAndUnlockSENotifyInOrder(t *testing.T) {
	h := newHarness(t, nil)
	h.prePersonalizeOK("pp-1", se1, 1)
	h.waitNotifications("bank", "service-state-changed:installed")
	// An SP conversation holds the SE: the operator's lock waits for it.
	h.begin("transit", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("transit", "b1")
	h.procedure(operatorProcedure(bankOpID, events.ProcedureLockSE, se1, contract.SEStatusLost))
	h.begin("transit", "b2", se1, mnoHTTPS, time.Now().Add(time.Minute)) // queued behind the lock
	var view conversationView
	bustest.Eventually(t, waitLimit, "lock-se and a begin to wait", func() bool {
		h.get("/v1/ses/"+se1+"/conversation", &view)
		return view.WaitingBegins == 2
	})
	h.endOK("transit", "e1", conv.ConversationID)
	lock := h.step(3, "lock")
	if lock.Request.SPID != "" || lock.Commands[0] != "80F0408008"+bankApp || !lock.ContinueOnError {
		t.Fatalf("lock script %+v", lock)
	}
	h.completeStep(lock, okResponses(1), nil)
	h.waitNotifications("bank", "service-state-changed:installed", "se-status-changed:lost", "service-state-changed:suspended")
	h.beginOK("transit", "b2") // the waiting begin got the SE after the lock
	if got := h.notificationsTo("transit"); len(got) != 0 {
		t.Fatalf("transit has nothing on the SE but got %v", got)
	}
	var view2 conversationView
	h.get("/v1/ses/"+se1+"/conversation", &view2)
	h.endOK("transit", "e2", view2.ConversationID)

	// The SP may not resume a service the SE lock suspended.
	h.procedure(spProcedure("bank", "rs-1", events.ProcedureResume, se1, time.Time{}))
	h.failure("bank", "rs-1", contract.StatusFailed, contract.CodeNotAllowed, "lost or stolen")

	h.procedure(operatorProcedure("op-2", events.ProcedureUnlockSE, se1, contract.SEStatusFound))
	unlock := h.step(4, "unlock")
	if unlock.Commands[0] != "80F0400008"+bankApp {
		t.Fatalf("unlock script %+v", unlock)
	}
	h.completeStep(unlock, okResponses(1), nil)
	h.waitNotifications("bank", "service-state-changed:installed", "se-status-changed:lost", "service-state-changed:suspended",
		"se-status-changed:found", "service-state-changed:installed")
}

func TestPersonalizationOnEndConversationAndKeyRotation(t *testing.T) {
	h := newHarness(t, nil)
	h.prePersonalizeOK("pp-1", se1, 1)
	contents := bustest.Record(t, h.js, topology.StreamSteps.Name, topology.ContentChanged("*"))
	contents.Wait(t, waitLimit, "content after pre-personalize", 2, nil)

	// Key rotation: the router reports it on the SP's script.
	h.begin("bank", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank", "b1")
	h.request("bank", topology.OpSendScript, "s1", contract.SendScriptRequest{ConversationID: conv.ConversationID,
		Commands: []string{"80D8308100"}})
	_, s := h.scriptRequest(3)
	h.publishStep(topology.ScriptCompleted(se1), events.TypeScriptCompleted, "urn:tsm:svc:scriptrouter", se1, "s1",
		events.ScriptCompleted{Request: s.Request, ConversationID: s.ConversationID, ScriptID: s.ScriptID, SEID: se1,
			Response: okResponses(1), KeysRotated: []events.KeyRotation{{SecurityDomainAID: bankSD, KeyVersion: 0x31}}})
	h.response("bank", "s1")
	got := contents.Wait(t, waitLimit, "content after the rotation", 3, nil)
	var cc events.ContentChanged
	_ = json.Unmarshal(got[2].Data(), &cc)
	if cc.SecurityDomain == nil || cc.SecurityDomain.KeysHeldBy != "sp" || cc.SecurityDomain.KeyVersion != 0x31 {
		t.Fatalf("content after rotation %s", got[2].Data())
	}
	h.endOK("bank", "e1", conv.ConversationID)

	// A personalization conversation on the SP's SD, ended with success.
	beginPerso(h, "b2")
	conv = h.beginOK("bank", "b2")
	h.endOK("bank", "e2", conv.ConversationID)
	h.waitNotifications("bank", "service-state-changed:installed", "service-state-changed:personalized")
	got = contents.Wait(t, waitLimit, "content after personalization", 4, nil)
	_ = json.Unmarshal(got[3].Data(), &cc)
	if len(cc.Services) != 1 || cc.Services[0].State != contract.StatePersonalized {
		t.Fatalf("content after personalization %s", got[3].Data())
	}
	// Then activate-service verifies the instance on the card.
	h.procedure(spProcedure("bank", "act", events.ProcedureActivate, se1, time.Time{}))
	v := h.step(4, "verify")
	if v.Commands[0] != "80F24002"+"0A4F08"+bankApp+"00" {
		t.Fatalf("verify %v", v.Commands)
	}
	entry := "E3" + "24" + "4F08" + bankApp + "9F700107" + "C503000000" + "C406A00000055501" + "CC07" + bankSD
	h.completeStep(v, contract.SendScriptResponse{Result: contract.Success(), Responses: []string{entry + "9000"},
		Failed: []contract.ScriptFailure{}}, nil)
	var st contract.ServiceStateResponse
	h.decode(h.response("bank", "act"), &st)
	if st.Status != contract.StatusSuccess || st.State != contract.StateActive {
		t.Fatalf("activate %+v %+v", st, st.Error)
	}
}

// beginPerso opens bank's personalization conversation targeting its SD.
func beginPerso(h *harness, requestID string) {
	h.t.Helper()
	now := time.Now().UTC()
	ev := events.ConversationBegin{
		Request: events.RequestRef{SPID: "bank", RequestID: requestID, Op: topology.OpBeginConversation},
		Params: contract.BeginConversationRequest{SEID: se1, TargetAID: bankSD, ServiceID: &bankService,
			RequestedOperation: contract.OperationPersonalization},
		SE: seRecord(se1), MNO: mnoHTTPS, ReceivedAt: now,
	}
	h.publishStep(topology.ConversationBegin(se1), events.TypeConvBegin, "urn:tsm:svc:registry", se1, requestID, ev)
}
