package service_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// spTester plays an SP TSM: it publishes requests as binary-mode CloudEvents
// with nats.go and reads every response addressed to the SP from the TSM_RES
// stream with one ordered consumer filtered to tsm.sp.<spId>.res.>.
type spTester struct {
	h    *harness
	spID string
	rec  *bustest.Recorder
}

// spResponse is one response read from TSM_RES.
type spResponse struct {
	Subject string
	Header  nats.Header
	Body    []byte
}

func toResponse(m jetstream.Msg) spResponse {
	return spResponse{Subject: m.Subject(), Header: m.Headers(), Body: m.Data()}
}

func toResponses(msgs []jetstream.Msg) []spResponse {
	out := make([]spResponse, len(msgs))
	for i, m := range msgs {
		out[i] = toResponse(m)
	}
	return out
}

// result decodes status and error of a response body.
func (r spResponse) result(t *testing.T) contract.Result {
	t.Helper()
	var res contract.Result
	if err := json.Unmarshal(r.Body, &res); err != nil {
		t.Fatalf("response body %s: %v", r.Body, err)
	}
	return res
}

func newSP(t *testing.T, h *harness, spID string) *spTester {
	t.Helper()
	return &spTester{h: h, spID: spID, rec: bustest.Record(t, h.js, "TSM_RES", "tsm.sp."+spID+".res.>")}
}

// requestMsg builds a well-formed request of op; tests spoil it to taste.
func (s *spTester) requestMsg(op, ceID string, body any) *nats.Msg {
	m := nats.NewMsg(topology.SPRequest(s.spID, op))
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("ce-id", ceID)
	m.Header.Set("ce-source", topology.SPSourcePrefix+s.spID)
	m.Header.Set("ce-type", "tsm."+op+".request")
	m.Header.Set("ce-time", time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set("content-type", "application/json")
	switch b := body.(type) {
	case string:
		m.Data = []byte(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			panic(err)
		}
		m.Data = raw
	}
	return m
}

// publish puts a request on the bus. No Nats-Msg-Id: the tests re-send
// requests on purpose, faster than the requests stream's dedup window.
func (s *spTester) publish(t *testing.T, m *nats.Msg) {
	t.Helper()
	bustest.PublishMsg(t, s.h.js, m)
}

// send publishes a well-formed request.
func (s *spTester) send(t *testing.T, op, ceID string, body any) {
	t.Helper()
	s.publish(t, s.requestMsg(op, ceID, body))
}

// await waits until n responses correlated to ceID have arrived and
// returns them in stream order.
func (s *spTester) await(t *testing.T, ceID string, n int) []spResponse {
	t.Helper()
	return s.awaitMatching(t, "response to "+ceID, n, func(r spResponse) bool {
		return r.Header.Get("ce-correlationid") == ceID
	})
}

// awaitMatching waits until n responses satisfy match.
func (s *spTester) awaitMatching(t *testing.T, what string, n int, match func(spResponse) bool) []spResponse {
	t.Helper()
	return toResponses(s.rec.Wait(t, waitTimeout, what, n, func(m jetstream.Msg) bool { return match(toResponse(m)) }))
}

// call sends a well-formed request and returns its one response.
func (s *spTester) call(t *testing.T, op, ceID string, body any) spResponse {
	t.Helper()
	s.send(t, op, ceID, body)
	return s.await(t, ceID, 1)[0]
}

// all returns every response received so far.
func (s *spTester) all() []spResponse { return toResponses(s.rec.Messages()) }

// rawRequest builds a raw request message for a subject, well-formed but for
// what the subject itself gets wrong.
func rawRequest(subject, body string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("ce-id", "raw-"+subject)
	m.Header.Set("ce-source", "urn:tsm:sp:unknown")
	m.Header.Set("ce-type", "tsm.get-se-id.request")
	m.Header.Set("content-type", "application/json")
	m.Data = []byte(body)
	return m
}

// defaultSDAID is the registry's documented default SD AID of an SP.
func defaultSDAID(spID string) string { return domain.DefaultSecurityDomainAID(spID) }
