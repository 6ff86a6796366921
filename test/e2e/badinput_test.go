package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// rawRequest publishes a hand-made request and returns its response.
func rawRequest(t *testing.T, c *spclient.Client, op string, h nats.Header, body string) *spclient.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := c.Publish(ctx, op, h, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("no response to the %s request: %v", op, err)
	}
	return r
}

func headers(spID, op, id string) nats.Header {
	h := nats.Header{}
	h.Set("ce-specversion", "1.0")
	if id != "" {
		h.Set("ce-id", id)
	}
	h.Set("ce-source", "urn:tsm:sp:"+spID)
	h.Set("ce-type", "tsm."+op+".request")
	h.Set("content-type", "application/json")
	return h
}

func wantFailure(t *testing.T, r *spclient.Reply, code contract.Code, msgPart string) {
	t.Helper()
	if r.Result.Status != contract.StatusFailed || r.Result.Error == nil || r.Result.Error.Code != code {
		t.Fatalf("got %s %+v (body %s), want Failed %s", r.Result.Status, r.Result.Error, r.Body, code)
	}
	if msgPart != "" && !strings.Contains(strings.ToLower(r.Result.Error.Message), strings.ToLower(msgPart)) {
		t.Fatalf("error message %q does not mention %q", r.Result.Error.Message, msgPart)
	}
}

// TestBadInput is acceptance 5: every kind of bad input gets its documented
// error and the services keep running.
func TestBadInput(t *testing.T) {
	e := startEnv(t)
	c := e.sp("bank1")
	se := devstack.DemoSEs[0]

	t.Run("body is not JSON", func(t *testing.T) {
		r := rawRequest(t, c, "get-se-id", headers("bank1", "get-se-id", "bad-json-1"), "{not json")
		wantFailure(t, r, contract.CodeInvalidArgument, "json")
		if r.CorrelationID != "bad-json-1" {
			t.Fatalf("correlation id %q", r.CorrelationID)
		}
	})
	t.Run("missing ce-id", func(t *testing.T) {
		r := rawRequest(t, c, "get-se-id", headers("bank1", "get-se-id", ""), `{"msi":"+4915100000001"}`)
		wantFailure(t, r, contract.CodeInvalidArgument, "ce-id")
	})
	t.Run("ce-source does not match the subject", func(t *testing.T) {
		h := headers("bank1", "get-se-id", "bad-source-1")
		h.Set("ce-source", "urn:tsm:sp:transit1")
		r := rawRequest(t, c, "get-se-id", h, `{"msi":"+4915100000001"}`)
		wantFailure(t, r, contract.CodeInvalidArgument, "ce-source")
	})
	t.Run("unknown op", func(t *testing.T) {
		r := rawRequest(t, c, "get-everything", headers("bank1", "get-everything", "bad-op-1"), `{}`)
		wantFailure(t, r, contract.CodeInvalidArgument, "unknown operation")
	})
	t.Run("wrong field type", func(t *testing.T) {
		r := rawRequest(t, c, "get-se-id", headers("bank1", "get-se-id", "bad-type-1"), `{"msi":4915100000001}`)
		wantFailure(t, r, contract.CodeInvalidArgument, "msi")
	})
	t.Run("unknown MSI", func(t *testing.T) {
		_, err := c.GetSEID(ctxT(t), contract.GetSEIDRequest{MSI: "+4900000000000"})
		wantCode(t, err, contract.CodeNotFound)
	})
	t.Run("unknown SE", func(t *testing.T) {
		_, err := c.GetSEData(ctxT(t), contract.GetSEDataRequest{SEID: "0F0F0F0F0F0F0F0F"})
		wantCode(t, err, contract.CodeNotFound)
		_, err = c.BeginConversation(ctxT(t), contract.BeginConversationRequest{SEID: "0F0F0F0F0F0F0F0F",
			TargetAID: "A000000555AA01", RequestedOperation: contract.OperationOther})
		wantCode(t, err, contract.CodeNotFound)
	})
	t.Run("send-script on an unknown conversation", func(t *testing.T) {
		_, err := c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: "cv-does-not-exist", Commands: []string{"00A4040000"}})
		wantCode(t, err, contract.CodeConversationNotOpen)
	})
	t.Run("send-script on an ended conversation", func(t *testing.T) {
		s := newSPSession(t, e, "bank1", se.SEID)
		s.begin(contract.OperationOther)
		s.end(contract.OutcomeFailure)
		_, err := c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID, Commands: []string{"00A4040000"}})
		wantCode(t, err, contract.CodeConversationNotOpen)
	})
	t.Run("second begin-conversation on a busy SE", func(t *testing.T) {
		s := newSPSession(t, e, "bank1", se.SEID)
		s.begin(contract.OperationOther)
		_, err := e.sp("transit1").BeginConversation(ctxT(t), contract.BeginConversationRequest{SEID: se.SEID,
			TargetAID: "A000000555AA02", RequestedOperation: contract.OperationOther})
		wantCode(t, err, contract.CodeConversationBusy)
		s.end(contract.OutcomeSuccess)
	})
	t.Run("malformed APDU", func(t *testing.T) {
		s := newSPSession(t, e, "bank1", se.SEID)
		s.begin(contract.OperationOther)
		before := e.apdusExecuted(se.SEID)
		// Lc says 8 bytes, 2 follow.
		resp, err := c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID,
			Commands: []string{"00A4040000", "00A4040008A000"}})
		wantCode(t, err, contract.CodeInvalidArgument)
		if resp == nil || len(resp.Failed) == 0 || resp.Failed[0].Index != 1 {
			t.Fatalf("failed[] should name command 1: %+v", resp)
		}
		if got := e.apdusExecuted(se.SEID) - before; got != 0 {
			t.Fatalf("a rejected script executed %d APDUs", got)
		}
		s.end(contract.OutcomeFailure)
	})
	t.Run("script over the limits", func(t *testing.T) {
		s := newSPSession(t, e, "bank1", se.SEID)
		begin := s.begin(contract.OperationOther)
		cmds := make([]string, begin.MaxAPDUsPerScript+1)
		for i := range cmds {
			cmds[i] = "00A4040000"
		}
		_, err := c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID, Commands: cmds})
		wantCode(t, err, contract.CodeScriptTooLarge)
		s.end(contract.OutcomeFailure)
	})
	t.Run("SELECT of another SP's security domain", func(t *testing.T) {
		s := newSPSession(t, e, "bank1", se.SEID)
		s.begin(contract.OperationOther)
		before := e.apdusExecuted(se.SEID)
		// transit1's SD: the script router refuses it before it reaches the card.
		resp, err := c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID,
			Commands: []string{"00A4040007A000000555AA0200"}})
		wantCode(t, err, contract.CodeNotAllowed)
		if resp == nil || len(resp.Failed) != 1 || resp.Failed[0].Index != 0 || resp.Error == nil ||
			!strings.Contains(resp.Error.Message, "command 0: SELECT") {
			t.Fatalf("failed[] should name command 0: %+v", resp)
		}
		if got := e.apdusExecuted(se.SEID) - before; got != 0 {
			t.Fatalf("a refused script executed %d APDUs", got)
		}
		s.end(contract.OutcomeFailure)
	})
	t.Run("not a CloudEvent at all lands in the dead-letter stream", func(t *testing.T) {
		// An SP id that is not valid: nobody can be answered.
		m := nats.NewMsg("tsm.sp.NOT_VALID.req.get-se-id")
		m.Data = []byte("garbage")
		bustest.PublishMsg(t, e.js, m)
		msg := bustest.NextMessage(t, e.js, "TSM_DLQ", "", 30*time.Second)
		if msg.Headers().Get("Tsm-Dlq-Reason") == "" || msg.Headers().Get("Tsm-Dlq-Subject") != "tsm.sp.NOT_VALID.req.get-se-id" {
			t.Fatalf("dead letter headers: %v", msg.Headers())
		}
	})
	// The services kept running and still answer.
	for _, name := range []string{"registry", "conversation", "scriptrouter", "mnoadapter-mno-a", "sesimulator"} {
		if code := e.httpJSON(http.MethodGet, name, "/readyz", nil, nil); code != 200 {
			t.Fatalf("%s not ready after bad input: %d", name, code)
		}
	}
	if _, err := c.GetSEID(ctxT(t), contract.GetSEIDRequest{MSI: se.MSI}); err != nil {
		t.Fatalf("valid request after bad input: %v", err)
	}
}

func wantCode(t *testing.T, err error, code contract.Code) {
	t.Helper()
	var f *spclient.FailedError
	if err == nil {
		t.Fatalf("succeeded, want %s", code)
	}
	if !asFailed(err, &f) || f.Code() != code {
		t.Fatalf("error %v, want %s", err, code)
	}
}
