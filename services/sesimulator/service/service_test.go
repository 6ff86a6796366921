package service_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports"
	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

const (
	seUICC     = "4790504012345601"
	seEmbedded = "4790504012345602"
)

func TestEnrolmentManufacturesACardOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.enrol(cardtest.Record(seUICC, "uicc"))
	h.waitCard(seUICC)

	var c ports.CardJSON
	h.getJSON("/v1/cards/"+seUICC, &c)
	if c.Configuration != "uicc" || c.CIN != seUICC || len(c.Registry) < 4 {
		t.Fatalf("card %+v", c)
	}
	var sd *ports.EntryJSON
	for i, e := range c.Registry {
		if e.AID == cardtest.SDAID {
			sd = &c.Registry[i]
		}
	}
	if sd == nil || sd.Kind != "SD" || sd.AssociatedSD != cardtest.Hex(card.CentralSDAID) {
		t.Fatalf("pre-issued SP SD missing or misplaced: %+v", sd)
	}
	var cnt ports.CountersJSON
	if code := h.getJSON("/v1/cards/"+seUICC+"/counters", &cnt); code != http.StatusOK || cnt.APDUsExecuted != 0 || cnt.ScriptsExecuted != 0 {
		t.Fatalf("counters HTTP %d %+v, want 0/0", code, cnt)
	}

	// A changed record (another configuration, no pre-issued SD) leaves the
	// card as it was.
	changed := cardtest.Record(seUICC, "embedded")
	changed.PreIssuedSPDomains = nil
	seq := h.enrol(changed)
	h.waitConsumed(topology.SESimulatorRegistry, seq)
	var again ports.CardJSON
	h.getJSON("/v1/cards/"+seUICC, &again)
	if again.Configuration != "uicc" || len(again.Registry) != len(c.Registry) {
		t.Errorf("card re-manufactured by a changed record: %s, %d entries", again.Configuration, len(again.Registry))
	}
	var n ports.CardCountJSON
	if h.getJSON("/v1/cards?count=true", &n); n.Count != 1 {
		t.Errorf("count %d, want 1", n.Count)
	}
}

func TestUnknownConfigurationIsDeadLettered(t *testing.T) {
	h := newHarness(t, nil)
	h.enrol(cardtest.Record(seUICC, "toaster"))
	dlq := topology.DeadLetter(topology.SESimulatorRegistry.Service, topology.SESimulatorRegistry.Name)
	var reason string
	h.eventually("dead letter of the record", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := h.js.Stream(ctx, topology.StreamDeadLetters.Name)
		if err != nil {
			return false, err.Error()
		}
		m, err := st.GetLastMsgForSubject(ctx, dlq)
		if err != nil {
			return false, err.Error()
		}
		reason = m.Header.Get(bus.HeaderDLQReason)
		return true, ""
	})
	if !strings.Contains(reason, "unknown configuration") || !strings.Contains(reason, seUICC) {
		t.Errorf("dead-letter reason %q does not say what is wrong", reason)
	}
	if code := h.getJSON("/v1/cards/"+seUICC, nil); code != http.StatusNotFound {
		t.Errorf("card of a rejected record: HTTP %d", code)
	}
}

func TestExecuteSelectISD(t *testing.T) {
	h := newHarness(t, nil)
	h.enrol(cardtest.Record(seEmbedded, "embedded"))
	h.waitCard(seEmbedded)
	h.publish(topology.SEExecute(seEmbedded), h.executeEvent(seEmbedded, "conv-1", "script-1", cardtest.SelectISD), "")
	got := h.waitExecuted(seEmbedded, "script-1")

	ev, r := got.Event, got.Result
	if ev.Type() != events.TypeSEExecuted || ev.Source() != "urn:tsm:svc:sesimulator" || ev.Subject() != seEmbedded ||
		bus.StringExtension(ev, bus.ExtCorrelationID) != "req-script-1" {
		t.Errorf("attributes: type %s source %s subject %s correlation %q", ev.Type(), ev.Source(), ev.Subject(),
			bus.StringExtension(ev, bus.ExtCorrelationID))
	}
	if r.Error != nil || r.ConversationID != "conv-1" || r.SEID != seEmbedded || r.Request.SPID != cardtest.SPID {
		t.Errorf("result %+v", r)
	}
	if len(r.Responses) != 1 || !strings.HasPrefix(r.Responses[0], "6F") || !strings.HasSuffix(r.Responses[0], "9000") ||
		r.Responses[0] != strings.ToUpper(r.Responses[0]) {
		t.Fatalf("SELECT ISD answered %v, want an uppercase FCI with 9000", r.Responses)
	}
	if _, err := hex.DecodeString(r.Responses[0]); err != nil {
		t.Errorf("response is not hex: %v", err)
	}
	var cnt ports.CountersJSON
	h.getJSON("/v1/cards/"+seEmbedded+"/counters", &cnt)
	if cnt.APDUsExecuted != 1 || cnt.ScriptsExecuted != 1 || cnt.LastScriptID != "script-1" {
		t.Errorf("counters %+v", cnt)
	}
}

// TestSCP03SessionAcrossScriptsAndRestart runs INITIALIZE UPDATE in one
// script and EXTERNAL AUTHENTICATE plus a secured GET STATUS in the next
// script of the same conversation, with the service and the NATS server
// restarted in between.
func TestSCP03SessionAcrossScriptsAndRestart(t *testing.T) {
	h := newHarness(t, nil)
	h.enrol(cardtest.Record(seUICC, "uicc"))
	h.waitCard(seUICC)

	host := cardtest.Host(t, seUICC)
	iu, err := host.InitializeUpdate(card.KVNIssuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-1", "script-1", cardtest.SelectSD(), cardtest.Hex(iu)), "")
	r1 := h.waitExecuted(seUICC, "script-1").Result
	if got := sws(t, r1); len(got) != 2 || got[0] != "9000" || got[1] != "9000" {
		t.Fatalf("script 1 status words %v", got)
	}
	if err := host.ProcessInitializeUpdateResponse(cardtest.Unhex(t, r1.Responses[1])); err != nil {
		t.Fatalf("card cryptogram: %v", err)
	}

	h.restart()

	ea, err := host.ExternalAuthenticate(0x33) // C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION
	if err != nil {
		t.Fatal(err)
	}
	gs, err := host.Wrap(cardtest.GetStatusPlain)
	if err != nil {
		t.Fatal(err)
	}
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-1", "script-2", cardtest.Hex(ea), cardtest.Hex(gs)), "")
	r2 := h.waitExecuted(seUICC, "script-2").Result
	if got := sws(t, r2); len(got) != 2 || got[0] != "9000" || got[1] != "9000" {
		t.Fatalf("script 2 status words %v", got)
	}
	data, sw, err := host.Unwrap(cardtest.Unhex(t, r2.Responses[1]))
	if err != nil || sw != 0x9000 {
		t.Fatalf("secured GET STATUS response: SW %04X, %v (R-MAC must verify)", sw, err)
	}
	if !strings.Contains(cardtest.Hex(data), "4F09"+cardtest.SDAID) {
		t.Errorf("GET STATUS does not list the SD itself: %X", data)
	}
	var cnt ports.CountersJSON
	h.getJSON("/v1/cards/"+seUICC+"/counters", &cnt)
	if cnt.APDUsExecuted != 4 || cnt.ScriptsExecuted != 2 {
		t.Errorf("counters %+v, want 4 APDUs in 2 scripts", cnt)
	}
}

func TestRedeliveredExecuteRunsOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.enrol(cardtest.Record(seEmbedded, "embedded"))
	h.waitCard(seEmbedded)
	first := h.executeEvent(seEmbedded, "conv-1", "script-1", cardtest.SelectISD, cardtest.SelectSD())
	h.publish(topology.SEExecute(seEmbedded), first, "")
	h.waitExecuted(seEmbedded, "script-1")

	// The same event again, past JetStream's duplicate window (another
	// Nats-Msg-Id): only the service's inbox can recognise it. A later
	// script of the same SE is processed after it (per-SE order), so once
	// that one is answered the duplicate has been handled.
	h.publish(topology.SEExecute(seEmbedded), first, "redelivery-of-"+first.ID())
	h.publish(topology.SEExecute(seEmbedded), h.executeEvent(seEmbedded, "conv-1", "script-3", cardtest.SelectISD), "")
	h.waitExecuted(seEmbedded, "script-3")

	var cnt ports.CountersJSON
	h.getJSON("/v1/cards/"+seEmbedded+"/counters", &cnt)
	if cnt.ScriptsExecuted != 2 || cnt.APDUsExecuted != 3 {
		t.Errorf("counters %+v, want 2 scripts and 3 APDUs", cnt)
	}
	perScript := map[string]int{}
	for _, e := range h.executedEvents(seEmbedded) {
		perScript[e.Result.ScriptID]++
	}
	if perScript["script-1"] != 1 || perScript["script-3"] != 1 {
		t.Errorf("results per script %v, want one each", perScript)
	}
}

func TestNewConversationResetsTheSecureChannel(t *testing.T) {
	h := newHarness(t, nil)
	h.enrol(cardtest.Record(seUICC, "uicc"))
	h.waitCard(seUICC)
	host := cardtest.Host(t, seUICC)
	iu, _ := host.InitializeUpdate(card.KVNIssuer, nil)
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-1", "script-1", cardtest.SelectSD(), cardtest.Hex(iu)), "")
	r1 := h.waitExecuted(seUICC, "script-1").Result
	if err := host.ProcessInitializeUpdateResponse(cardtest.Unhex(t, r1.Responses[1])); err != nil {
		t.Fatal(err)
	}
	ea, _ := host.ExternalAuthenticate(0x11)
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-1", "script-2", cardtest.Hex(ea)), "")
	if got := sws(t, h.waitExecuted(seUICC, "script-2").Result); len(got) != 1 || got[0] != "9000" {
		t.Fatalf("EXTERNAL AUTHENTICATE: %v", got)
	}

	// The secure channel is open; a script of another conversation must not
	// find it: the card was power-cycled for the new OTA session.
	gs, _ := host.Wrap(cardtest.GetStatusPlain)
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-2", "script-3", cardtest.Hex(gs), cardtest.SelectISD), "")
	r3 := h.waitExecuted(seUICC, "script-3").Result
	if len(r3.Responses) != 1 {
		t.Fatalf("script did not stop at the failing command: %v", sws(t, r3))
	}
	if sw := cardtest.SW(t, r3.Responses[0]); events.CommandSucceeded(sw) || sw != 0x6982 {
		t.Errorf("secured command after a new conversation answered %04X, want 6982", sw)
	}
	var c ports.CardJSON
	if h.getJSON("/v1/cards/"+seUICC, &c); c.SessionConversationID != "conv-2" {
		t.Errorf("session conversation %q, want conv-2", c.SessionConversationID)
	}
}

func TestScriptForUnknownSEAnsweredAfterGrace(t *testing.T) {
	const grace = 500 * time.Millisecond
	h := newHarness(t, func(c *service.Config) { c.EnrolmentGrace = grace })
	published := time.Now()
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-1", "script-1", cardtest.SelectISD), "")
	got := h.waitExecuted(seUICC, "script-1")
	if elapsed := got.Event.Time().Sub(published); elapsed < grace {
		t.Errorf("answered after %s, before the %s grace period", elapsed, grace)
	}
	r := got.Result
	if r.Error == nil || r.Error.Code != contract.CodeSEInaccessible || !strings.Contains(r.Error.Message, seUICC) ||
		len(r.Responses) != 0 {
		t.Errorf("result %+v, want SE_INACCESSIBLE naming the SE", r)
	}
}

func TestScriptWaitsForALateEnrolment(t *testing.T) {
	h := newHarness(t, nil) // 15 s grace
	seq := h.publish(topology.SEExecute(seEmbedded), h.executeEvent(seEmbedded, "conv-1", "script-1", cardtest.SelectISD), "")
	// Let the simulator see the script before the SE exists, then enrol it.
	h.eventually("first delivery of the script", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := h.js.Consumer(ctx, topology.StreamSteps.Name, topology.SESimulatorExecute.Name)
		if err != nil {
			return false, err.Error()
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.Delivered.Stream >= seq, fmt.Sprintf("delivered up to %d", info.Delivered.Stream)
	})
	h.enrol(cardtest.Record(seEmbedded, "embedded"))
	r := h.waitExecuted(seEmbedded, "script-1").Result
	if r.Error != nil || len(r.Responses) != 1 || cardtest.SW(t, r.Responses[0]) != 0x9000 {
		t.Errorf("result %+v, want the script run once the card exists", r)
	}
}

func TestExecutedEventsMatchTheirSchema(t *testing.T) {
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	if !schemas.Has(events.TypeSEExecuted) {
		t.Skipf("no schema for %s yet", events.TypeSEExecuted)
	}
	h := newHarness(t, func(c *service.Config) { c.EnrolmentGrace = 200 * time.Millisecond })
	h.enrol(cardtest.Record(seEmbedded, "embedded"))
	h.waitCard(seEmbedded)
	h.publish(topology.SEExecute(seEmbedded), h.executeEvent(seEmbedded, "conv-1", "script-1", cardtest.SelectISD), "")
	h.publish(topology.SEExecute(seUICC), h.executeEvent(seUICC, "conv-1", "script-2", cardtest.SelectISD), "")
	for _, e := range []executed{h.waitExecuted(seEmbedded, "script-1"), h.waitExecuted(seUICC, "script-2")} {
		if err := schemas.Validate(events.TypeSEExecuted, e.Event.Data()); err != nil {
			t.Errorf("%s: %v", e.Result.ScriptID, err)
		}
	}
}
