package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/sesimulator/adapters"
	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
)

// recordingFleet is the real bbolt fleet; it also keeps the results that
// committed transactions emitted, so tests can read the responses.
type recordingFleet struct {
	*adapters.FleetStore
	mu       sync.Mutex
	results  []events.SEExecuted
	failNext bool
}

type capturingWriter struct {
	app.FleetWriter
	emitted *[]events.SEExecuted
}

func (w capturingWriter) EmitExecuted(r events.SEExecuted, correlationID string) error {
	*w.emitted = append(*w.emitted, r)
	return w.FleetWriter.EmitExecuted(r, correlationID)
}

var errInjected = errors.New("injected commit failure")

func (f *recordingFleet) Write(fn func(app.FleetWriter) error) error {
	f.mu.Lock()
	fail := f.failNext
	f.failNext = false
	f.mu.Unlock()
	var emitted []events.SEExecuted
	err := f.FleetStore.Write(func(w app.FleetWriter) error {
		emitted = emitted[:0]
		if err := fn(capturingWriter{FleetWriter: w, emitted: &emitted}); err != nil {
			return err
		}
		if fail {
			return errInjected // rolls the whole transaction back, as a crash before the commit would
		}
		return nil
	})
	if err == nil {
		f.mu.Lock()
		f.results = append(f.results, emitted...)
		f.mu.Unlock()
	}
	return err
}

func (f *recordingFleet) last(t testing.TB) events.SEExecuted {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.results) == 0 {
		t.Fatal("no result emitted")
	}
	return f.results[len(f.results)-1]
}

func (f *recordingFleet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.results)
}

type fixture struct {
	store *bus.Store
	fleet *recordingFleet
	app   *app.App
	now   time.Time
}

func newFixture(t testing.TB, cacheCards int) *fixture {
	t.Helper()
	store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(t.TempDir(), "sesimulator.db"), Buckets: adapters.Buckets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	f := &fixture{store: store, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f.fleet = &recordingFleet{FleetStore: newFleetStore(t, store)}
	f.app = f.newApp(cacheCards)
	return f
}

func newFleetStore(t testing.TB, store *bus.Store) *adapters.FleetStore {
	sealer, err := adapters.NewStateSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return adapters.NewFleetStore(store, sealer)
}

// newApp returns use cases over the same storage with an empty cache, as
// after a restart of the service.
func (f *fixture) newApp(cacheCards int) *app.App {
	return app.New(f.fleet, app.Config{
		Factory:        domain.Factory{IssuerMasterKey: domain.DemoIssuerMasterKey, SPMasterKeys: domain.DemoSPMasterKeys()},
		EnrolmentGrace: 15 * time.Second,
		CacheCards:     cacheCards,
		Now:            func() time.Time { return f.now },
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

var ctx = context.Background()

func (f *fixture) enrol(t testing.TB, seID, configuration string) {
	t.Helper()
	if _, err := f.app.Enrol(ctx, app.EnrolCommand{EventID: bus.NewID(), Record: cardtest.Record(seID, configuration)}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) execute(t testing.TB, eventID, seID, conversationID string, commands ...string) error {
	t.Helper()
	return f.app.Execute(ctx, app.ExecuteCommand{EventID: eventID, StoredAt: f.now, SEID: seID,
		ConversationID: conversationID, ScriptID: "script-" + eventID, Commands: commands,
		Request: events.RequestRef{SPID: cardtest.SPID, RequestID: "req-" + eventID, Op: "send-script"}})
}

const seA, seB = "0102030405060708", "0102030405060709"

func TestEnrolManufacturesOnceAndNeverTouchesAnExistingCard(t *testing.T) {
	f := newFixture(t, 16)
	made, err := f.app.Enrol(ctx, app.EnrolCommand{EventID: "e1", Record: cardtest.Record(seA, "uicc")})
	if err != nil || !made {
		t.Fatalf("first enrolment: made=%v err=%v", made, err)
	}
	if err := f.execute(t, "x1", seA, "c1", cardtest.SelectISD); err != nil {
		t.Fatal(err)
	}
	changed := cardtest.Record(seA, "embedded")
	changed.PreIssuedSPDomains = nil
	for _, a := range []*app.App{f.app, f.newApp(16)} { // warm cache, then storage only
		for _, rec := range []events.SERecord{cardtest.Record(seA, "uicc"), changed} {
			made, err := a.Enrol(ctx, app.EnrolCommand{EventID: bus.NewID(), Record: rec})
			if err != nil || made {
				t.Fatalf("re-enrolment: made=%v err=%v, want an untouched card", made, err)
			}
		}
		v, err := a.Card(ctx, seA)
		if err != nil {
			t.Fatal(err)
		}
		if v.Configuration != card.UICC || v.ExecutionCount != 1 || len(v.Registry) == 0 {
			t.Errorf("card changed by a later record: config %s, executions %d", v.Configuration, v.ExecutionCount)
		}
	}
	n, err := f.app.CardCount(ctx)
	if err != nil || n != 1 {
		t.Errorf("CardCount = %d, %v", n, err)
	}
}

func TestEnrolRejectsUnknownConfiguration(t *testing.T) {
	f := newFixture(t, 16)
	_, err := f.app.Enrol(ctx, app.EnrolCommand{EventID: "e1", Record: cardtest.Record(seA, "toaster")})
	if !errors.Is(err, domain.ErrRejectedRecord) {
		t.Fatalf("err = %v, want ErrRejectedRecord", err)
	}
	if _, err := f.app.Card(ctx, seA); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("a card exists after a rejected record: %v", err)
	}
}

func TestRedeliveredEventIsNotExecutedAgain(t *testing.T) {
	f := newFixture(t, 16)
	f.enrol(t, seA, "uicc")
	for i := 0; i < 3; i++ {
		if err := f.execute(t, "ev-1", seA, "c1", cardtest.SelectISD, cardtest.SelectSD()); err != nil {
			t.Fatal(err)
		}
	}
	c, err := f.app.Counters(ctx, seA)
	if err != nil {
		t.Fatal(err)
	}
	if c.ScriptsExecuted != 1 || c.APDUsExecuted != 2 || c.LastScriptID != "script-ev-1" {
		t.Errorf("counters after 3 deliveries of one event: %+v", c)
	}
	if f.fleet.count() != 1 {
		t.Errorf("%d results emitted, want 1", f.fleet.count())
	}
	v, _ := f.app.Card(ctx, seA)
	if v.ExecutionCount != 2 {
		t.Errorf("card executed %d APDUs, want 2", v.ExecutionCount)
	}
}

func TestCommitFailureLeavesTheCommittedCard(t *testing.T) {
	f := newFixture(t, 16)
	f.enrol(t, seA, "uicc")
	f.fleet.failNext = true
	if err := f.execute(t, "ev-1", seA, "c1", cardtest.SelectISD, cardtest.SelectSD()); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	v, err := f.app.Card(ctx, seA)
	if err != nil {
		t.Fatal(err)
	}
	if v.ExecutionCount != 0 || v.SessionConversationID != "" {
		t.Errorf("uncommitted script visible: executions %d, session %q", v.ExecutionCount, v.SessionConversationID)
	}
	// The redelivery runs the script on the committed state, once.
	if err := f.execute(t, "ev-1", seA, "c1", cardtest.SelectISD, cardtest.SelectSD()); err != nil {
		t.Fatal(err)
	}
	v, _ = f.app.Card(ctx, seA)
	c, _ := f.app.Counters(ctx, seA)
	if v.ExecutionCount != 2 || c.APDUsExecuted != 2 || c.ScriptsExecuted != 1 || f.fleet.count() != 1 {
		t.Errorf("after redelivery: executions %d, counters %+v, results %d", v.ExecutionCount, c, f.fleet.count())
	}
}

// runSession runs INITIALIZE UPDATE in one script and EXTERNAL
// AUTHENTICATE + a secured GET STATUS in the next, calling between before
// the second script. It returns the second script's result.
func runSession(t *testing.T, f *fixture, conv1, conv2 string, between func()) (events.SEExecuted, bool) {
	t.Helper()
	host := cardtest.Host(t, seA)
	iu, err := host.InitializeUpdate(card.KVNIssuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, bus.NewID(), seA, conv1, cardtest.SelectSD(), cardtest.Hex(iu)); err != nil {
		t.Fatal(err)
	}
	r1 := f.fleet.last(t)
	if len(r1.Responses) != 2 || cardtest.SW(t, r1.Responses[1]) != 0x9000 {
		t.Fatalf("script 1 responses %v", r1.Responses)
	}
	if err := host.ProcessInitializeUpdateResponse(cardtest.Unhex(t, r1.Responses[1])); err != nil {
		t.Fatalf("INITIALIZE UPDATE response: %v", err)
	}
	between()
	ea, err := host.ExternalAuthenticate(0x33)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := host.Wrap(cardtest.GetStatusPlain)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, bus.NewID(), seA, conv2, cardtest.Hex(ea), cardtest.Hex(gs)); err != nil {
		t.Fatal(err)
	}
	r2 := f.fleet.last(t)
	if len(r2.Responses) == 2 {
		data, sw, err := host.Unwrap(cardtest.Unhex(t, r2.Responses[1]))
		return r2, err == nil && sw == 0x9000 && len(data) > 0
	}
	return r2, false
}

func TestSecureChannelSurvivesCacheEvictionAndRestart(t *testing.T) {
	f := newFixture(t, 1)
	f.enrol(t, seA, "uicc")
	f.enrol(t, seB, "embedded")
	r2, ok := runSession(t, f, "conv-1", "conv-1", func() {
		// Another card takes the only cache slot, then a fresh App reads
		// everything back from bbolt, as after a restart.
		if err := f.execute(t, bus.NewID(), seB, "conv-b", cardtest.SelectISD); err != nil {
			t.Fatal(err)
		}
		f.app = f.newApp(1)
	})
	if !ok || cardtest.SW(t, r2.Responses[0]) != 0x9000 {
		t.Fatalf("session across scripts failed: responses %v", r2.Responses)
	}
}

func TestNewConversationStartsWithAResetCard(t *testing.T) {
	f := newFixture(t, 16)
	f.enrol(t, seA, "uicc")
	r2, ok := runSession(t, f, "conv-1", "conv-2", func() {})
	if ok || len(r2.Responses) != 1 {
		t.Fatalf("EXTERNAL AUTHENTICATE of an old conversation's session accepted: %v", r2.Responses)
	}
	if sw := cardtest.SW(t, r2.Responses[0]); sw == 0x9000 {
		t.Fatalf("SW %04X", sw)
	}
	v, _ := f.app.Card(ctx, seA)
	if v.SessionConversationID != "conv-2" {
		t.Errorf("session conversation %q, want conv-2", v.SessionConversationID)
	}
}

func TestScriptForAnSEWithoutCard(t *testing.T) {
	f := newFixture(t, 16)
	err := f.app.Execute(ctx, app.ExecuteCommand{EventID: "e1", StoredAt: f.now.Add(-14 * time.Second), SEID: seA,
		ConversationID: "c1", ScriptID: "s1", Commands: []string{cardtest.SelectISD}})
	if !errors.Is(err, app.ErrCardNotYetEnrolled) {
		t.Fatalf("within the grace period: err = %v, want ErrCardNotYetEnrolled (retry)", err)
	}
	if f.fleet.count() != 0 {
		t.Fatal("answered within the grace period")
	}
	err = f.app.Execute(ctx, app.ExecuteCommand{EventID: "e1", StoredAt: f.now.Add(-15 * time.Second), SEID: seA,
		ConversationID: "c1", ScriptID: "s1", Commands: []string{cardtest.SelectISD}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.fleet.last(t)
	if r.Error == nil || r.Error.Code != contract.CodeSEInaccessible || r.Responses == nil || len(r.Responses) != 0 {
		t.Errorf("result %+v", r)
	}
}

func TestScriptThatIsNotHexIsRefusedWhole(t *testing.T) {
	f := newFixture(t, 16)
	f.enrol(t, seA, "uicc")
	if err := f.execute(t, "e1", seA, "c1", cardtest.SelectISD, "00A4ZZ"); err != nil {
		t.Fatal(err)
	}
	r := f.fleet.last(t)
	if r.Error == nil || r.Error.Code != contract.CodeInvalidArgument || len(r.Responses) != 0 {
		t.Errorf("result %+v", r)
	}
	if v, _ := f.app.Card(ctx, seA); v.ExecutionCount != 0 {
		t.Errorf("card executed %d APDUs of a refused script", v.ExecutionCount)
	}
}

func TestTransmitAPDU(t *testing.T) {
	f := newFixture(t, 16)
	if _, err := f.app.TransmitAPDU(ctx, seA, cardtest.Unhex(t, cardtest.SelectISD)); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("no card: err = %v", err)
	}
	f.enrol(t, seA, "uicc")
	resp, err := f.app.TransmitAPDU(ctx, seA, cardtest.Unhex(t, cardtest.SelectISD))
	if err != nil || domain.StatusWord(resp) != 0x9000 {
		t.Fatalf("resp %X err %v", resp, err)
	}
	c, _ := f.newApp(16).Counters(ctx, seA)
	if c.APDUsExecuted != 1 || c.ScriptsExecuted != 0 {
		t.Errorf("counters %+v", c)
	}
}
