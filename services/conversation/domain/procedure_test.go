package domain_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

const (
	seID    = "0102030405060708090A"
	bankSD  = "A000000555AA01"
	bankApp = "A000000555010101"
)

var (
	t0      = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	bankSvc = contract.ServiceID{Number: "1", Version: "1"}
)

// world keeps the content the app layer would keep (domain.Content.Apply)
// between procedures.
type world struct {
	t       *testing.T
	content domain.Content
	ids     int
}

func (w *world) id() string { w.ids++; return fmt.Sprintf("sc-%d", w.ids) }

func (w *world) apply(o domain.Outcome) { w.content = w.content.Apply(o) }

func procedure(kind string, spID string, cfg card.Config) *domain.Procedure {
	p := &domain.Procedure{ID: "pr-" + kind, Kind: kind, SEID: seID, MNOID: "mno-a", OTACarrier: "https",
		Configuration: string(cfg), ReceivedAt: t0}
	if spID != "" {
		p.Request = events.RequestRef{SPID: spID, RequestID: "req-" + kind, Op: kind}
		p.Service = &events.ServiceRecord{Number: "1", Version: "1", SPID: spID, ELFAID: "A00000055501",
			ModuleAID: "A0000005550101", InstanceAID: bankApp}
		p.SDAID = bankSD
	} else {
		p.Request = events.RequestRef{RequestID: "op-" + kind, Op: events.OpSEStatus}
	}
	return p
}

// runOnCard starts p and runs every step on the card until it ends; it
// returns the outcomes (the last one is Done) and the scripts.
func (w *world) runOnCard(r *cardRouter, p *domain.Procedure) ([]domain.Outcome, []*domain.Script) {
	w.t.Helper()
	o := p.Start(w.content, w.id(), t0)
	w.apply(o)
	outs := []domain.Outcome{o}
	var scripts []*domain.Script
	for !o.Done {
		if o.Script == nil {
			w.t.Fatalf("%s: outcome neither done nor a script: %+v", p.Kind, o)
		}
		scripts = append(scripts, o.Script)
		res := r.run(o.Script)
		var ok bool
		o, ok = p.Complete(o.Script.ScriptID, res, w.content, w.id(), t0)
		if !ok {
			w.t.Fatalf("%s: completion of the running script refused", p.Kind)
		}
		w.apply(o)
		outs = append(outs, o)
	}
	return outs, scripts
}

func last(outs []domain.Outcome) domain.Outcome { return outs[len(outs)-1] }

// TestProceduresOnTheCardModel runs the procedures with their exact APDUs on
// the real card model of every configuration: pre-personalize creates the
// SP SD and extradites the instance into it; suspend/resume lock and unlock
// it; activate verifies it; lock-se/unlock-se; audit reads it; terminate
// deletes the instance and the SD.
func TestProceduresOnTheCardModel(t *testing.T) {
	for _, cfg := range []card.Config{card.Embedded, card.UICC, card.Embedded3P, card.UICC3P} {
		t.Run(string(cfg), func(t *testing.T) {
			r := newCardRouter(t, cfg)
			w := &world{t: t}

			// pre-personalize: two steps, answer with keys, instance installed.
			outs, scripts := w.runOnCard(r, procedure(events.ProcedurePrePersonalize, "bank", cfg))
			if len(scripts) != 2 || scripts[0].Step != domain.StepCreateSD || scripts[1].Step != domain.StepInstallInstance {
				t.Fatalf("steps %+v", scripts)
			}
			if tk := scripts[0].TemporaryKeys; tk == nil || tk.SPID != "bank" || tk.SecurityDomainAID != bankSD || tk.KeyVersion != 0x30 {
				t.Fatalf("create-sd temporary keys request %+v", tk)
			}
			wantCmds := [][]string{
				{"80E60C0021" + "07A0000001515350" + "08A000000151535041" + "07A000000555AA01" + "03800000" + "02C900" + "00" + "00",
					"80E620000D" + "0000" + "07A000000555AA01" + "0000" + "00" + "00"},
				{"80E60C0020" + "06A00000055501" + "07A0000005550101" + "08A000000555010101" + "03000000" + "02C900" + "00" + "00",
					"80E6100015" + "07A000000555AA01" + "00" + "08A000000555010101" + "00" + "00" + "00" + "00"},
			}
			for i, s := range scripts {
				if strings.Join(s.Commands, " ") != strings.Join(wantCmds[i], " ") {
					t.Errorf("step %s commands\n got %v\nwant %v", s.Step, s.Commands, wantCmds[i])
				}
			}
			fin := last(outs)
			resp, ok := fin.Answer.Body.(contract.PrePersonalizeResponse)
			if !ok || fin.Answer.Err != nil || resp.State != contract.StateInstalled || resp.SecurityDomainAID != bankSD ||
				resp.InstanceAID != bankApp || resp.TemporaryKeys == nil || resp.TemporaryKeys.KeyVersion != 0x30 {
				t.Fatalf("pre-personalize answer %+v", fin.Answer)
			}
			if e := r.entry(bankApp); e == nil || !strings.EqualFold(fmt.Sprintf("%X", e.SD), bankSD) || e.LifeCycle != 0x07 {
				t.Fatalf("instance on the card: %+v", e)
			}
			if len(fin.Instances) != 1 || fin.Instances[0].PreviousState() != contract.StateNotDeployed ||
				fin.Instances[0].NewState() != contract.StateInstalled {
				t.Fatalf("instance change %+v", fin.Instances)
			}
			sd := w.content.SD(bankSD)
			if sd == nil || !sd.CreatedByCentral || sd.KeysHeldBy != events.KeysHeldByCentral || sd.KeyVersion != 0x30 {
				t.Fatalf("SD record %+v", sd)
			}

			// A second pre-personalize is refused at once.
			again := procedure(events.ProcedurePrePersonalize, "bank", cfg).Start(w.content, w.id(), t0)
			if !again.Done || again.Answer.Err == nil || again.Answer.Err.Code != contract.CodeAlreadyExists ||
				!strings.Contains(again.Answer.Err.Message, "installed") {
				t.Fatalf("second pre-personalize: %+v", again.Answer)
			}

			// suspend, then resume: the card locks and unlocks the instance.
			last(w.mustRun(r, events.ProcedureSuspend, contract.StateSuspended))
			if e := r.entry(bankApp); e.LifeCycle&0x80 == 0 {
				t.Fatalf("not locked on the card after suspend: %02X", e.LifeCycle)
			}
			w.mustRun(r, events.ProcedureResume, contract.StateInstalled)
			if e := r.entry(bankApp); e.LifeCycle&0x80 != 0 {
				t.Fatalf("locked on the card after resume: %02X", e.LifeCycle)
			}

			// activate needs personalized; then verifies on the card.
			refused := procedure(events.ProcedureActivate, "bank", cfg).Start(w.content, w.id(), t0)
			if refused.Answer.Err == nil || refused.Answer.Err.Code != contract.CodeNotAllowed ||
				!strings.Contains(refused.Answer.Err.Message, "personalize") {
				t.Fatalf("activate of an installed instance: %+v", refused.Answer)
			}
			w.apply(domain.Outcome{Instances: domain.Personalize(w.content, "bank", bankSD, t0)})
			w.mustRun(r, events.ProcedureActivate, contract.StateActive)

			// lock-se then unlock-se.
			lock := procedure(events.ProcedureLockSE, "", cfg)
			lock.SEStatus = contract.SEStatusLost
			outs, _ = w.runOnCard(r, lock)
			if fin := last(outs); fin.SEStatus != contract.SEStatusLost || len(fin.Instances) != 1 ||
				fin.Instances[0].NewState() != contract.StateSuspended || !fin.Instances[0].After.LockedBySE {
				t.Fatalf("lock-se: %+v", fin)
			}
			if e := r.entry(bankApp); e.LifeCycle&0x80 == 0 {
				t.Fatal("lock-se left the instance unlocked")
			}
			resume := procedure(events.ProcedureResume, "bank", cfg).Start(w.content, w.id(), t0)
			if resume.Answer.Err == nil || resume.Answer.Err.Code != contract.CodeNotAllowed ||
				!strings.Contains(resume.Answer.Err.Message, "lost or stolen") {
				t.Fatalf("resume of an SE-locked instance: %+v", resume.Answer)
			}
			unlock := procedure(events.ProcedureUnlockSE, "", cfg)
			unlock.SEStatus = contract.SEStatusFound
			outs, _ = w.runOnCard(r, unlock)
			if fin := last(outs); fin.SEStatus != contract.SEStatusFound || len(fin.Instances) != 1 ||
				fin.Instances[0].NewState() != contract.StateActive {
				t.Fatalf("unlock-se: %+v", fin)
			}

			// audit: the instance, in the SP SD, and the SD itself.
			outs, _ = w.runOnCard(r, procedure(events.ProcedureAudit, "", cfg))
			audit := last(outs).Audit
			if audit == nil || audit.ProcedureID != "op-audit" {
				t.Fatalf("audit %+v notes %v", audit, last(outs).Notes)
			}
			got := map[string]events.CardEntry{}
			for _, e := range audit.Entries {
				got[e.AID] = e
			}
			if e := got[bankApp]; e.Kind != "app" || e.SecurityDomain != bankSD || e.LifeCycle != "07" {
				t.Fatalf("audit entry of the instance %+v (all %+v)", e, audit.Entries)
			}
			if e := got[bankSD]; e.Kind != "sd" || e.LifeCycle != "0F" {
				t.Fatalf("audit entry of the SD %+v", e)
			}
			if e := got["A00000055501"]; e.Kind != "elf" {
				t.Fatalf("audit entry of the generic ELF %+v", e)
			}

			// terminate: delete the instance, then the SD pre-personalize made.
			outs, scripts = w.runOnCard(r, procedure(events.ProcedureTerminate, "bank", cfg))
			if len(scripts) != 2 || scripts[0].Commands[0] != "80E400000A4F08A00000055501010100" ||
				scripts[1].Commands[0] != "80E40000094F07A000000555AA0100" {
				t.Fatalf("terminate scripts %+v", scripts)
			}
			if a := last(outs).Answer.Body.(contract.ServiceStateResponse); a.State != contract.StateNotDeployed {
				t.Fatalf("terminate answer %+v", a)
			}
			if r.entry(bankApp) != nil || r.entry(bankSD) != nil {
				t.Fatal("terminate left the instance or the SD on the card")
			}
			if len(w.content.Instances) != 0 || len(w.content.SDs) != 0 {
				t.Fatalf("content after terminate %+v", w.content)
			}
		})
	}
}

// mustRun runs an SP procedure of the bank service and checks its final state.
func (w *world) mustRun(r *cardRouter, kind, want string) []domain.Outcome {
	w.t.Helper()
	outs, _ := w.runOnCard(r, procedure(kind, "bank", r.cfg))
	a := last(outs).Answer
	body, ok := a.Body.(contract.ServiceStateResponse)
	if !ok || a.Err != nil || body.State != want {
		w.t.Fatalf("%s: %+v", kind, a)
	}
	return outs
}

// TestPrePersonalizeCompensatesOnTheCard: the install-instance step fails on
// the card (the service names an ELF the card does not have); compensation
// deletes the instance (6A88: not there, counts as done) and the SD.
func TestPrePersonalizeCompensatesOnTheCard(t *testing.T) {
	r := newCardRouter(t, card.Embedded)
	w := &world{t: t}
	p := procedure(events.ProcedurePrePersonalize, "bank", card.Embedded)
	p.Service.ELFAID = "A00000055599"
	outs, scripts := w.runOnCard(r, p)
	if len(scripts) != 3 || scripts[2].Step != domain.StepCompensate || !scripts[2].ContinueOnError ||
		strings.Join(scripts[2].Commands, " ") != "80E400000A4F08A00000055501010100 80E40000094F07A000000555AA0100" {
		t.Fatalf("scripts %+v", scripts)
	}
	fin := last(outs)
	if fin.Answer.Err == nil || fin.Answer.Err.Code != contract.CodeSecureElementError ||
		!strings.Contains(fin.Answer.Err.Message, "INSTALL [for install and make selectable] (80E60C00) returned SW 6A88") ||
		!strings.Contains(fin.Answer.Err.Message, "removed") {
		t.Fatalf("answer %+v", fin.Answer.Err)
	}
	if _, ok := fin.Answer.Body.(contract.FailureBody); !ok {
		t.Fatalf("answer body %T", fin.Answer.Body)
	}
	if r.entry(bankSD) != nil || r.entry(bankApp) != nil {
		t.Fatal("compensation left content on the card")
	}
	inst := w.content.Instance("bank", bankSvc)
	if inst == nil || inst.State != contract.StateInError || !strings.Contains(inst.Reason, "6A88") || len(w.content.SDs) != 0 {
		t.Fatalf("content after compensation %+v", w.content)
	}
	// A pre-personalize of the in-error instance starts over and succeeds.
	outs, _ = w.runOnCard(r, procedure(events.ProcedurePrePersonalize, "bank", card.Embedded))
	if fin := last(outs); fin.Answer.Err != nil || fin.Instances[0].PreviousState() != contract.StateInError {
		t.Fatalf("retry after in-error: %+v %+v", fin.Answer, fin.Instances)
	}
}

// synthetic results for the paths the card model does not produce.
func success(n int) domain.StepResult {
	resp := contract.SendScriptResponse{Result: contract.Success(), Failed: []contract.ScriptFailure{}}
	for i := 0; i < n; i++ {
		resp.Responses = append(resp.Responses, "9000")
	}
	return domain.StepResult{Response: resp}
}

func withKeys(r domain.StepResult) domain.StepResult {
	r.TemporaryKeys = &contract.TemporaryKeys{KeyVersion: 0x30, Algorithm: "AES-128", Wrapped: "AB"}
	return r
}

func unreachable() domain.StepResult {
	return domain.StepResult{Response: contract.SendScriptResponse{Responses: []string{},
		Result: contract.Failure(contract.Errorf(contract.CodeSEInaccessible, "the device is switched off"))}}
}

func failedAt(i int, sw string, n int) domain.StepResult {
	resp := contract.SendScriptResponse{Failed: []contract.ScriptFailure{{Index: i, SW: sw}},
		Result: contract.Failure(contract.Errorf(contract.CodeSecureElementError, "stopped"))}
	for j := 0; j < i; j++ {
		resp.Responses = append(resp.Responses, "9000")
	}
	resp.Responses = append(resp.Responses, sw)
	_ = n
	return domain.StepResult{Response: resp}
}

func TestCompensationRetriesAnUnreachableSEThreeTimes(t *testing.T) {
	w := &world{t: t}
	p := procedure(events.ProcedurePrePersonalize, "bank", card.Embedded)
	o := p.Start(w.content, "s1", t0)
	o, _ = p.Complete("s1", withKeys(success(2)), w.content, "s2", t0)
	w.apply(o)
	// install-instance cannot reach the card: compensation starts.
	o, _ = p.Complete("s2", unreachable(), w.content, "s3", t0)
	if o.Script == nil || o.Script.Step != domain.StepCompensate || len(o.Script.Commands) != 2 || o.Done {
		t.Fatalf("compensation %+v", o)
	}
	// Three more attempts while unreachable, then it gives up.
	next := "s3"
	for i := 4; i <= 6; i++ {
		o, _ = p.Complete(next, unreachable(), w.content, fmt.Sprintf("s%d", i), t0)
		if o.Done || o.Script == nil || o.Script.Step != domain.StepCompensate || o.Script.ScriptID != fmt.Sprintf("s%d", i) {
			t.Fatalf("retry %d: %+v", i, o)
		}
		next = o.Script.ScriptID
	}
	if _, ok := p.Complete("s3", success(2), w.content, "x", t0); ok {
		t.Fatal("a stale completion was applied")
	}
	o, _ = p.Complete(next, unreachable(), w.content, "s7", t0)
	w.apply(o)
	if !o.Done || o.Answer.Err == nil || o.Answer.Err.Code != contract.CodeSEInaccessible ||
		!strings.Contains(o.Answer.Err.Message, "could not reach the SE") || !strings.Contains(o.Answer.Err.Message, bankSD) {
		t.Fatalf("gave up: %+v", o.Answer)
	}
	// The SD record stays: the card may still hold it.
	if w.content.SD(bankSD) == nil || w.content.Instance("bank", bankSvc).State != contract.StateInError {
		t.Fatalf("content %+v", w.content)
	}
	// The next pre-personalize cleans up first (instance and the SD whose keys
	// the central TSM still holds), then creates the SD again: the SP gets
	// fresh temporary keys.
	again := procedure(events.ProcedurePrePersonalize, "bank", card.Embedded)
	o = again.Start(w.content, "c1", t0)
	w.apply(o)
	if o.Script == nil || o.Script.Step != domain.StepCleanup || !o.Script.ContinueOnError ||
		strings.Join(o.Script.Commands, " ") != "80E400000A4F08A00000055501010100 80E40000094F07A000000555AA0100" {
		t.Fatalf("cleanup %+v", o.Script)
	}
	cleanup := success(2)
	cleanup.Response.Responses[0] = "6A88" // the instance was never installed
	o, _ = again.Complete("c1", cleanup, w.content, "c2", t0)
	w.apply(o)
	if o.Script == nil || o.Script.Step != domain.StepCreateSD || w.content.SD(bankSD) != nil {
		t.Fatalf("after cleanup %+v, SD record %+v", o.Script, w.content.SD(bankSD))
	}
	o, _ = again.Complete("c2", withKeys(success(2)), w.content, "c3", t0)
	w.apply(o)
	o, _ = again.Complete("c3", success(2), w.content, "c4", t0)
	w.apply(o)
	resp, ok := o.Answer.Body.(contract.PrePersonalizeResponse)
	if !o.Done || o.Answer.Err != nil || !ok || resp.TemporaryKeys == nil || resp.State != contract.StateInstalled {
		t.Fatalf("second attempt %+v", o.Answer)
	}
}

func TestCleanupThatFailsLeavesTheInstanceInError(t *testing.T) {
	w := &world{t: t}
	w.content = w.content.Apply(domain.Outcome{Instances: []domain.InstanceChange{{After: &domain.Instance{SEID: seID,
		SPID: "bank", ServiceID: bankSvc, InstanceAID: bankApp, SDAID: bankSD, State: contract.StateInError}}}})
	p := procedure(events.ProcedurePrePersonalize, "bank", card.Embedded)
	o := p.Start(w.content, "c1", t0)
	if o.Script == nil || o.Script.Step != domain.StepCleanup || len(o.Script.Commands) != 1 {
		t.Fatalf("cleanup of an instance without a central SD record: %+v", o.Script)
	}
	o, _ = p.Complete("c1", failedAt(0, "6985", 1), w.content, "c2", t0)
	w.apply(o)
	if !o.Done || o.Answer.Err == nil || o.Answer.Err.Code != contract.CodeSecureElementError ||
		w.content.Instance("bank", bankSvc).State != contract.StateInError {
		t.Fatalf("failed cleanup %+v, content %+v", o.Answer, w.content)
	}
}

func TestCompensationAfterCreateSDFailsDeletesOnlyTheSD(t *testing.T) {
	w := &world{t: t}
	p := procedure(events.ProcedurePrePersonalize, "bank", card.UICC)
	p.Start(w.content, "s1", t0)
	o, _ := p.Complete("s1", failedAt(1, "6985", 2), w.content, "s2", t0)
	if o.Script == nil || len(o.Script.Commands) != 1 || o.Script.Commands[0] != "80E40000094F07A000000555AA0100" {
		t.Fatalf("compensation %+v", o.Script)
	}
	res := success(1)
	res.Response.Responses = []string{"6A88"}
	o, _ = p.Complete("s2", res, w.content, "s3", t0)
	if !o.Done || !strings.Contains(o.Answer.Err.Message, "INSTALL [for personalization] (80E62000) returned SW 6985") {
		t.Fatalf("answer %+v", o.Answer.Err)
	}
	if len(o.SDs) != 1 || !o.SDs[0].Removed {
		t.Fatalf("SD changes %+v", o.SDs)
	}
}

func TestPutKeyFailureIsNamedWithoutItsData(t *testing.T) {
	w := &world{t: t}
	p := procedure(events.ProcedurePrePersonalize, "bank", card.UICC)
	p.Start(w.content, "s1", t0)
	res := success(2)
	res.Response.Responses = append(res.Response.Responses, "6A80")
	res.Response.Failed = []contract.ScriptFailure{{Index: 2, Command: "80D8008143SECRETDATA", SW: "6A80", Reason: "bad"}}
	res.Response.Result = contract.Failure(contract.Errorf(contract.CodeSecureElementError, "x"))
	o, _ := p.Complete("s1", res, w.content, "s2", t0)
	if o.Script == nil || o.Script.Step != domain.StepCompensate {
		t.Fatalf("%+v", o)
	}
	if strings.Contains(p.Failure.Message, "SECRET") || !strings.Contains(p.Failure.Message, "PUT KEY") {
		t.Fatalf("failure message %q", p.Failure.Message)
	}
}

func TestPrePersonalizeIntoAPreIssuedSD(t *testing.T) {
	w := &world{t: t, content: domain.Content{PreIssued: []events.PreIssuedSD{{SPID: "bank", AID: bankSD}}}}
	p := procedure(events.ProcedurePrePersonalize, "bank", card.Embedded)
	o := p.Start(w.content, "s1", t0)
	if o.Script == nil || o.Script.Step != domain.StepInstallInstance || o.Script.TemporaryKeys != nil {
		t.Fatalf("first step %+v", o.Script)
	}
	o, _ = p.Complete("s1", success(2), w.content, "s2", t0)
	resp := o.Answer.Body.(contract.PrePersonalizeResponse)
	if !o.Done || resp.TemporaryKeys != nil || resp.State != contract.StateInstalled {
		t.Fatalf("answer %+v", resp)
	}
	if len(o.SDs) != 1 || o.SDs[0].SD.CreatedByCentral || o.SDs[0].SD.KeysHeldBy != events.KeysHeldBySP {
		t.Fatalf("pre-issued SD record %+v", o.SDs)
	}
}

func TestServiceRefusalsAndImmediateAnswers(t *testing.T) {
	installed := domain.Instance{SEID: seID, SPID: "bank", ServiceID: bankSvc, InstanceAID: bankApp, SDAID: bankSD}
	with := func(state string) domain.Content {
		i := installed
		i.State = state
		return domain.Content{Instances: []domain.Instance{i}}
	}
	for _, c := range []struct {
		kind    string
		content domain.Content
		code    contract.Code
		state   string
		text    string
	}{
		{events.ProcedureActivate, domain.Content{}, contract.CodeNotFound, "", "not deployed"},
		{events.ProcedureActivate, with(contract.StateActive), "", contract.StateActive, ""},
		{events.ProcedureActivate, with(contract.StateSuspended), contract.CodeNotAllowed, "", "resume it first"},
		{events.ProcedureSuspend, with(contract.StateSuspended), contract.CodeNotAllowed, "", "suspended already"},
		{events.ProcedureSuspend, with(contract.StateInError), contract.CodeNotAllowed, "", "pre-personalize it again"},
		{events.ProcedureResume, with(contract.StateActive), contract.CodeNotAllowed, "", "only a suspended service"},
		{events.ProcedureTerminate, domain.Content{}, contract.CodeNotFound, "", "not deployed"},
		{events.ProcedureGetState, domain.Content{}, "", contract.StateNotDeployed, ""},
		{events.ProcedureGetState, with(contract.StatePersonalized), "", contract.StatePersonalized, ""},
		{events.ProcedurePrePersonalize, with(contract.StateActive), contract.CodeAlreadyExists, "", "state active"},
	} {
		p := procedure(c.kind, "bank", card.Embedded)
		o := p.Start(c.content, "s1", t0)
		if !o.Done || o.Script != nil || o.Answer == nil {
			t.Fatalf("%s on %+v: %+v", c.kind, c.content.Instances, o)
		}
		if c.code != "" {
			if o.Answer.Err == nil || o.Answer.Err.Code != c.code || !strings.Contains(o.Answer.Err.Message, c.text) {
				t.Errorf("%s on %+v: %+v", c.kind, c.content.Instances, o.Answer.Err)
			}
			continue
		}
		if body := o.Answer.Body.(contract.ServiceStateResponse); o.Answer.Err != nil || body.State != c.state {
			t.Errorf("%s: %+v", c.kind, o.Answer)
		}
	}
}

func TestFailedStepOfALifeCycleProcedureLeavesTheState(t *testing.T) {
	content := domain.Content{Instances: []domain.Instance{{SEID: seID, SPID: "bank", ServiceID: bankSvc,
		InstanceAID: bankApp, SDAID: bankSD, State: contract.StateActive}}}
	p := procedure(events.ProcedureSuspend, "bank", card.Embedded)
	o := p.Start(content, "s1", t0)
	if o.Script.Commands[0] != "80F0408008A000000555010101" {
		t.Fatalf("lock command %v", o.Script.Commands)
	}
	o, _ = p.Complete("s1", failedAt(0, "6A88", 1), content, "s2", t0)
	if !o.Done || len(o.Instances) != 0 || o.Answer.Err.Code != contract.CodeSecureElementError ||
		!strings.Contains(o.Answer.Err.Message, "SET STATUS (80F04080) returned SW 6A88") {
		t.Fatalf("%+v %+v", o, o.Answer.Err)
	}
}

func TestLockSEWithNothingToLockOnlyNotifies(t *testing.T) {
	content := domain.Content{Instances: []domain.Instance{{SEID: seID, SPID: "bank", ServiceID: bankSvc,
		InstanceAID: bankApp, SDAID: bankSD, State: contract.StateSuspended}}}
	p := procedure(events.ProcedureLockSE, "", card.Embedded)
	p.SEStatus = contract.SEStatusStolen
	o := p.Start(content, "s1", t0)
	if !o.Done || o.Script != nil || o.SEStatus != contract.SEStatusStolen || len(o.Instances) != 0 || o.Answer != nil {
		t.Fatalf("%+v", o)
	}
}

func TestPersonalizeAndRotateKeys(t *testing.T) {
	c := domain.Content{Instances: []domain.Instance{
		{SEID: seID, SPID: "bank", ServiceID: bankSvc, InstanceAID: bankApp, SDAID: bankSD, State: contract.StateInstalled},
		{SEID: seID, SPID: "bank", ServiceID: contract.ServiceID{Number: "2", Version: "1"}, InstanceAID: "A000000555010109",
			SDAID: bankSD, State: contract.StateActive},
		{SEID: seID, SPID: "transit", ServiceID: bankSvc, InstanceAID: "A000000555010102", SDAID: "A000000555BB01",
			State: contract.StateInstalled},
	}}
	if got := domain.Personalize(c, "bank", strings.ToLower(bankSD), t0); len(got) != 1 ||
		got[0].After.InstanceAID != bankApp || got[0].NewState() != contract.StatePersonalized ||
		got[0].Notification(t0).PreviousState != contract.StateInstalled {
		t.Fatalf("personalize by SD: %+v", got)
	}
	if got := domain.Personalize(c, "bank", "A000000555010102", t0); len(got) != 0 {
		t.Fatalf("personalize of another SP's instance: %+v", got)
	}
	ch := domain.RotateKeys(c, seID, "bank", events.KeyRotation{SecurityDomainAID: bankSD, KeyVersion: 0x31}, t0)
	if ch.SD.KeysHeldBy != events.KeysHeldBySP || ch.SD.KeyVersion != 0x31 || ch.SD.SPID != "bank" {
		t.Fatalf("rotation %+v", ch)
	}
	snap := c.Apply(domain.Outcome{SDs: []domain.SDChange{ch}}).Snapshot(seID, "bank", t0)
	if snap.SecurityDomain == nil || snap.SecurityDomain.KeysHeldBy != "sp" || len(snap.Services) != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
}
