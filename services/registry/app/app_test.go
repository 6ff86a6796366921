package app_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/keycustody"

	"github.com/tsmhub/tsmhub/services/registry/adapters"
	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	reg   *app.Registry
	repo  *adapters.Repository
	store *bus.Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(t.TempDir(), "registry.db"), Buckets: adapters.Buckets()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c, err := adapters.NewKeyCipher(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	repo := adapters.NewRepository(store, c, keycustody.DemoKeyExchangeKey)
	f := &fixture{reg: app.New(repo, func() time.Time { return now }), repo: repo, store: store}
	if _, _, err := f.reg.PutMNO("mno-a", domain.MNOInput{Name: "MNO A", OTACarrier: domain.CarrierHTTPS}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.reg.PutMNO("mno-b", domain.MNOInput{Name: "MNO B", OTACarrier: domain.CarrierSMS}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.reg.PutSP("bank-a", domain.SPInput{Name: "Bank A", KeyTransportKey: strings.Repeat("11", 16)}); err != nil {
		t.Fatal(err)
	}
	return f
}

func seInput(msi string) domain.SEInput {
	return domain.SEInput{MSI: msi, MNO: "mno-a", SEType: domain.SETypeESE, Configuration: domain.ConfigEmbedded,
		ProfileID: "p1", GPVersion: "2.3.1", JavaCardVersion: "3.0.5", CertificationLevel: "EAL5+",
		ExpiresAt: "2030-01-01T00:00:00Z"}
}

func seID(n int) string { return fmt.Sprintf("%016X", 0x1000_0000_0000_0000+n) }

func wantKind(t *testing.T, err error, kind app.ErrorKind) *app.Error {
	t.Helper()
	e, ok := app.AsError(err)
	if !ok || e.Kind != kind {
		t.Fatalf("want a %s error, got %v", kind, err)
	}
	return e
}

func TestPutSEIsIdempotentAndPublishesOnlyChanges(t *testing.T) {
	f := newFixture(t)
	base := f.store.OutboxLen()
	se, outcome, err := f.reg.PutSE(strings.ToLower(seID(1)), seInput("+491700000001"))
	if err != nil || outcome != app.Created || se.ID != seID(1) || !se.UpdatedAt.Equal(now) {
		t.Fatalf("create: %+v %v %v", se, outcome, err)
	}
	if _, outcome, err = f.reg.PutSE(seID(1), seInput("491700000001")); err != nil || outcome != app.Unchanged {
		t.Fatalf("same SE again: %v %v", outcome, err)
	}
	in := seInput("491700000001")
	in.ProfileID = "p2"
	if _, outcome, err = f.reg.PutSE(seID(1), in); err != nil || outcome != app.Updated {
		t.Fatalf("changed SE: %v %v", outcome, err)
	}
	if n := f.store.OutboxLen() - base; n != 2 {
		t.Fatalf("%d records published, want 2 (create and change; none for the unchanged put)", n)
	}
}

func TestMSIIsUniquePerType(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.reg.PutSE(seID(1), seInput("491700000001")); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.reg.PutSE(seID(2), seInput("+491700000001"))
	e := wantKind(t, err, app.KindConflict)
	if !strings.Contains(e.Message, seID(1)) || strings.Contains(e.Message, "491700000001") {
		t.Fatalf("conflict message %q: want the holder's id and no MSI", e.Message)
	}
	mdn := seInput("491700000001")
	mdn.MSIType = domain.MSITypeMDN
	if _, _, err := f.reg.PutSE(seID(2), mdn); err != nil {
		t.Fatalf("the same digits as an MDN: %v", err)
	}
}

func TestReferencesMustExist(t *testing.T) {
	f := newFixture(t)
	in := seInput("491700000001")
	in.MNO = "mno-x"
	in.PreIssuedSPDomains = []domain.PreIssuedSD{{SPID: "bank-a"}, {SPID: "bank-x"}}
	_, _, err := f.reg.PutSE(seID(1), in)
	e := wantKind(t, err, app.KindInvalid)
	var fields []string
	for _, fe := range e.Fields {
		fields = append(fields, fe.Field)
	}
	if !slices.Equal(fields, []string{"mno", "preIssuedSpDomains[1].spId"}) {
		t.Fatalf("fields %v", fields)
	}
	in.MNO = "mno-a"
	in.PreIssuedSPDomains = in.PreIssuedSPDomains[:1]
	se, _, err := f.reg.PutSE(seID(1), in)
	if err != nil || se.PreIssuedSPDomains[0].AID != domain.DefaultSecurityDomainAID("bank-a") {
		t.Fatalf("SD AID default: %+v %v", se.PreIssuedSPDomains, err)
	}
	_, _, err = f.reg.PutService("pay", "1", domain.ServiceInput{SPID: "bank-x", ELFAID: "A00000055501",
		ModuleAID: "A0000005550101", InstanceAID: "A000000555010101"})
	if e := wantKind(t, err, app.KindInvalid); e.Fields[0].Field != "spId" {
		t.Fatalf("service with unknown SP: %+v", e)
	}
}

func TestStatusSurvivesRePut(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.reg.PutSE(seID(1), seInput("491700000001")); err != nil {
		t.Fatal(err)
	}
	if rep, err := f.reg.ReportSEStatus(strings.ToLower(seID(1)), "stolen"); err != nil || rep.SE.Status != domain.StatusStolen ||
		rep.OperationID == "" {
		t.Fatalf("report: %+v %v", rep, err)
	}
	if rep, err := f.reg.ReportSEStatus(seID(1), "stolen"); err != nil || rep.OperationID != "" {
		t.Fatalf("same status again: %+v %v", rep, err)
	}
	se, outcome, err := f.reg.PutSE(seID(1), seInput("491700000001"))
	if err != nil || outcome != app.Unchanged || se.Status != domain.StatusStolen {
		t.Fatalf("re-put: %v %v %v", se.Status, outcome, err)
	}
	_, err = f.reg.ReportSEStatus(seID(1), "active")
	wantKind(t, err, app.KindInvalid)
	_, err = f.reg.ReportSEStatus(seID(99), "lost")
	wantKind(t, err, app.KindNotFound)
	if _, _, err := f.reg.PutSE(seID(2), seInput("491700000002")); err != nil {
		t.Fatal(err)
	}
	_, err = f.reg.ReportSEStatus(seID(2), "found")
	if e := wantKind(t, err, app.KindNotAllowed); !strings.Contains(e.Message, "not lost or stolen") {
		t.Fatalf("found on an active SE: %q", e.Message)
	}
}

func TestChangeSubscription(t *testing.T) {
	f := newFixture(t)
	for i, msi := range []string{"491700000001", "491700000002"} {
		if _, _, err := f.reg.PutSE(seID(i+1), seInput(msi)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.reg.ChangeSubscription(seID(1), app.SubscriptionInput{MSI: "491700000002"})
	wantKind(t, err, app.KindConflict)
	_, err = f.reg.ChangeSubscription(seID(1), app.SubscriptionInput{MSI: "491700000009", MNO: "mno-x"})
	wantKind(t, err, app.KindInvalid)
	se, err := f.reg.ChangeSubscription(seID(1), app.SubscriptionInput{MSI: "+491700000009", MNO: "mno-b"})
	if err != nil || se.MSI != "491700000009" || se.MNO != "mno-b" {
		t.Fatalf("change: %+v %v", se, err)
	}
	_, err = f.reg.LookupSEIDView("", "491700000001")
	wantKind(t, err, app.KindNotFound)
	if id, err := f.reg.LookupSEIDView("MSISDN", "491700000009"); err != nil || id != seID(1) {
		t.Fatalf("new MSI resolves to %q %v", id, err)
	}
	// The freed MSI can now go to another SE.
	if _, _, err := f.reg.PutSE(seID(3), seInput("491700000001")); err != nil {
		t.Fatalf("reuse of the freed MSI: %v", err)
	}
}

func TestSEDataForShowsOnlyTheSPsOwnSD(t *testing.T) {
	f := newFixture(t)
	in := seInput("491700000001")
	in.PreIssuedSPDomains = []domain.PreIssuedSD{{SPID: "bank-a", AID: "A000000555AA0102"}}
	if _, _, err := f.reg.PutSE(seID(1), in); err != nil {
		t.Fatal(err)
	}
	_ = f.repo.View(func(tx app.ReadTx) error {
		v, err := f.reg.SEDataFor(tx, "bank-a", app.SEQuery{MSI: "+491700000001"})
		if err != nil || v.SE.ID != seID(1) || v.SecurityDomain == nil || v.SecurityDomain.AID != "A000000555AA0102" ||
			v.SecurityDomain.KeyVersion != 0x30 || v.SecurityDomain.MasterKeyIndex != 1 || v.SecurityDomain.LifeCycle != "PERSONALIZED" {
			t.Errorf("bank-a: %+v %v", v, err)
		}
		v, err = f.reg.SEDataFor(tx, "bank-b", app.SEQuery{SEID: strings.ToLower(seID(1)), MSI: "491700000001", MSIType: "MSISDN"})
		if err != nil || v.SecurityDomain != nil {
			t.Errorf("bank-b: %+v %v", v, err)
		}
		_, err = f.reg.SEDataFor(tx, "bank-a", app.SEQuery{SEID: seID(1), MSI: "491700000002"})
		if e := wantKind(t, err, app.KindInvalid); strings.Contains(e.Message, "491700000002") {
			t.Errorf("message quotes the MSI: %s", e.Message)
		}
		_, err = f.reg.SEDataFor(tx, "bank-a", app.SEQuery{SEID: seID(1), MSI: "491700000001", MSIType: "MDN"})
		wantKind(t, err, app.KindInvalid)
		_, err = f.reg.SEDataFor(tx, "bank-a", app.SEQuery{})
		wantKind(t, err, app.KindInvalid)
		_, err = f.reg.SEDataFor(tx, "bank-a", app.SEQuery{SEID: seID(2)})
		wantKind(t, err, app.KindNotFound)
		return nil
	})
}

func TestResolveConversation(t *testing.T) {
	f := newFixture(t)
	mdn := seInput("5550001")
	mdn.MSIType = domain.MSITypeMDN
	mdn.PreIssuedSPDomains = []domain.PreIssuedSD{{SPID: "bank-a"}}
	if _, _, err := f.reg.PutSE(seID(1), mdn); err != nil {
		t.Fatal(err)
	}
	expired := seInput("491700000002")
	expired.ExpiresAt = now.Add(-time.Minute).Format(time.RFC3339)
	if _, _, err := f.reg.PutSE(seID(2), expired); err != nil {
		t.Fatal(err)
	}
	lost := seInput("491700000003")
	lost.PreIssuedSPDomains = []domain.PreIssuedSD{{SPID: "bank-a"}}
	if _, _, err := f.reg.PutSE(seID(3), lost); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.ReportSEStatus(seID(3), "lost"); err != nil {
		t.Fatal(err)
	}
	// An SE whose MNO has no record: only a damaged store can hold one.
	orphan := domain.SE{ID: seID(4), MSI: "491700000004", MSIType: "MSISDN", MNO: "mno-gone", Status: domain.StatusActive,
		ExpiresAt: now.Add(time.Hour), PreIssuedSPDomains: []domain.PreIssuedSD{{SPID: "bank-a", AID: "A000000555AA0102"}}}
	if err := f.repo.Update(func(tx app.Tx) error { return tx.SaveSE(orphan, nil) }); err != nil {
		t.Fatal(err)
	}
	_ = f.repo.View(func(tx app.ReadTx) error {
		se, m, err := f.reg.ResolveConversation(tx, "bank-a", strings.ToLower(seID(1)), "5550001")
		if err != nil || se.ID != seID(1) || m.ID != "mno-a" || m.MaxAPDUsPerScript != 32 {
			t.Errorf("MDN SE with its msi: %+v %+v %v", se, m, err)
		}
		_, _, err = f.reg.ResolveConversation(tx, "bank-a", seID(1), "5550002")
		wantKind(t, err, app.KindInvalid)
		_, _, err = f.reg.ResolveConversation(tx, "bank-a", seID(9), "")
		wantKind(t, err, app.KindNotFound)
		_, _, err = f.reg.ResolveConversation(tx, "bank-a", seID(2), "")
		if e := wantKind(t, err, app.KindNotAllowed); !strings.Contains(e.Message, "the SE expired at 2026-03-01T11:59:00Z") {
			t.Errorf("expired message %q", e.Message)
		}
		_, _, err = f.reg.ResolveConversation(tx, "bank-a", seID(3), "")
		wantKind(t, err, app.KindInaccessible)
		_, _, err = f.reg.ResolveConversation(tx, "bank-a", seID(4), "")
		wantKind(t, err, app.KindInternal)
		return nil
	})
	if _, err := f.reg.ReportSEStatus(seID(3), "found"); err != nil {
		t.Fatal(err)
	}
	_ = f.repo.View(func(tx app.ReadTx) error {
		if _, _, err := f.reg.ResolveConversation(tx, "bank-a", seID(3), ""); err != nil {
			t.Errorf("found SE: %v", err)
		}
		// bank-b has nothing on SE 1.
		_, _, err := f.reg.ResolveConversation(tx, "bank-b", seID(1), "")
		if e := wantKind(t, err, app.KindNotAllowed); !strings.Contains(e.Message, "bank-b has no security domain") {
			t.Errorf("gating message %q", e.Message)
		}
		return nil
	})
	// A content snapshot with an SD of bank-b lets it in.
	if err := f.repo.Update(func(tx app.Tx) error {
		_, err := f.reg.ApplyContent(tx, 7, app.ContentChange{SEID: seID(1), SPID: "bank-b", ChangedAt: now,
			SD: &domain.ContentSD{AID: "A000000555AA0B0B", LifeCycle: "PERSONALIZED", KeyVersion: 0x30}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = f.repo.View(func(tx app.ReadTx) error {
		if _, _, err := f.reg.ResolveConversation(tx, "bank-b", seID(1), ""); err != nil {
			t.Errorf("bank-b with an SD in the content model: %v", err)
		}
		return nil
	})
}

func lines(ls ...app.ImportLine) func(func(app.ImportLine) bool) {
	return func(yield func(app.ImportLine) bool) {
		for _, l := range ls {
			if !yield(l) {
				return
			}
		}
	}
}

func TestImportAcrossBatches(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.reg.PutSE(seID(100), seInput("491799999999")); err != nil {
		t.Fatal(err)
	}
	base := f.store.OutboxLen()
	var ls []app.ImportLine
	for i := 1; i <= 20; i++ {
		ls = append(ls, app.ImportLine{Line: i, SEID: seID(i), Input: seInput(fmt.Sprintf("4917%08d", i))})
	}
	ls[2].Err = fmt.Errorf("the line is not valid JSON")                 // line 3
	ls[5].Input.MSI = "491799999999"                                     // line 6: held by an enrolled SE
	ls[9].Input.MSI = ls[8].Input.MSI                                    // line 10: held by line 9, same batch
	ls[12].Input.MSI = ls[10].Input.MSI                                  // line 13: held by line 11, earlier batch
	ls[14].SEID = seID(100)                                              // line 15: updates SE 100 (new MSI)
	ls[16].Input.MNO = "mno-x"                                           // line 17: unknown MNO
	ls[18] = app.ImportLine{Line: 19, SEID: seID(1), Input: ls[0].Input} // line 19: same as line 1
	rep, err := f.reg.ImportSEs(context.Background(), lines(ls...), app.ImportConfig{BatchSize: 6, MaxErrors: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 13 || rep.Updated != 1 || rep.Unchanged != 1 || rep.Failed != 5 {
		t.Fatalf("report %+v, want 13 imported, 1 updated, 1 unchanged, 5 failed", rep)
	}
	var got []int
	for _, e := range rep.Errors {
		got = append(got, e.Line)
	}
	if !slices.Equal(got, []int{3, 6, 10}) || !rep.ErrorsTruncated {
		t.Fatalf("errors %+v truncated=%v: want lines 3, 6, 10 and truncated", rep.Errors, rep.ErrorsTruncated)
	}
	if n := f.store.OutboxLen() - base; n != 14 {
		t.Fatalf("%d records published, want one per imported or updated SE (14)", n)
	}
	if _, err := f.reg.GetSE(seID(17)); err == nil {
		t.Fatal("the SE with the unknown MNO was enrolled")
	}
}

func TestImportStopsWhenCancelled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	endless := func(yield func(app.ImportLine) bool) {
		for i := 1; ; i++ {
			if !yield(app.ImportLine{Line: i, SEID: seID(i), Input: seInput(fmt.Sprintf("4917%08d", i))}) {
				return
			}
		}
	}
	if _, err := f.reg.ImportSEs(ctx, endless, app.ImportConfig{BatchSize: 10}); err == nil {
		t.Fatal("a cancelled import reported success")
	}
}
