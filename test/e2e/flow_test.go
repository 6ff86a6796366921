package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// spSession is an SP running end-to-end SCP03 with its own SD through
// conversations, as an SP TSM does.
type spSession struct {
	t       *testing.T
	e       *env
	c       *spclient.Client
	seID    string
	sdAID   string
	channel *spclient.SecureChannel
	convID  string
	// wrapped keeps the secured commands of the last script to unwrap their responses.
	wrapped []*spclient.Wrapped
	// sent counts APDUs sent in scripts (the card must execute each once).
	sent int
}

func newSPSession(t *testing.T, e *env, spID, seID string) *spSession {
	t.Helper()
	var sdAID string
	for _, sp := range devstack.DemoSPs {
		if sp.SPID == spID {
			sdAID = sp.SDAID
		}
	}
	ch, err := spclient.NewSecureChannel(spclient.SecureChannelConfig{MasterKey: mustHex(t, devstack.DemoSPMasterKey)})
	if err != nil {
		t.Fatal(err)
	}
	return &spSession{t: t, e: e, c: e.sp(spID), seID: seID, sdAID: sdAID, channel: ch}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (s *spSession) begin(operation string) *contract.BeginConversationResponse {
	s.t.Helper()
	resp, err := s.c.BeginConversation(ctxT(s.t), contract.BeginConversationRequest{
		SEID: s.seID, TargetAID: s.sdAID, RequestedOperation: operation})
	if err != nil {
		s.t.Fatalf("begin-conversation: %v", err)
	}
	if resp.Status != contract.StatusSuccess || resp.ConversationID == "" {
		s.t.Fatalf("begin-conversation: %+v", resp)
	}
	s.convID = resp.ConversationID
	return resp
}

func (s *spSession) end(outcome string) {
	s.t.Helper()
	resp, err := s.c.EndConversation(ctxT(s.t), contract.EndConversationRequest{ConversationID: s.convID, Outcome: outcome})
	if err != nil {
		s.t.Fatalf("end-conversation: %v", err)
	}
	if resp.Status != contract.StatusSuccess || resp.Outcome != outcome || resp.ConversationID != s.convID {
		s.t.Fatalf("end-conversation: %+v", resp)
	}
}

// send sends one script and checks every command answered 9000.
func (s *spSession) send(commands [][]byte, opts ...spclient.CallOption) *contract.SendScriptResponse {
	s.t.Helper()
	hexCmds := make([]string, len(commands))
	for i, c := range commands {
		hexCmds[i] = upperHex(c)
	}
	s.sent += len(commands)
	resp, err := s.c.SendScript(ctxT(s.t), contract.SendScriptRequest{ConversationID: s.convID, Commands: hexCmds}, opts...)
	if err != nil {
		s.t.Fatalf("send-script: %v (response %+v)", err, resp)
	}
	if resp.Status != contract.StatusSuccess || len(resp.Responses) != len(commands) || len(resp.Failed) != 0 {
		s.t.Fatalf("send-script: %+v", resp)
	}
	for i, r := range resp.Responses {
		b, err := hex.DecodeString(r)
		if err != nil || len(b) < 2 {
			s.t.Fatalf("response %d %q is not an R-APDU", i, r)
		}
		if sw := uint16(b[len(b)-2])<<8 | uint16(b[len(b)-1]); sw != apdu.SWOK {
			s.t.Fatalf("command %d answered %04X", i, sw)
		}
	}
	return resp
}

func (s *spSession) selectSD() []byte {
	return apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: mustHex(s.t, s.sdAID), Le: 0}.Bytes()
}

// openSecureChannel runs the Fig. 3 pair of scripts: [SELECT SD, INITIALIZE
// UPDATE], then [EXTERNAL AUTHENTICATE, secured GET STATUS, secured STORE
// DATA]; it checks the R-MACs of the secured responses.
func (s *spSession) openSecureChannelAndWork(between func()) {
	s.t.Helper()
	iu, err := s.channel.InitializeUpdate(0x30)
	if err != nil {
		s.t.Fatal(err)
	}
	r1 := s.send([][]byte{s.selectSD(), iu})
	if _, err := s.channel.ProcessInitializeUpdateResponse(mustHex(s.t, r1.Responses[1])); err != nil {
		s.t.Fatalf("INITIALIZE UPDATE response: %v", err)
	}
	if between != nil {
		between()
	}
	ea, err := s.channel.ExternalAuthenticate(0x33)
	if err != nil {
		s.t.Fatal(err)
	}
	getStatus, err := s.channel.Wrap(mustHex(s.t, "80F24002024F0000"))
	if err != nil {
		s.t.Fatal(err)
	}
	storeData, err := s.channel.Wrap(mustHex(s.t, "80E2900006DF0103010203"))
	if err != nil {
		s.t.Fatal(err)
	}
	r2 := s.send([][]byte{ea, getStatus.Command, storeData.Command})
	if err := spclient.CheckExternalAuthenticateResponse(mustHex(s.t, r2.Responses[0])); err != nil {
		s.t.Fatal(err)
	}
	for i, w := range []*spclient.Wrapped{getStatus, storeData} {
		u, err := s.channel.Unwrap(w, mustHex(s.t, r2.Responses[i+1]))
		if err != nil {
			s.t.Fatalf("secured response %d: %v", i+1, err)
		}
		if !u.RMACVerified || u.SW != apdu.SWOK {
			s.t.Fatalf("secured response %d: R-MAC verified %v, SW %04X", i+1, u.RMACVerified, u.SW)
		}
	}
}

// TestFig2AndFig3Sequence is acceptance 1 and 6: get-se-id -> get-se-data ->
// begin -> [SELECT SD, INITIALIZE UPDATE] -> [EXTERNAL AUTHENTICATE, secured
// GET STATUS, secured STORE DATA] -> end -> begin -> script -> end, every
// response Executed-Success with GP-correct R-APDUs (9000, valid R-MACs).
func TestFig2AndFig3Sequence(t *testing.T) {
	e := startEnv(t)
	for _, se := range devstack.DemoSEs {
		t.Run(se.Configuration, func(t *testing.T) {
			c := e.sp("bank1")
			ctx := ctxT(t)
			idResp, err := c.GetSEID(ctx, contract.GetSEIDRequest{MSI: se.MSI})
			if err != nil {
				t.Fatal(err)
			}
			if idResp.SEID != se.SEID || idResp.SEIDType != "CIN" || idResp.Status != contract.StatusSuccess {
				t.Fatalf("get-se-id: %+v", idResp)
			}
			data, err := c.GetSEData(ctx, contract.GetSEDataRequest{SEID: idResp.SEID})
			if err != nil {
				t.Fatal(err)
			}
			if data.SEData == nil || data.SEData.MNO != se.MNO || data.SEData.Configuration != se.Configuration {
				t.Fatalf("get-se-data: %+v", data)
			}
			s := newSPSession(t, e, "bank1", se.SEID)
			before := e.apdusExecuted(se.SEID)
			s.begin(contract.OperationKeyRotation)
			s.openSecureChannelAndWork(nil)
			s.end(contract.OutcomeSuccess)
			s.begin(contract.OperationPersonalization)
			s.send([][]byte{s.selectSD()})
			s.end(contract.OutcomeSuccess)
			if got := e.apdusExecuted(se.SEID) - before; got != s.sent {
				t.Fatalf("card executed %d APDUs, SP sent %d", got, s.sent)
			}
		})
	}
}

// TestResentRequestGetsSameResponse is acceptance 3: the same ce-id again
// returns the same response, and the SE executes the APDUs once.
func TestResentRequestGetsSameResponse(t *testing.T) {
	e := startEnv(t)
	se := devstack.DemoSEs[1]
	s := newSPSession(t, e, "transit1", se.SEID)
	s.begin(contract.OperationOther)
	before := e.apdusExecuted(se.SEID)
	first := s.send([][]byte{s.selectSD()}, spclient.WithRequestID("resend-1"))
	// Re-published as a stock client does it (no Nats-Msg-Id, so JetStream's
	// deduplication does not absorb it): the conversation service must answer
	// from its record, not run the script again.
	body := `{"conversationId":"` + s.convID + `","commands":["` + upperHex(s.selectSD()) + `"]}`
	raw := rawRequest(t, s.c, "send-script", headers("transit1", "send-script", "resend-1"), body)
	var rawResp contract.SendScriptResponse
	if err := raw.Decode(&rawResp); err != nil {
		t.Fatal(err)
	}
	if rawResp.Status != first.Status || len(rawResp.Responses) != 1 || rawResp.Responses[0] != first.Responses[0] {
		t.Fatalf("re-sent request got %+v, first got %+v", rawResp, first)
	}
	if raw.ID == "" || raw.CorrelationID != "resend-1" {
		t.Fatalf("re-sent response attributes: id %q correlation %q", raw.ID, raw.CorrelationID)
	}
	// Re-sent through the SP client (Nats-Msg-Id = ce-id): answered either by
	// the service or, inside the short dedup window, from the stored response.
	again, err := s.c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID,
		Commands: []string{upperHex(s.selectSD())}}, spclient.WithRequestID("resend-1"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Responses[0] != first.Responses[0] || again.Status != first.Status {
		t.Fatalf("re-sent request got %+v, first got %+v", again, first)
	}
	if got := e.apdusExecuted(se.SEID) - before; got != 1 {
		t.Fatalf("card executed %d APDUs for one command sent three times with the same ce-id", got)
	}
	// The same for a look-up.
	a, err := s.c.GetSEID(ctxT(t), contract.GetSEIDRequest{MSI: se.MSI}, spclient.WithRequestID("lookup-1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.c.GetSEID(ctxT(t), contract.GetSEIDRequest{MSI: se.MSI}, spclient.WithRequestID("lookup-1"))
	if err != nil || *a != *b {
		t.Fatalf("re-sent get-se-id: %+v vs %+v (%v)", a, b, err)
	}
	s.end(contract.OutcomeSuccess)
	counts := e.responsesFor("transit1")
	if counts["resend-1"] < 2 || counts["resend-1"] > 3 || counts["lookup-1"] < 1 || counts["lookup-1"] > 2 {
		t.Fatalf("responses per request id: %v (want one per send that reached the service)", counts)
	}
}

// TestKillEachServiceBetweenScripts is acceptance 4: kill -9 of any one
// service between two scripts of a conversation, then restart; the
// conversation goes on (the card keeps its secure channel), the SP gets every
// response exactly once and the card executes every APDU exactly once.
func TestKillEachServiceBetweenScripts(t *testing.T) {
	e := startEnv(t)
	services := []string{"registry", "conversation", "scriptrouter", "mnoadapter-mno-a", "mnoadapter-mno-b", "sesimulator"}
	for i, name := range services {
		se := devstack.DemoSEs[i%len(devstack.DemoSEs)]
		t.Run(name, func(t *testing.T) {
			s := newSPSession(t, e, "bank1", se.SEID)
			before := e.apdusExecuted(se.SEID)
			s.begin(contract.OperationKeyRotation)
			s.openSecureChannelAndWork(func() { e.killAndRestart(name) })
			s.end(contract.OutcomeSuccess)
			if got := e.apdusExecuted(se.SEID) - before; got != s.sent {
				t.Fatalf("card executed %d APDUs, SP sent %d: lost or executed twice", got, s.sent)
			}
		})
	}
	for id, n := range e.responsesFor("bank1") {
		if n != 1 {
			t.Errorf("request %s got %d responses", id, n)
		}
	}
}

// TestKillServiceWithScriptInFlight kills each service right after the SP
// published a script, before its response: after the restart the SP gets
// exactly one response and the card executed the script once.
func TestKillServiceWithScriptInFlight(t *testing.T) {
	e := startEnv(t)
	services := []string{"conversation", "scriptrouter", "mnoadapter-mno-b", "sesimulator"}
	se := devstack.DemoSEs[2] // mno-b: 50 ms OTA latency keeps the script in flight
	for _, name := range services {
		t.Run(name, func(t *testing.T) {
			s := newSPSession(t, e, "transit1", se.SEID)
			s.begin(contract.OperationOther)
			before := e.apdusExecuted(se.SEID)
			done := make(chan *contract.SendScriptResponse, 1)
			errc := make(chan error, 1)
			go func() {
				resp, err := s.c.SendScript(context.Background(), contract.SendScriptRequest{ConversationID: s.convID,
					Commands: []string{upperHex(s.selectSD()), upperHex(s.selectSD())}})
				if err != nil {
					errc <- err
					return
				}
				done <- resp
			}()
			e.killAndRestart(name)
			select {
			case resp := <-done:
				if resp.Status != contract.StatusSuccess || len(resp.Responses) != 2 {
					t.Fatalf("send-script after kill: %+v", resp)
				}
			case err := <-errc:
				var f *spclient.FailedError
				if errors.As(err, &f) {
					t.Fatalf("send-script after kill failed: %v", err)
				}
				t.Fatal(err)
			case <-time.After(90 * time.Second):
				t.Fatal("no send-script response after the restart")
			}
			s.end(contract.OutcomeSuccess)
			if got := e.apdusExecuted(se.SEID) - before; got != 2 {
				t.Fatalf("card executed %d APDUs for a script of 2", got)
			}
		})
	}
	for id, n := range e.responsesFor("transit1") {
		if n != 1 {
			t.Errorf("request %s got %d responses", id, n)
		}
	}
}
