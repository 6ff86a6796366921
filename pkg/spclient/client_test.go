package spclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

const testSP = "bank-a"

// respond publishes a response to a request as the central TSM does. It
// reports failures with t.Error: it also runs on the fake responder's goroutines.
func respond(t *testing.T, js jetstream.JetStream, spID, op, correlationID string, body any) {
	t.Helper()
	m, err := bustest.Event{Source: topology.CentralSource, Type: "tsm." + op + topology.ResponseTypeSuffix,
		Correlation: correlationID, Data: body}.Msg(topology.SPResponse(spID, op))
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Error(err)
	}
}

// fakeResponder answers every SP request on its own goroutine, so responses
// come back in no particular order: get-se-id echoes the MSI as the SE id
// (msi "unknown" fails with NOT_FOUND), get-service-state is never answered,
// a request without ce-id gets INVALID_ARGUMENT without correlation id.
func fakeResponder(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, topology.StreamRequests.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spID, _, op, _ := topology.ParseSPSubject(m.Subject())
			ev, err := bus.Decode(m.Headers(), m.Data())
			if err != nil || ev.ID() == "" {
				respond(t, js, spID, op, ev.ID(), contract.FailureBody{Result: contract.Failure(
					contract.Errorf(contract.CodeInvalidArgument, "missing ce-id"))})
				return
			}
			switch op {
			case topology.OpGetSEID:
				var req contract.GetSEIDRequest
				_ = json.Unmarshal(ev.Data(), &req)
				if req.MSI == "unknown" {
					respond(t, js, spID, op, ev.ID(), contract.FailureBody{Result: contract.Failure(
						contract.Errorf(contract.CodeNotFound, "no SE for this MSI"))})
					return
				}
				respond(t, js, spID, op, ev.ID(), contract.GetSEIDResponse{Result: contract.Success(),
					MSI: req.MSI, SEID: req.MSI, SEIDType: contract.SEIDTypeCIN})
			case topology.OpGetServiceState:
				// Never answered: the timeout test.
			default:
				respond(t, js, spID, op, ev.ID(), contract.FailureBody{Result: contract.Success()})
			}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Stop()
		wg.Wait()
	})
}

func newClient(t *testing.T, js jetstream.JetStream, opts ...Option) *Client {
	t.Helper()
	c, err := New(js, testSP, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestConcurrentCallsGetTheirOwnResponses(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	fakeResponder(t, js)
	c := newClient(t, js)
	// Another SP's client on the same bus must not see bank-a's responses.
	other, err := New(js, "bank-b")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			msi := fmt.Sprintf("+49151%07d", i)
			cl := c
			if i%10 == 0 {
				cl = other
			}
			resp, err := cl.GetSEID(ctx, contract.GetSEIDRequest{MSI: msi})
			if err != nil {
				errs <- fmt.Errorf("call %d: %w", i, err)
				return
			}
			if resp.SEID != msi || resp.Status != contract.StatusSuccess {
				errs <- fmt.Errorf("call %d for %s got the response for %s (%s)", i, msi, resp.SEID, resp.Status)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCallReplyAttributes(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	fakeResponder(t, js)
	c := newClient(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var resp contract.GetSEIDResponse
	r, err := c.Call(ctx, topology.OpGetSEID, contract.GetSEIDRequest{MSI: "+4915100000001"}, &resp, WithRequestID("call-attrs-1"))
	if err != nil {
		t.Fatal(err)
	}
	if r.CorrelationID != "call-attrs-1" || r.Type != "tsm.get-se-id.response" || r.Op != topology.OpGetSEID ||
		r.NATSSubject != topology.SPResponse(testSP, topology.OpGetSEID) || r.ID == "" || r.StreamSeq == 0 || !r.OK() {
		t.Errorf("reply %+v", r)
	}
	if resp.SEID != "+4915100000001" || r.Result.Status != contract.StatusSuccess || len(r.Body) == 0 {
		t.Errorf("response %+v, result %+v", resp, r.Result)
	}
}

func TestFailedResponseIsFailedError(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	fakeResponder(t, js)
	c := newClient(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.GetSEID(ctx, contract.GetSEIDRequest{MSI: "unknown"})
	var fe *FailedError
	if !errors.As(err, &fe) || fe.Code() != contract.CodeNotFound {
		t.Fatalf("err = %v, want a FailedError with NOT_FOUND", err)
	}
	var cerr *contract.Error
	if !errors.As(err, &cerr) || cerr.Code != contract.CodeNotFound {
		t.Errorf("errors.As *contract.Error: %v", cerr)
	}
	if resp == nil || resp.Status != contract.StatusFailed {
		t.Errorf("response %+v, want it returned with status Failed", resp)
	}
}

func TestTimeoutSaysWhichRequest(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	fakeResponder(t, js)
	c := newClient(t, js, WithTimeout(300*time.Millisecond))
	start := time.Now()
	_, err := c.Call(context.Background(), topology.OpGetServiceState, map[string]string{"seId": "0102030405060708"}, nil,
		WithRequestID("never-answered-1"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	var te *TimeoutError
	if !errors.As(err, &te) || te.RequestID != "never-answered-1" || te.Op != topology.OpGetServiceState {
		t.Errorf("timeout error %+v", te)
	}
	if msg := err.Error(); !strings.Contains(msg, "never-answered-1") || !strings.Contains(msg, "Lookup") {
		t.Errorf("message %q does not name the request and Lookup", msg)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timeout took %s", d)
	}
	// A context deadline wins over the client default.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, topology.OpGetServiceState, map[string]string{}, nil); !errors.Is(err, ErrTimeout) {
		t.Errorf("context deadline: %v", err)
	}
}

func TestLookupFindsResponseStoredWhileOffline(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	// Responses stored before the client exists: the SP was offline.
	respond(t, js, testSP, topology.OpGetSEID, "offline-1", contract.GetSEIDResponse{Result: contract.Success(), SEID: "0A0B0C0D0E0F1011"})
	respond(t, js, testSP, topology.OpEndConversation, "offline-2", contract.FailureBody{Result: contract.Success()})
	respond(t, js, "bank-b", topology.OpGetSEID, "offline-3", contract.FailureBody{Result: contract.Success()})
	c := newClient(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Lookup(ctx, "offline-1")
	if err != nil {
		t.Fatal(err)
	}
	var resp contract.GetSEIDResponse
	if err := r.Decode(&resp); err != nil || resp.SEID != "0A0B0C0D0E0F1011" || r.CorrelationID != "offline-1" {
		t.Errorf("lookup: %+v %v", resp, err)
	}
	if _, err := c.Lookup(ctx, "offline-2", LookupOp(topology.OpEndConversation)); err != nil {
		t.Errorf("lookup by op: %v", err)
	}
	if _, err := c.Lookup(ctx, "offline-2", LookupOp(topology.OpGetSEID)); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup under another op: %v, want ErrNotFound", err)
	}
	// Another SP's response is not visible to bank-a.
	if _, err := c.Lookup(ctx, "offline-3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other SP's response: %v, want ErrNotFound", err)
	}
	if _, err := c.Lookup(ctx, "offline-1", LookupSince(time.Now().Add(time.Hour))); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup since the future: %v, want ErrNotFound", err)
	}
}

func TestPublishRaw(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	fakeResponder(t, js)
	c := newClient(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// No ce-id: the answer carries no correlation id and is matched by op.
	p, err := c.Publish(ctx, topology.OpGetSEID, nats.Header{"content-type": {"application/json"}}, []byte(`{"msi":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.CorrelationID != "" || r.Result.Status != contract.StatusFailed || r.Result.Error.Code != contract.CodeInvalidArgument {
		t.Errorf("reply %+v", r.Result)
	}
	// With a ce-id (any case) the answer is matched by correlation id.
	ev, _ := bus.NewEvent("raw-2", topology.SPSourcePrefix+testSP, "tsm.get-se-id.request", "", map[string]string{"msi": "+49"})
	m, _ := bus.Encode("x", ev)
	m.Header["Ce-Id"] = m.Header["ce-id"]
	delete(m.Header, "ce-id")
	p, err = c.Publish(ctx, topology.OpGetSEID, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = p.Wait(ctx); err != nil || r.CorrelationID != "raw-2" {
		t.Errorf("raw with ce-id: %v %+v", err, r)
	}
}

func TestNotifications(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	c := newClient(t, js)
	// Stored before the subscription: only delivered with NotificationsSince.
	publishNotification(t, js, testSP, "se-status-changed", "before")
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := c.Notifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	publishNotification(t, js, "bank-b", "service-state-changed", "other-sp")
	publishNotification(t, js, testSP, "service-state-changed", "after")
	select {
	case n := <-ch:
		if n.Kind != "service-state-changed" || n.Subject != "after" || n.Type != "tsm.service-state-changed.notification" || n.DecodeErr != nil {
			t.Errorf("notification %+v", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification")
	}
	cancel()
	deadline := time.After(20 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("channel not closed after cancel")
		}
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ch2, err := c.Notifications(ctx2, NotificationsSince(time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-ch2:
		if n.Subject != "before" {
			t.Errorf("first stored notification: %q", n.Subject)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stored notification not delivered")
	}
}

func publishNotification(t *testing.T, js jetstream.JetStream, spID, kind, subject string) {
	t.Helper()
	bustest.Publish(t, js, topology.SPNotification(spID, kind), bustest.Event{Source: topology.CentralSource,
		Type: "tsm." + kind + topology.NotificationTypeTail, Subject: subject, Data: map[string]string{"seId": subject}})
}

func TestCloseFailsPendingCalls(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	c, err := New(js, testSP)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Expect("pending-1")
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("pending after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Call(ctx, topology.OpGetSEID, map[string]string{}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: %v, want ErrClosed", err)
	}
}

func TestNewChecks(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	if _, err := New(js, "Bank A"); err == nil {
		t.Error("invalid SP id accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, topology.StreamResponses.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := New(js, testSP); err == nil || !strings.Contains(err.Error(), topology.StreamResponses.Name) {
		t.Errorf("missing stream: %v", err)
	}
}
