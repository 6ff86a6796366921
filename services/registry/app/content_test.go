package app_test

import (
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

func TestApplyContentKeepsTheNewestSnapshot(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.reg.PutSE(seID(1), seInput("491700000001")); err != nil {
		t.Fatal(err)
	}
	apply := func(seq uint64, c app.ContentChange) bool {
		t.Helper()
		var applied bool
		if err := f.repo.Update(func(tx app.Tx) error {
			var err error
			applied, err = f.reg.ApplyContent(tx, seq, c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return applied
	}
	installed := app.ContentChange{SEID: seID(1), SPID: "bank-a", ChangedAt: now,
		Instances: []domain.ContentInstance{{ServiceNumber: "pay", ServiceVersion: "1", InstanceAID: "A000000555010101", State: "installed"}}}
	active := installed
	active.Instances = []domain.ContentInstance{{ServiceNumber: "pay", ServiceVersion: "1", InstanceAID: "A000000555010101", State: "active"}}
	if !apply(10, active) {
		t.Fatal("first snapshot not applied")
	}
	if apply(9, installed) || apply(10, installed) {
		t.Fatal("an older or equal stream sequence replaced the newer snapshot")
	}
	audit := app.ContentChange{SEID: seID(1), Audit: &domain.Audit{ProcedureID: "op-1", AuditedAt: now}}
	if !apply(11, audit) || apply(5, app.ContentChange{SEID: seID(1), Audit: &domain.Audit{ProcedureID: "op-0"}}) {
		t.Fatal("audit sequence handling")
	}
	v, err := f.reg.GetSEContent(seID(1))
	if err != nil || len(v.Content) != 1 || v.Content[0].Instances[0].State != "active" || v.Content[0].Seq != 10 ||
		v.Audit == nil || v.Audit.ProcedureID != "op-1" {
		t.Fatalf("content %+v %v", v, err)
	}
	// A content change without SP and without audit is invalid.
	if err := f.repo.Update(func(tx app.Tx) error {
		_, err := f.reg.ApplyContent(tx, 12, app.ContentChange{SEID: seID(1)})
		return err
	}); err == nil {
		t.Fatal("a content change without spId nor audit was applied")
	}
}

func TestPendingPrePersonalizeEndsWithANewerSnapshot(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.reg.PutSE(seID(1), seInput("491700000001")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.reg.PutService("pay", "1", domain.ServiceInput{SPID: "bank-a", ELFAID: "A00000055501",
		ModuleAID: "A0000005550101", InstanceAID: "A000000555010101"}); err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Update(func(tx app.Tx) error {
		return f.reg.RequestServiceOperation(tx, app.ServiceOperation{SPID: "bank-a", RequestID: "r1", Op: "pre-personalize",
			SEID: seID(1), ServiceNumber: "pay", ServiceVersion: "1", ReceivedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	present := func() bool {
		v, err := f.reg.GetSEContent(seID(1))
		if err != nil {
			t.Fatal(err)
		}
		return len(v.Content) == 1 && v.Content[0].Present()
	}
	if !present() {
		t.Fatal("no pending deployment after pre-personalize")
	}
	// A snapshot taken before the pre-personalize keeps it pending; a newer
	// one without anything ends it (the procedure failed and compensated).
	apply := func(seq uint64, at time.Time) {
		t.Helper()
		if err := f.repo.Update(func(tx app.Tx) error {
			_, err := f.reg.ApplyContent(tx, seq, app.ContentChange{SEID: seID(1), SPID: "bank-a", ChangedAt: at})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	apply(3, now.Add(-time.Minute))
	if !present() {
		t.Fatal("an older snapshot ended the pending deployment")
	}
	apply(4, now.Add(time.Second))
	if present() {
		t.Fatal("a newer empty snapshot left the SP present")
	}
}
