package app_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"

	"github.com/tsmhub/tsmhub/services/conversation/adapters"
	"github.com/tsmhub/tsmhub/services/conversation/app"
	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// The use cases run on the real bbolt adapters and outbox; a recorder in front
// of the outbox shows what each one sent, and a settable clock replaces time.

type reply struct {
	Req       events.RequestRef
	CESubject string
	Body      any
}

type recorder struct {
	*adapters.UnitOfWork
	rec *record
}

type record struct {
	replies  []reply
	scripts  []events.ScriptRequested
	notified []app.ExpiredNotification
}

func (r recorder) Reply(req events.RequestRef, ceSubject string, body any) error {
	r.rec.replies = append(r.rec.replies, reply{req, ceSubject, body})
	return r.UnitOfWork.Reply(req, ceSubject, body)
}

func (r recorder) RequestScript(s events.ScriptRequested) error {
	r.rec.scripts = append(r.rec.scripts, s)
	return r.UnitOfWork.RequestScript(s)
}

func (r recorder) NotifyExpired(spID string, n app.ExpiredNotification) error {
	r.rec.notified = append(r.rec.notified, n)
	return r.UnitOfWork.NotifyExpired(spID, n)
}

type fixture struct {
	t     *testing.T
	store *bus.Store
	svc   *app.Service
	now   time.Time
	ids   int
}

func newFixture(t *testing.T, p domain.Policy) *fixture {
	t.Helper()
	store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(t.TempDir(), "c.db"), Buckets: adapters.Buckets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := &fixture{t: t, store: store, now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.svc = &app.Service{Policy: p, Now: func() time.Time { return f.now },
		NewConversationID: func() string { f.ids++; return "cv-" + string(rune('a'+f.ids-1)) },
		NewScriptID:       func() string { f.ids++; return "sc-" + string(rune('a'+f.ids-1)) }}
	return f
}

// run executes one use case in one transaction and returns what it sent.
func (f *fixture) run(fn func(uow app.UnitOfWork) (app.Report, error)) (*record, app.Report) {
	f.t.Helper()
	var rec *record
	var report app.Report
	err := f.store.Update(func(tx *bus.Tx) error {
		rec = &record{}
		var err error
		report, err = fn(recorder{adapters.NewUnitOfWork(tx), rec})
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return rec, report
}

const se = "0102030405060708"

func begin(sp, id string, validUntil time.Time) domain.BeginRequest {
	return domain.BeginRequest{
		Request: events.RequestRef{SPID: sp, RequestID: id, Op: "begin-conversation"},
		SEID:    se, MNOID: "mno-1", OTACarrier: domain.CarrierHTTPS, TargetAID: "A0000005550101",
		RequestedOperation: contract.OperationPersonalization, ValidUntil: validUntil,
	}
}

func (f *fixture) begin(b domain.BeginRequest) *record {
	rec, _ := f.run(func(uow app.UnitOfWork) (app.Report, error) { return f.svc.Begin(uow, b) })
	return rec
}

func opened(t *testing.T, rec *record, requestID string) string {
	t.Helper()
	for _, r := range rec.replies {
		if r.Req.RequestID != requestID {
			continue
		}
		resp, ok := r.Body.(contract.BeginConversationResponse)
		if !ok || resp.Status != contract.StatusSuccess || resp.ConversationID == "" {
			t.Fatalf("begin %s answered %+v, want a conversation", requestID, r.Body)
		}
		return resp.ConversationID
	}
	t.Fatalf("begin %s not answered; replies %+v", requestID, rec.replies)
	return ""
}

func failed(t *testing.T, rec *record, requestID string, code contract.Code, text string) {
	t.Helper()
	for _, r := range rec.replies {
		if r.Req.RequestID != requestID {
			continue
		}
		fb, ok := r.Body.(contract.FailureBody)
		if !ok || fb.Error == nil || fb.Error.Code != code || !strings.Contains(fb.Error.Message, text) {
			t.Fatalf("request %s answered %+v, want %s mentioning %q", requestID, r.Body, code, text)
		}
		if want := contract.Failure(fb.Error).Status; fb.Status != want {
			t.Fatalf("status %s, want %s", fb.Status, want)
		}
		return
	}
	t.Fatalf("request %s not answered; replies %+v", requestID, rec.replies)
}

func TestBeginRefusesInvalidParameters(t *testing.T) {
	f := newFixture(t, domain.Policy{})
	b := begin("sp1", "b1", time.Time{})
	b.RequestedOperation = "upgrade"
	failed(t, f.begin(b), "b1", contract.CodeInvalidArgument, "requestedOperation")
	b = begin("sp1", "b2", f.now)
	failed(t, f.begin(b), "b2", contract.CodeExpired, "validitySeconds")
	// Neither refusal occupied the SE.
	opened(t, f.begin(begin("sp1", "b3", time.Time{})), "b3")
}

func TestWaitingBeginsAreServedInOrderAndExpire(t *testing.T) {
	f := newFixture(t, domain.Policy{TTL: time.Minute})
	first := opened(t, f.begin(begin("sp1", "b1", time.Time{})), "b1")
	failed(t, f.begin(begin("sp2", "b2", time.Time{})), "b2", contract.CodeConversationBusy, "SE "+se+" has an open conversation")
	if rec := f.begin(begin("sp2", "w1", f.now.Add(10*time.Second))); len(rec.replies) != 0 {
		t.Fatalf("a waiting begin was answered at once: %+v", rec.replies)
	}
	f.begin(begin("sp3", "w2", f.now.Add(time.Hour)))
	f.begin(begin("sp3", "w3", f.now.Add(time.Hour)))

	// w1 runs out while the SE is busy: the sweep answers it Expired.
	f.now = f.now.Add(10 * time.Second)
	rec, _ := f.run(func(uow app.UnitOfWork) (app.Report, error) { return f.svc.Sweep(uow, se) })
	if len(rec.replies) != 1 {
		t.Fatalf("sweep sent %+v, want only w1's expiry", rec.replies)
	}
	failed(t, rec, "w1", contract.CodeExpired, "stayed busy")

	// Ending the first conversation opens w2's, in the same transaction.
	rec, report := f.run(func(uow app.UnitOfWork) (app.Report, error) {
		return f.svc.End(uow, events.RequestRef{SPID: "sp1", RequestID: "e1", Op: "end-conversation"}, first, "success")
	})
	if len(rec.replies) != 2 || rec.replies[0].Req.RequestID != "e1" {
		t.Fatalf("end sent %+v, want the end response then w2's begin response", rec.replies)
	}
	second := opened(t, rec, "w2")
	if len(report.Ended) != 1 || len(report.Opened) != 1 || report.Opened[0].ConversationID != second {
		t.Fatalf("report %+v", report)
	}

	// w2's conversation expires; the sweep notifies sp3 and serves w3.
	f.now = f.now.Add(time.Minute)
	rec, _ = f.run(func(uow app.UnitOfWork) (app.Report, error) { return f.svc.Sweep(uow, se) })
	if len(rec.notified) != 1 || rec.notified[0].ConversationID != second || rec.notified[0].SPID != "sp3" {
		t.Fatalf("notifications %+v", rec.notified)
	}
	opened(t, rec, "w3")
	// A second sweep finds nothing to do.
	rec, _ = f.run(func(uow app.UnitOfWork) (app.Report, error) { return f.svc.Sweep(uow, se) })
	if len(rec.replies)+len(rec.notified) != 0 {
		t.Fatalf("second sweep sent %+v %+v", rec.replies, rec.notified)
	}
}

func TestExpiredConversationIsClosedOnFirstTouch(t *testing.T) {
	// Without waiting for the sweeper, a request that finds a conversation past
	// its time expires it (notification included) before answering.
	f := newFixture(t, domain.Policy{TTL: time.Minute})
	id := opened(t, f.begin(begin("sp1", "b1", time.Time{})), "b1")
	f.now = f.now.Add(time.Minute)
	rec, _ := f.run(func(uow app.UnitOfWork) (app.Report, error) {
		return f.svc.SendScript(uow, events.RequestRef{SPID: "sp1", RequestID: "s1", Op: "send-script"},
			app.SendScript{ConversationID: id, Commands: []string{"00A40400"}})
	})
	failed(t, rec, "s1", contract.CodeConversationNotOpen, "expired at")
	if len(rec.notified) != 1 || len(rec.scripts) != 0 {
		t.Fatalf("notified %+v scripts %+v", rec.notified, rec.scripts)
	}
	// The SE is free again.
	opened(t, f.begin(begin("sp2", "b2", time.Time{})), "b2")
}

func TestCompletionAnswersTheStartingRequestOnce(t *testing.T) {
	f := newFixture(t, domain.Policy{})
	id := opened(t, f.begin(begin("sp1", "b1", time.Time{})), "b1")
	send := events.RequestRef{SPID: "sp1", RequestID: "s1", Op: "send-script"}
	rec, _ := f.run(func(uow app.UnitOfWork) (app.Report, error) {
		return f.svc.SendScript(uow, send, app.SendScript{ConversationID: id, Commands: []string{"00A40400", "80CA9F7F00"}, Securing: "central"})
	})
	if len(rec.scripts) != 1 || len(rec.replies) != 0 {
		t.Fatalf("send-script sent %+v / %+v, want one script and no reply yet", rec.scripts, rec.replies)
	}
	s := rec.scripts[0]
	if s.Securing != "central" || s.MaxAPDUsPerScript != 32 || s.MaxScriptBytes != 8192 || s.MNO != "mno-1" || s.SEID != se {
		t.Fatalf("script requested %+v", s)
	}
	done := app.ScriptDone{Request: send, ConversationID: id, ScriptID: s.ScriptID, SEID: se,
		Response: contract.SendScriptResponse{Result: contract.Success(), Responses: []string{"9000", "9F7F9000"}}}
	rec, report := f.run(func(uow app.UnitOfWork) (app.Report, error) { return f.svc.CompleteScript(uow, done) })
	if len(rec.replies) != 1 || report.ScriptsCompleted != 1 {
		t.Fatalf("completion sent %+v", rec.replies)
	}
	resp := rec.replies[0].Body.(contract.SendScriptResponse)
	if resp.ConversationID != id || len(resp.Responses) != 2 || resp.Failed == nil || rec.replies[0].Req != send {
		t.Fatalf("response %+v to %+v", resp, rec.replies[0].Req)
	}
	// The same completion again (another event id): nothing more is sent.
	rec, _ = f.run(func(uow app.UnitOfWork) (app.Report, error) { return f.svc.CompleteScript(uow, done) })
	if len(rec.replies) != 0 {
		t.Fatalf("duplicate completion sent %+v", rec.replies)
	}
	// A completion of a script that never ran is unprocessable (dead-lettered).
	err := f.store.Update(func(tx *bus.Tx) error {
		bogus := done
		bogus.ScriptID, bogus.Request.RequestID = "sc-never", "s-never"
		_, err := f.svc.CompleteScript(adapters.NewUnitOfWork(tx), bogus)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "unprocessable") {
		t.Fatalf("bogus completion: %v", err)
	}
}

func TestSendScriptGuards(t *testing.T) {
	f := newFixture(t, domain.Policy{})
	id := opened(t, f.begin(begin("sp1", "b1", time.Time{})), "b1")
	cases := []struct {
		req  string
		cmd  app.SendScript
		code contract.Code
		text string
	}{
		{"g1", app.SendScript{ConversationID: id}, contract.CodeInvalidArgument, "commands is empty"},
		{"g2", app.SendScript{ConversationID: id, Commands: []string{"00"}, Securing: "tls"}, contract.CodeInvalidArgument, "securing"},
		{"g3", app.SendScript{ConversationID: "cv-nope", Commands: []string{"00"}}, contract.CodeConversationNotOpen, "unknown"},
	}
	for _, c := range cases {
		rec, _ := f.run(func(uow app.UnitOfWork) (app.Report, error) {
			return f.svc.SendScript(uow, events.RequestRef{SPID: "sp1", RequestID: c.req, Op: "send-script"}, c.cmd)
		})
		failed(t, rec, c.req, c.code, c.text)
	}
	// Another SP gets exactly the message of an unknown conversation.
	rec, _ := f.run(func(uow app.UnitOfWork) (app.Report, error) {
		return f.svc.SendScript(uow, events.RequestRef{SPID: "sp2", RequestID: "x", Op: "send-script"},
			app.SendScript{ConversationID: id, Commands: []string{"00"}})
	})
	got := rec.replies[0].Body.(contract.FailureBody).Error.Message
	if want := domain.NotOpen(id).Message; got != want {
		t.Fatalf("other SP told %q, want %q", got, want)
	}
}
