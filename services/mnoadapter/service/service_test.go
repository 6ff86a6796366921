package service_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
	"github.com/tsmhub/tsmhub/services/mnoadapter/service"
)

const mno = "mno-a"

func deliver(seID, scriptID string, commands ...string) events.MNODeliver {
	return events.MNODeliver{
		Request:        events.RequestRef{SPID: "sp-bank", RequestID: "req-" + scriptID, Op: topology.OpSendScript},
		ConversationID: "conv-" + scriptID, ScriptID: scriptID, SEID: seID, Commands: commands,
	}
}

// send publishes a deliver event with ce-id "ev-<scriptId>".
func (e *env) send(d events.MNODeliver) {
	e.t.Helper()
	e.publish(topology.MNODeliver(mno, d.SEID), events.TypeMNODeliver, "ev-"+d.ScriptID, "", d)
}

func decodeExecute(t *testing.T, m jetstream.Msg) events.SEExecute {
	t.Helper()
	var x events.SEExecute
	if err := json.Unmarshal(m.Data(), &x); err != nil {
		t.Fatal(err)
	}
	return x
}

func decodeExecuted(t *testing.T, m jetstream.Msg) events.SEExecuted {
	t.Helper()
	var x events.SEExecuted
	if err := json.Unmarshal(m.Data(), &x); err != nil {
		t.Fatal(err)
	}
	return x
}

func (e *env) getText(path string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.svc.Addr + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func TestDeliverHandsTheScriptToTheSE(t *testing.T) {
	e := newEnv(t, nil)
	d := deliver("0B01", "s-1", "80CA006600", "80F22000024F0000")
	d.ContinueOnError = true
	e.send(d)
	m := e.waitFor(topology.SEExecute("0B01"), 1, forScript("s-1"))[0]
	h := m.Headers()
	for name, want := range map[string]string{"ce-type": events.TypeSEExecute, "ce-source": "urn:tsm:svc:mnoadapter-mno-a",
		"ce-subject": "0B01", "ce-correlationid": "corr-ev-s-1"} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	x := decodeExecute(t, m)
	if x.MNO != mno || x.ConversationID != "conv-s-1" || x.SEID != "0B01" || !x.ContinueOnError || x.Request != d.Request ||
		strings.Join(x.Commands, ",") != "80CA006600,80F22000024F0000" {
		t.Errorf("execute %+v", x)
	}
	if got := e.matching(topology.SEExecuted("0B01"), nil); len(got) != 0 {
		t.Errorf("a delivered script was also answered: %d", len(got))
	}
	metrics := e.getText("/metrics")
	for _, want := range []string{`tsm_mno_deliveries_total{mno="mno-a",outcome="delivered"} 1`,
		`tsm_mno_delivery_latency_seconds_count{mno="mno-a"} 1`, `tsm_mno_queue_depth{mno="mno-a"}`,
		`tsm_mno_bearer_waiting{mno="mno-a"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestDuplicateDeliverIsDeliveredOnce(t *testing.T) {
	e := newEnv(t, nil)
	d := deliver("0B02", "s-dup", "80CA006600")
	// The same event twice, the second beyond JetStream's duplicate window.
	e.publish(topology.MNODeliver(mno, "0B02"), events.TypeMNODeliver, "ev-dup", "", d)
	e.publish(topology.MNODeliver(mno, "0B02"), events.TypeMNODeliver, "ev-dup", "ev-dup-again", d)
	// Barrier: the next script of the same SE is handled after both (per-SE
	// order) and published after any output of theirs (outbox order).
	e.send(deliver("0B02", "s-barrier", "80CA006600"))
	e.waitFor(topology.SEExecute("0B02"), 1, forScript("s-barrier"))
	if got := e.matching(topology.SEExecute("0B02"), forScript("s-dup")); len(got) != 1 {
		t.Fatalf("%d SEExecute for one deliver event, want 1", len(got))
	}
}

func TestLatencyIsHonoured(t *testing.T) {
	const latency = 300 * time.Millisecond
	e := newEnv(t, func(c *service.Config) { c.Latency = latency })
	start := time.Now()
	e.send(deliver("0B03", "s-slow", "80CA006600"))
	e.waitFor(topology.SEExecute("0B03"), 1, forScript("s-slow"))
	if elapsed := time.Since(start); elapsed < latency {
		t.Errorf("delivered after %s, before the bearer latency of %s", elapsed, latency)
	}
	var s domain.Settings
	e.getJSON("/v1/mno", &s)
	if s.MNOID != mno || s.LatencyMs != 300 || s.LatencySource != domain.SourceEnvironment {
		t.Errorf("GET /v1/mno: %+v", s)
	}
}

func TestExpiredScriptIsAnsweredNotDelivered(t *testing.T) {
	e := newEnv(t, nil)
	d := deliver("0B04", "s-late", "80CA006600")
	d.ValidUntil = time.Now().Add(-time.Second)
	e.send(d)
	m := e.waitFor(topology.SEExecuted("0B04"), 1, forScript("s-late"))[0]
	if h := m.Headers(); h.Get("ce-type") != events.TypeSEExecuted || h.Get("ce-source") != "urn:tsm:svc:mnoadapter-mno-a" ||
		h.Get("ce-correlationid") != "corr-ev-s-late" {
		t.Errorf("headers %v", h)
	}
	x := decodeExecuted(t, m)
	if x.Error == nil || x.Error.Code != contract.CodeExpired || x.ConversationID != "conv-s-late" || x.Request != d.Request ||
		x.Responses == nil || len(x.Responses) != 0 {
		t.Errorf("executed %+v (error %+v)", x, x.Error)
	}
	e.send(deliver("0B04", "s-barrier", "80CA006600"))
	e.waitFor(topology.SEExecute("0B04"), 1, forScript("s-barrier"))
	if got := e.matching(topology.SEExecute("0B04"), forScript("s-late")); len(got) != 0 {
		t.Errorf("an expired script was delivered")
	}
}

func TestRegistryRecordSetsLatencyAndLimit(t *testing.T) {
	e := newEnv(t, func(c *service.Config) { c.LatencySet = false })
	var before domain.Settings
	e.getJSON("/v1/mno", &before)
	if before.RegistryRecord || before.LatencyMs != 0 || before.LatencySource != domain.SourceDefault {
		t.Fatalf("before any record: %+v", before)
	}
	rec := events.MNORecord{MNOID: mno, Name: "MNO A", OTACarrier: "sms", MaxAPDUsPerScript: 2, LatencyMs: 400}
	e.publish(topology.RegistryMNO(mno), events.TypeRegistryMNO, "reg-1", "", rec)
	var s domain.Settings
	bustest.Eventually(t, deadline, "the MNO record to apply", func() bool {
		e.getJSON("/v1/mno", &s)
		return s.RegistryRecord
	})
	if s.LatencyMs != 400 || s.LatencySource != domain.SourceRegistry || s.MaxAPDUsPerScript != 2 ||
		s.OTACarrier != "sms" || s.Name != "MNO A" {
		t.Errorf("settings %+v", s)
	}
	start := time.Now()
	e.send(deliver("0B05", "s-reg", "80CA006600"))
	e.waitFor(topology.SEExecute("0B05"), 1, forScript("s-reg"))
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
		t.Errorf("delivered after %s, before the registry latency of 400ms", elapsed)
	}
	e.send(deliver("0B05", "s-big", "80CA006600", "80CA006600", "80CA006600"))
	x := decodeExecuted(t, e.waitFor(topology.SEExecuted("0B05"), 1, forScript("s-big"))[0])
	if x.Error == nil || x.Error.Code != contract.CodeScriptTooLarge || !strings.Contains(x.Error.Message, "at most 2") {
		t.Errorf("3 APDUs over a 2-APDU bearer: %+v", x.Error)
	}
	// A record of another MNO on this MNO's subject is a wiring error: dead letter.
	e.publish(topology.RegistryMNO(mno), events.TypeRegistryMNO, "reg-2", "", events.MNORecord{MNOID: "mno-b", Name: "B", OTACarrier: "https"})
	dl := e.waitFor(topology.DeadLetter("mnoadapter", topology.MNOAdapterRegistry(mno).Name), 1, nil)[0]
	if !strings.Contains(dl.Headers().Get("Tsm-Dlq-Reason"), "mno-b") {
		t.Errorf("dead-letter reason %q", dl.Headers().Get("Tsm-Dlq-Reason"))
	}
}

func TestRateLimitSpacesDeliveries(t *testing.T) {
	e := newEnv(t, func(c *service.Config) { c.RateLimit, c.RateBurst = 4, 1 })
	start := time.Now()
	for _, se := range []string{"0B06", "0B07", "0B08"} {
		e.send(deliver(se, "s-"+se, "80CA006600"))
	}
	for _, se := range []string{"0B06", "0B07", "0B08"} {
		e.waitFor(topology.SEExecute(se), 1, forScript("s-"+se))
	}
	// One token at once, then one every 250ms: the third leaves 500ms later.
	if elapsed := time.Since(start); elapsed < 500*time.Millisecond {
		t.Errorf("3 scripts at 4/s with burst 1 delivered within %s", elapsed)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("MNO_ID", "")
	if _, err := service.ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "MNO_ID is required") {
		t.Errorf("without MNO_ID: %v", err)
	}
	t.Setenv("MNO_ID", "mno-b")
	t.Setenv("MNO_LATENCY", "250ms")
	t.Setenv("MNO_RATE_LIMIT", "0.5")
	t.Setenv("MNO_MAX_APDUS", "16")
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MNOID != "mno-b" || !cfg.LatencySet || cfg.Latency != 250*time.Millisecond || cfg.RateLimit != 0.5 ||
		cfg.RateBurst != 1 || cfg.MaxAPDUsPerScript != 16 || cfg.Kit.HTTPAddr != os.Getenv("HTTP_ADDR") && cfg.Kit.HTTPAddr != service.DefaultHTTPAddr {
		t.Errorf("config %+v", cfg)
	}
	t.Setenv("MNO_LATENCY", "soon")
	if _, err := service.ConfigFromEnv(); err == nil {
		t.Error("MNO_LATENCY=soon accepted")
	}
	t.Setenv("MNO_LATENCY", "")
	t.Setenv("MNO_ID", "MNO.A")
	if _, err := service.ConfigFromEnv(); err == nil {
		t.Error("MNO_ID with a dot accepted")
	}
}
