package service_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/conversation/service"
)

const (
	se1 = "A1B2C3D4E5F60001"
	se2 = "A1B2C3D4E5F60002"
)

func TestBeginOpensConversationWithLimitsOfTheMNO(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b-https", se1, mnoHTTPS, time.Time{})
	h.begin("bank-a", "b-sms", se2, mnoSMS, time.Time{})

	r := h.response("bank-a", "b-https")
	var resp contract.BeginConversationResponse
	h.decode(r, &resp)
	if resp.Status != contract.StatusSuccess || !strings.HasPrefix(resp.ConversationID, "cv-") {
		t.Fatalf("begin: %+v", resp)
	}
	if r.Subject != topology.SPResponse("bank-a", topology.OpBeginConversation) ||
		r.header("ce-type") != "tsm.begin-conversation.response" || r.header("ce-source") != topology.CentralSource ||
		r.header("ce-subject") != resp.ConversationID {
		t.Fatalf("response attributes: subject %s headers %v", r.Subject, r.Header)
	}
	if resp.OTACarrier != "https" || resp.MaxScripts != 16 || resp.MaxAPDUsPerScript != 20 ||
		resp.MaxScriptBytes != 8192 || resp.ScriptFormat != "expanded" {
		t.Fatalf("limits over https: %+v", resp)
	}
	if resp.ExpiresAt == nil || time.Until(*resp.ExpiresAt) < 30*time.Second || time.Until(*resp.ExpiresAt) > time.Minute {
		t.Fatalf("expiresAt %v, want about a minute (the configured TTL) from now", resp.ExpiresAt)
	}
	sms := h.beginOK("bank-a", "b-sms")
	if sms.OTACarrier != "sms" || sms.MaxAPDUsPerScript != 32 || sms.MaxScriptBytes != 1024 {
		t.Fatalf("limits over sms (MNO without an APDU limit): %+v", sms)
	}

	// Operators see the open conversation of the SE, and the conversation.
	var view conversationView
	if code := h.get("/v1/ses/"+se1+"/conversation", &view); code != http.StatusOK ||
		view.ConversationID != resp.ConversationID || view.State != "open" || view.SPID != "bank-a" || view.SEID != se1 {
		t.Fatalf("GET SE conversation: %d %+v", code, view)
	}
	if code := h.get("/v1/conversations/"+sms.ConversationID, &view); code != http.StatusOK || view.SEID != se2 {
		t.Fatalf("GET conversation: %d %+v", code, view)
	}
	if code := h.get("/v1/conversations/cv-unknown", nil); code != http.StatusNotFound {
		t.Fatalf("unknown conversation: %d", code)
	}
	if code := h.get("/v1/ses/A1B2C3D4E5F6FFFF/conversation", nil); code != http.StatusNotFound {
		t.Fatalf("SE without a conversation: %d", code)
	}

	// The SP re-sends its begin with the same ce-id (the registry forwards it
	// again as a new event): it gets the same answer, no second conversation.
	h.begin("bank-a", "b-https", se1, mnoHTTPS, time.Time{})
	again := h.responseN("bank-a", "b-https", 2)
	if !bytes.Equal(again.Data, r.Data) || again.header("ce-id") == r.header("ce-id") {
		t.Fatalf("re-sent begin answered %s (ce-id %s), want %s with a new ce-id", again.Data, again.header("ce-id"), r.Data)
	}
	if h.get("/v1/ses/"+se1+"/conversation", &view); view.ConversationID != resp.ConversationID {
		t.Fatalf("re-sent begin opened %s", view.ConversationID)
	}
}

func TestSecondBeginOnBusySEFailsAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	first := h.beginOK("bank-a", "b1")
	h.begin("bank-b", "b2", se1, mnoHTTPS, time.Time{})
	h.failure("bank-b", "b2", contract.StatusFailed, contract.CodeConversationBusy,
		"SE "+se1+" has an open conversation; end it or retry later")
	var view conversationView
	if h.get("/v1/ses/"+se1+"/conversation", &view); view.ConversationID != first.ConversationID || view.WaitingBegins != 0 {
		t.Fatalf("SE conversation after a refused begin: %+v", view)
	}
}

func TestWaitingBeginOpensWhenTheSEIsFreed(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	first := h.beginOK("bank-a", "b1")
	h.begin("bank-b", "w1", se1, mnoHTTPS, time.Now().Add(time.Minute))
	var view conversationView
	bustest.Eventually(t, waitLimit, "the begin to wait for the SE", func() bool {
		h.get("/v1/ses/"+se1+"/conversation", &view)
		return view.WaitingBegins == 1
	})
	if got := h.responsesTo("bank-b", "w1"); len(got) != 0 {
		t.Fatalf("a waiting begin was answered while the SE was busy: %s", got[0].Data)
	}
	h.endOK("bank-a", "e1", first.ConversationID)
	second := h.beginOK("bank-b", "w1")
	if second.ConversationID == first.ConversationID {
		t.Fatal("the waiting begin got the ended conversation")
	}
	if h.get("/v1/ses/"+se1+"/conversation", &view); view.ConversationID != second.ConversationID ||
		view.SPID != "bank-b" || view.WaitingBegins != 0 {
		t.Fatalf("SE conversation after the end: %+v", view)
	}
	if h.get("/v1/conversations/"+first.ConversationID, &view); view.State != "ended" {
		t.Fatalf("first conversation: %+v", view)
	}
}

func TestWaitingBeginExpires(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	first := h.beginOK("bank-a", "b1")
	h.begin("bank-b", "w1", se1, mnoHTTPS, time.Now().Add(500*time.Millisecond))
	h.failure("bank-b", "w1", contract.StatusExpired, contract.CodeExpired, "SE "+se1+" stayed busy")

	// A begin whose validity ran out before it arrived is answered Expired.
	h.begin("bank-b", "late", se1, mnoHTTPS, time.Now().Add(-time.Second))
	h.failure("bank-b", "late", contract.StatusExpired, contract.CodeExpired, "validitySeconds")

	var view conversationView
	if h.get("/v1/ses/"+se1+"/conversation", &view); view.ConversationID != first.ConversationID || view.WaitingBegins != 0 {
		t.Fatalf("SE conversation: %+v", view)
	}
	// Ending the first conversation later opens nothing for the expired begin.
	h.endOK("bank-a", "e1", first.ConversationID)
	if code := h.get("/v1/ses/"+se1+"/conversation", nil); code != http.StatusNotFound {
		t.Fatalf("SE after the end: %d, want no open conversation", code)
	}
}

func sendScript(id string, commands ...string) contract.SendScriptRequest {
	return contract.SendScriptRequest{ConversationID: id, Commands: commands}
}

func TestScriptRoundTripAndResentRequest(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank-a", "b1")
	req := contract.SendScriptRequest{ConversationID: conv.ConversationID,
		Commands: []string{"00A4040007A0000005550101", "80CA9F7F00"}, ContinueOnError: true}
	h.request("bank-a", topology.OpSendScript, "s1", req)

	msg, script := h.scriptRequest(1)
	if msg.Subject != topology.ScriptRequested(se1) || msg.header("ce-type") != "tsmhub.script.requested.v1" ||
		msg.header("ce-source") != "urn:tsm:svc:conversation" || msg.header("ce-subject") != se1 ||
		msg.header("ce-correlationid") != "s1" {
		t.Fatalf("script request attributes: %s %v", msg.Subject, msg.Header)
	}
	if err := h.schemas.Validate("tsmhub.script.requested.v1", msg.Data); err != nil {
		t.Fatalf("script request does not match its schema: %v", err)
	}
	if script.ConversationID != conv.ConversationID || script.SEID != se1 || script.MNO != "mno-web" ||
		script.TargetAID != targetAID || script.Securing != "end-to-end" || !script.ContinueOnError ||
		script.MaxAPDUsPerScript != 20 || script.MaxScriptBytes != 8192 || script.ScriptID == "" ||
		len(script.Commands) != 2 || script.Commands[1] != "80CA9F7F00" ||
		script.Request.SPID != "bank-a" || script.Request.RequestID != "s1" || script.Request.Op != topology.OpSendScript {
		t.Fatalf("script request: %+v", script)
	}
	var view conversationView
	if h.get("/v1/conversations/"+conv.ConversationID, &view); view.RunningScript == nil ||
		view.RunningScript.ScriptID != script.ScriptID || view.ScriptsRun != 0 {
		t.Fatalf("conversation while the script runs: %+v", view)
	}

	// The script router reports the script done: the SP gets the responses.
	h.complete(script, contract.SendScriptResponse{Result: contract.Success(),
		Responses: []string{"9000", "9F7F2A0102039000"}})
	first := h.response("bank-a", "s1")
	var resp contract.SendScriptResponse
	h.decode(first, &resp)
	if resp.Status != contract.StatusSuccess || resp.ConversationID != conv.ConversationID ||
		len(resp.Responses) != 2 || resp.Responses[1] != "9F7F2A0102039000" ||
		first.header("ce-subject") != conv.ConversationID || first.Subject != topology.SPResponse("bank-a", topology.OpSendScript) {
		t.Fatalf("send-script response %s %+v", first.Subject, resp)
	}
	if h.get("/v1/conversations/"+conv.ConversationID, &view); view.RunningScript != nil || view.ScriptsRun != 1 {
		t.Fatalf("conversation after the script: %+v", view)
	}

	// Re-sent with the same ce-id: the same body again, the script does not run again.
	h.resend("bank-a", topology.OpSendScript, "s1", req)
	again := h.responseN("bank-a", "s1", 2)
	if !bytes.Equal(again.Data, first.Data) || again.header("ce-id") == first.header("ce-id") {
		t.Fatalf("re-sent send-script answered %s, want %s with a new ce-id", again.Data, first.Data)
	}
	if n := h.scriptRequestsStored(se1); n != 1 {
		t.Fatalf("%d script requests for the SE, want exactly 1", n)
	}
	if h.get("/v1/conversations/"+conv.ConversationID, &view); view.ScriptsRun != 1 || view.RunningScript != nil {
		t.Fatalf("conversation after the re-send: %+v", view)
	}

	// The next script of the conversation runs normally.
	h.request("bank-a", topology.OpSendScript, "s2", sendScript(conv.ConversationID, "80CA006600"))
	if _, next := h.scriptRequest(2); next.ScriptID == script.ScriptID || next.Request.RequestID != "s2" {
		t.Fatalf("second script: %+v", next)
	}
}

func TestSendScriptOnConversationThatIsNotOpen(t *testing.T) {
	h := newHarness(t, nil)
	h.request("bank-a", topology.OpSendScript, "s-unknown", sendScript("cv-nothing", "00A40400"))
	unknown := h.failure("bank-a", "s-unknown", contract.StatusFailed, contract.CodeConversationNotOpen, "cv-nothing is unknown")

	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank-a", "b1")
	// Another SP must not learn that the conversation exists.
	h.request("bank-b", topology.OpSendScript, "s-other", sendScript(conv.ConversationID, "00A40400"))
	other := h.failure("bank-b", "s-other", contract.StatusFailed, contract.CodeConversationNotOpen, "is unknown")
	if strings.Replace(unknown.Message, "cv-nothing", conv.ConversationID, 1) != other.Message {
		t.Fatalf("another SP's conversation reported as %q, unknown ones as %q", other.Message, unknown.Message)
	}
	h.request("bank-b", topology.OpEndConversation, "e-other", contract.EndConversationRequest{ConversationID: conv.ConversationID, Outcome: "failure"})
	h.failure("bank-b", "e-other", contract.StatusFailed, contract.CodeConversationNotOpen, "is unknown")

	h.endOK("bank-a", "e1", conv.ConversationID)
	h.request("bank-a", topology.OpSendScript, "s-ended", sendScript(conv.ConversationID, "00A40400"))
	h.failure("bank-a", "s-ended", contract.StatusFailed, contract.CodeConversationNotOpen, conv.ConversationID+" ended at ")
	h.request("bank-a", topology.OpEndConversation, "e2", contract.EndConversationRequest{ConversationID: conv.ConversationID, Outcome: "success"})
	h.failure("bank-a", "e2", contract.StatusFailed, contract.CodeConversationNotOpen, "ended at")
	if n := h.scriptRequestsStored(se1); n != 0 {
		t.Fatalf("%d script requests, want none", n)
	}
}

func TestOneScriptAtATime(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank-a", "b1")
	h.request("bank-a", topology.OpSendScript, "s1", sendScript(conv.ConversationID, "00A40400"))
	_, script := h.scriptRequest(1)

	// s1 re-sent while it runs: absorbed, not run twice. One SP's requests are
	// handled in order, so the answer to s2 below also says the re-send has
	// been handled before the script completes.
	h.resend("bank-a", topology.OpSendScript, "s1", sendScript(conv.ConversationID, "00A40400"))
	h.request("bank-a", topology.OpSendScript, "s2", sendScript(conv.ConversationID, "80CA006600"))
	h.failure("bank-a", "s2", contract.StatusFailed, contract.CodeConversationBusy,
		"a script is still running in conversation "+conv.ConversationID+"; wait for its response")
	h.request("bank-a", topology.OpEndConversation, "e1", contract.EndConversationRequest{ConversationID: conv.ConversationID, Outcome: "success"})
	h.failure("bank-a", "e1", contract.StatusFailed, contract.CodeConversationBusy, "still running")

	h.complete(script, contract.SendScriptResponse{
		Result:    contract.Failure(contract.Errorf(contract.CodeSecureElementError, "command 0 failed with 6A82")),
		Responses: []string{"6A82"},
		Failed:    []contract.ScriptFailure{{Index: 0, Command: "00A40400", SW: "6A82", Reason: "file or application not found"}},
	})
	var resp contract.SendScriptResponse
	h.decode(h.response("bank-a", "s1"), &resp)
	if resp.Status != contract.StatusFailed || len(resp.Failed) != 1 || resp.Failed[0].SW != "6A82" || resp.Error == nil {
		t.Fatalf("failed script answered %+v", resp)
	}
	h.endOK("bank-a", "e2", conv.ConversationID)
	if n := h.scriptRequestsStored(se1); n != 1 {
		t.Fatalf("%d script requests, want exactly 1", n)
	}
	if got := h.responsesTo("bank-a", "s1"); len(got) != 1 {
		t.Fatalf("s1 answered %d times, want once (its re-send came while it ran)", len(got))
	}
}

func TestMaxScriptsPerConversation(t *testing.T) {
	h := newHarness(t, func(c *service.Config) { c.MaxScripts = 1 })
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank-a", "b1")
	if conv.MaxScripts != 1 {
		t.Fatalf("maxScripts %d", conv.MaxScripts)
	}
	h.request("bank-a", topology.OpSendScript, "s1", sendScript(conv.ConversationID, "00A40400"))
	_, script := h.scriptRequest(1)
	h.complete(script, contract.SendScriptResponse{Result: contract.Success(), Responses: []string{"9000"}})
	h.response("bank-a", "s1")
	h.request("bank-a", topology.OpSendScript, "s2", sendScript(conv.ConversationID, "00A40400"))
	h.failure("bank-a", "s2", contract.StatusFailed, contract.CodeNotAllowed, "maximum of 1 scripts")
}

func TestRestartMidConversation(t *testing.T) {
	h := newHarness(t, nil)
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank-a", "b1")
	h.request("bank-a", topology.OpSendScript, "s1", sendScript(conv.ConversationID, "8050000008AABBCCDDEEFF001100"))
	_, script := h.scriptRequest(1)
	h.begin("bank-b", "w1", se1, mnoHTTPS, time.Now().Add(time.Minute))
	var view conversationView
	bustest.Eventually(t, waitLimit, "the begin to wait", func() bool {
		h.get("/v1/ses/"+se1+"/conversation", &view)
		return view.WaitingBegins == 1
	})

	h.restart()

	if code := h.get("/v1/conversations/"+conv.ConversationID, &view); code != http.StatusOK ||
		view.State != "open" || view.RunningScript == nil || view.RunningScript.ScriptID != script.ScriptID {
		t.Fatalf("conversation after the restart: %d %+v", code, view)
	}
	h.complete(script, contract.SendScriptResponse{Result: contract.Success(), Responses: []string{"0000000000000000000001020304050607089000"}})
	var resp contract.SendScriptResponse
	h.decode(h.response("bank-a", "s1"), &resp)
	if resp.Status != contract.StatusSuccess || resp.ConversationID != conv.ConversationID {
		t.Fatalf("response after the restart: %+v", resp)
	}
	h.request("bank-a", topology.OpSendScript, "s2", sendScript(conv.ConversationID, "8482330010AABBCCDDEEFF00112233445566778899"))
	_, second := h.scriptRequest(2)
	if second.Request.RequestID != "s2" {
		t.Fatalf("second script: %+v", second)
	}
	if n := h.scriptRequestsStored(se1); n != 2 {
		t.Fatalf("%d script requests, want 2 (none repeated by the restart)", n)
	}
	h.complete(second, contract.SendScriptResponse{Result: contract.Success(), Responses: []string{"9000"}})
	h.response("bank-a", "s2")
	h.endOK("bank-a", "e1", conv.ConversationID)
	// The begin that waited across the restart gets the SE.
	next := h.beginOK("bank-b", "w1")
	if h.get("/v1/ses/"+se1+"/conversation", &view); view.ConversationID != next.ConversationID {
		t.Fatalf("SE conversation: %+v", view)
	}
}

func TestConversationExpiryNotifiesTheSP(t *testing.T) {
	h := newHarness(t, func(c *service.Config) { c.TTL = 700 * time.Millisecond })
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	conv := h.beginOK("bank-a", "b1")
	h.begin("bank-b", "w1", se1, mnoHTTPS, time.Now().Add(time.Minute))

	n := h.notification("bank-a", "conversation-expired")
	if n.header("ce-type") != "tsm.conversation-expired.notification" || n.header("ce-source") != topology.CentralSource ||
		n.header("ce-subject") != conv.ConversationID {
		t.Fatalf("notification attributes: %v", n.Header)
	}
	var body struct {
		ConversationID string    `json:"conversationId"`
		SEID           string    `json:"seId"`
		ExpiredAt      time.Time `json:"expiredAt"`
	}
	h.decode(n, &body)
	if body.ConversationID != conv.ConversationID || body.SEID != se1 || !body.ExpiredAt.Equal(*conv.ExpiresAt) {
		t.Fatalf("notification %+v, conversation expiring at %v", body, conv.ExpiresAt)
	}
	var view conversationView
	if h.get("/v1/conversations/"+conv.ConversationID, &view); view.State != "expired" {
		t.Fatalf("conversation after expiry: %+v", view)
	}
	h.request("bank-a", topology.OpSendScript, "s1", sendScript(conv.ConversationID, "00A40400"))
	h.failure("bank-a", "s1", contract.StatusFailed, contract.CodeConversationNotOpen, conv.ConversationID+" expired at ")
	// The freed SE went to the begin that waited.
	next := h.beginOK("bank-b", "w1")
	if next.ConversationID == conv.ConversationID {
		t.Fatal("waiting begin got the expired conversation")
	}
}

func TestUnreadableBeginIsDeadLettered(t *testing.T) {
	h := newHarness(t, nil)
	m := nats.NewMsg(topology.ConversationBegin(se1))
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("ce-id", "garbage-1")
	m.Header.Set("ce-source", "urn:tsm:svc:registry")
	m.Header.Set("ce-type", "tsmhub.conversation.begin.v1")
	m.Header.Set("ce-datacontenttype", "application/json")
	m.Data = []byte(`{"request": 42`)
	h.publish(m)

	dl := bustest.NextMessage(t, h.js, topology.StreamDeadLetters.Name,
		topology.DeadLetter("conversation", topology.ConversationBegins.Name), waitLimit)
	if dl.Headers().Get("ce-id") != "garbage-1" || dl.Headers().Get("Tsm-Dlq-Reason") == "" {
		t.Fatalf("dead letter headers %v", dl.Headers())
	}
	// The SE's queue is not blocked by it.
	h.begin("bank-a", "b1", se1, mnoHTTPS, time.Time{})
	h.beginOK("bank-a", "b1")
}
