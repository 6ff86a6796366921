package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/conversation/service"
)

// The harness runs a real embedded nats-server and the service in-process on
// a bbolt file in a temporary directory. The test plays the registry and the
// script router by publishing their events, and the SP TSMs by publishing
// requests and reading TSM_RES.

const waitLimit = 15 * time.Second // generous: tests must pass on a loaded 2-core machine

type harness struct {
	t       *testing.T
	dataDir string
	cfg     service.Config
	srv     *bustest.Server
	js      jetstream.JetStream
	svc     *bustest.Service
	schemas *bus.Schemas

	// res follows TSM_RES (what SPs receive), steps the script requests on
	// TSM_STEPS, both from the start of the streams.
	res   *bustest.Recorder
	steps *bustest.Recorder
}

type received struct {
	Subject string
	Header  nats.Header
	Data    []byte
}

func (r received) header(name string) string { return r.Header.Get(name) }

func toReceived(m jetstream.Msg) received {
	return received{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
}

// newHarness starts NATS and the service; cfg tweaks the service config.
func newHarness(t *testing.T, tweak func(*service.Config)) *harness {
	t.Helper()
	h := &harness{t: t, dataDir: t.TempDir()}
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	h.schemas = schemas
	h.cfg = service.Config{
		MaxScripts: 16, DefaultMaxAPDUsPerScript: 32, TTL: time.Minute, SweepInterval: 50 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&h.cfg)
	}
	h.srv = bustest.StartJetStream(t)
	h.js = h.srv.JS
	h.startService()
	return h
}

func testLogger() *slog.Logger {
	if os.Getenv("CONV_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

func (h *harness) startService() {
	h.t.Helper()
	cfg := h.cfg
	cfg.Kit = servicekit.Config{Name: service.Name, NATSURL: h.srv.URL(), DataDir: h.dataDir,
		HTTPAddr: "127.0.0.1:0", Workers: 4, Log: testLogger()}
	h.svc = bustest.StartService(h.t, func(ctx context.Context, bound chan<- string) error {
		cfg.Kit.HTTPBound = bound
		return service.Run(ctx, cfg)
	})
	h.res = bustest.Record(h.t, h.js, topology.StreamResponses.Name, "tsm.sp.>")
	h.steps = bustest.Record(h.t, h.js, topology.StreamSteps.Name, topology.ScriptRequested("*"))
}

// restart stops the service and the NATS server and starts both again on the
// same data directory and JetStream store.
func (h *harness) restart() {
	h.t.Helper()
	h.svc.Stop(h.t)
	h.res.Stop()
	h.steps.Stop()
	h.srv.Restart(h.t)
	h.js = h.srv.JS
	h.startService()
}

// responseTo keeps the responses correlated with an SP request.
func responseTo(sp, requestID string) func(jetstream.Msg) bool {
	return func(m jetstream.Msg) bool {
		return strings.HasPrefix(m.Subject(), "tsm.sp."+sp+".res.") && m.Headers().Get("ce-correlationid") == requestID
	}
}

// responsesTo returns the responses correlated with an SP request, in order.
func (h *harness) responsesTo(sp, requestID string) []received {
	var out []received
	for _, m := range h.res.Messages() {
		if responseTo(sp, requestID)(m) {
			out = append(out, toReceived(m))
		}
	}
	return out
}

// response waits for the n-th (1-based) response to an SP request.
func (h *harness) responseN(sp, requestID string, n int) received {
	h.t.Helper()
	got := h.res.Wait(h.t, waitLimit, fmt.Sprintf("response %d to %s/%s", n, sp, requestID), n, responseTo(sp, requestID))
	return toReceived(got[n-1])
}

func (h *harness) response(sp, requestID string) received { return h.responseN(sp, requestID, 1) }

// notification waits for a notification of kind to sp.
func (h *harness) notification(sp, kind string) received {
	h.t.Helper()
	got := h.res.Wait(h.t, waitLimit, "notification "+kind+" to "+sp, 1, func(m jetstream.Msg) bool {
		return m.Subject() == topology.SPNotification(sp, kind)
	})
	return toReceived(got[0])
}

// scriptRequest waits for the n-th ScriptRequested event.
func (h *harness) scriptRequest(n int) (received, events.ScriptRequested) {
	h.t.Helper()
	got := toReceived(h.steps.Wait(h.t, waitLimit, fmt.Sprintf("script request %d", n), n, nil)[n-1])
	var s events.ScriptRequested
	if err := json.Unmarshal(got.Data, &s); err != nil {
		h.t.Fatal(err)
	}
	return got, s
}

// scriptRequestsStored counts the ScriptRequested messages the stream holds
// for an SE: the stream's own count, independent of the test's reader.
func (h *harness) scriptRequestsStored(seID string) uint64 {
	h.t.Helper()
	return uint64(bustest.CountMessages(h.t, h.js, topology.StreamSteps.Name, topology.ScriptRequested(seID)))
}

func (h *harness) publish(m *nats.Msg) {
	h.t.Helper()
	bustest.PublishMsg(h.t, h.js, m)
}

// request publishes an SP request as an SP TSM would.
func (h *harness) request(sp, op, requestID string, body any) {
	h.t.Helper()
	h.publish(h.requestMsg(sp, op, requestID, body))
}

func (h *harness) requestMsg(sp, op, requestID string, body any) *nats.Msg {
	h.t.Helper()
	return bustest.Encode(h.t, topology.SPRequest(sp, op), bustest.Event{ID: requestID, Source: topology.SPSourcePrefix + sp,
		Type: "tsm." + op + topology.RequestTypeSuffix, Data: body})
}

// resend re-sends a request with the same ce-id. The Nats-Msg-Id header is
// left out: TSM_REQ deduplicates ids within 100ms, which would hide a quick
// re-send from the service, and it is the service's own idempotency (by
// spId/ce-id) under test.
func (h *harness) resend(sp, op, requestID string, body any) {
	h.t.Helper()
	m := h.requestMsg(sp, op, requestID, body)
	m.Header.Del(bus.HeaderMsgID)
	h.publish(m)
}

// mno records used as the registry would resolve them.
var (
	mnoHTTPS = events.MNORecord{MNOID: "mno-web", Name: "Web Mobile", OTACarrier: "https", MaxAPDUsPerScript: 20, LatencyMs: 5}
	mnoSMS   = events.MNORecord{MNOID: "mno-sms", Name: "SMS Mobile", OTACarrier: "sms", LatencyMs: 5}
)

const targetAID = "A0000005550101"

// begin publishes the registry's ConversationBegin for an SP request.
func (h *harness) begin(sp, requestID, seID string, mno events.MNORecord, validUntil time.Time) {
	h.t.Helper()
	now := time.Now().UTC()
	ev := events.ConversationBegin{
		Request: events.RequestRef{SPID: sp, RequestID: requestID, Op: topology.OpBeginConversation},
		Params: contract.BeginConversationRequest{SEID: seID, TargetAID: targetAID,
			ServiceID: &contract.ServiceID{Number: "pay", Version: "1"}, RequestedOperation: contract.OperationKeyRotation},
		SE: events.SERecord{SEID: seID, MSI: "4915100000001", MSIType: "MSISDN", MNO: mno.MNOID, SEType: "eSE",
			Configuration: "embedded", ProfileID: "p1", GPVersion: "2.3", JavaCardVersion: "3.0.5",
			CertificationLevel: "EAL5+", ExpiresAt: now.AddDate(5, 0, 0), Status: "active", UpdatedAt: now},
		MNO: mno, ReceivedAt: now, ValidUntil: validUntil,
	}
	h.publishStep(topology.ConversationBegin(seID), events.TypeConvBegin, "urn:tsm:svc:registry", seID, requestID, ev)
}

func (h *harness) publishStep(subject, typ, source, ceSubject, correlation string, data any) {
	h.t.Helper()
	if err := h.schemas.Validate(typ, mustJSON(h.t, data)); err != nil {
		h.t.Fatalf("test event %s does not match its schema: %v", typ, err)
	}
	bustest.Publish(h.t, h.js, subject, bustest.Event{Source: source, Type: typ, Subject: ceSubject, Correlation: correlation, Data: data})
}

// complete publishes the script router's ScriptCompleted for a script.
func (h *harness) complete(s events.ScriptRequested, resp contract.SendScriptResponse) {
	h.t.Helper()
	h.publishStep(topology.ScriptCompleted(s.SEID), events.TypeScriptCompleted, "urn:tsm:svc:scriptrouter", s.SEID,
		s.Request.RequestID, events.ScriptCompleted{Request: s.Request, ConversationID: s.ConversationID,
			ScriptID: s.ScriptID, SEID: s.SEID, Response: resp})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode reads a response body and checks it against the published schema of
// its ce-type.
func (h *harness) decode(r received, v any) {
	h.t.Helper()
	typ := r.header("ce-type")
	if err := h.schemas.Validate(typ, r.Data); err != nil {
		h.t.Fatalf("%s body %s does not match its schema: %v", typ, r.Data, err)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		h.t.Fatal(err)
	}
}

// beginOK waits for a successful begin response and returns it.
func (h *harness) beginOK(sp, requestID string) contract.BeginConversationResponse {
	h.t.Helper()
	var resp contract.BeginConversationResponse
	h.decode(h.response(sp, requestID), &resp)
	if resp.Status != contract.StatusSuccess || !strings.HasPrefix(resp.ConversationID, "cv-") {
		h.t.Fatalf("begin %s: %+v", requestID, resp)
	}
	return resp
}

// failure waits for a failure response and checks its status, code and message.
func (h *harness) failure(sp, requestID string, status contract.Status, code contract.Code, text string) contract.Error {
	h.t.Helper()
	var resp contract.FailureBody
	h.decode(h.response(sp, requestID), &resp)
	if resp.Status != status || resp.Error == nil || resp.Error.Code != code || !strings.Contains(resp.Error.Message, text) {
		h.t.Fatalf("request %s answered %+v (%v), want %s %s mentioning %q", requestID, resp, resp.Error, status, code, text)
	}
	return *resp.Error
}

// endOK ends a conversation and waits for the success response.
func (h *harness) endOK(sp, requestID, conversationID string) {
	h.t.Helper()
	h.request(sp, topology.OpEndConversation, requestID, contract.EndConversationRequest{ConversationID: conversationID, Outcome: "success"})
	var resp contract.EndConversationResponse
	h.decode(h.response(sp, requestID), &resp)
	if resp.Status != contract.StatusSuccess || resp.ConversationID != conversationID || resp.Outcome != "success" {
		h.t.Fatalf("end %s: %+v", conversationID, resp)
	}
}

// get fetches an HTTP resource; it returns the status and decodes JSON into v.
func (h *harness) get(path string, v any) int {
	h.t.Helper()
	return h.svc.GetJSON(h.t, path, v)
}

// conversationView is what GET /v1/conversations/{id} returns.
type conversationView struct {
	ConversationID string `json:"conversationId"`
	State          string `json:"state"`
	SEID           string `json:"seId"`
	SPID           string `json:"spId"`
	ScriptsRun     int    `json:"scriptsRun"`
	RunningScript  *struct {
		ScriptID string `json:"scriptId"`
	} `json:"runningScript"`
	ExpiresAt     time.Time `json:"expiresAt"`
	WaitingBegins int       `json:"waitingBegins"`
}
