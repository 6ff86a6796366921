// Package app holds the conversation service's use cases: begin, send a
// script, complete a script, end, and the expiry sweep. Each use case runs
// inside one unit of work (a single bbolt transaction with its outbox, supplied
// by the caller), so state changes and the messages they cause commit
// together. Nothing here knows NATS or CloudEvents.
package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"

	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// Repository is the conversation state inside one transaction.
type Repository interface {
	// Conversation returns nil (and no error) for an unknown id.
	Conversation(id string) (*domain.Conversation, error)
	SaveConversation(c *domain.Conversation) error
	// OpenConversationOf returns the id of the conversation holding the SE ("" if none).
	OpenConversationOf(seID string) (string, error)
	SetOpenConversation(seID, conversationID string) error
	ClearOpenConversation(seID string) error
	// EnqueueBegin appends a begin to the SE's queue of waiting begins.
	EnqueueBegin(w domain.WaitingBegin) error
	// WaitingBegins returns the SE's waiting begins, oldest first.
	WaitingBegins(seID string) ([]domain.WaitingBegin, error)
	RemoveWaitingBegin(key string) error

	// Content returns what the service knows of an SE: its instances and SP
	// SDs (every SP). PreIssued is left empty.
	Content(seID string) (domain.Content, error)
	SaveInstance(i domain.Instance) error
	DeleteInstance(i domain.Instance) error
	SaveSD(sd domain.SecurityDomain) error
	DeleteSD(seID, aid string) error
}

// Outbound is what a use case sends, committed with its state change.
type Outbound interface {
	// Reply answers an SP request; the body is remembered under the request key
	// so that a re-sent request gets it again.
	Reply(req events.RequestRef, ceSubject string, body any) error
	// Answered reports whether a response to req has been sent already.
	Answered(req events.RequestRef) (bool, error)
	// RequestScript hands a script to the script router.
	RequestScript(s events.ScriptRequested) error
	// NotifyExpired tells an SP that its conversation expired.
	NotifyExpired(spID string, n ExpiredNotification) error
	// NotifyServiceState sends tsm.sp.<sp>.ntf.service-state-changed.
	NotifyServiceState(n contract.ServiceStateChanged) error
	// NotifySEStatus sends tsm.sp.<sp>.ntf.se-status-changed.
	NotifySEStatus(n contract.SEStatusChanged) error
	// PublishContent emits a ContentChanged on tsm.conv.<seId>.content.
	PublishContent(c events.ContentChanged) error
}

// UnitOfWork is one transaction: state and outbox.
type UnitOfWork interface {
	Repository
	Outbound
}

// ExpiredNotification is the body of tsm.conversation-expired.notification.
type ExpiredNotification struct {
	SPID           string    `json:"spId"`
	ConversationID string    `json:"conversationId"`
	SEID           string    `json:"seId"`
	ExpiredAt      time.Time `json:"expiredAt"`
}

// NotificationKindExpired is the notification kind of an expired conversation.
const NotificationKindExpired = "conversation-expired"

// ErrUnprocessable marks an input that no retry can make work (the caller
// dead-letters it with the error text as the reason).
var ErrUnprocessable = errors.New("unprocessable")

// ConversationRef names a conversation in a Report.
type ConversationRef struct {
	ConversationID string
	SEID           string
}

// Refusal is a request answered with a failure.
type Refusal struct {
	Op   string
	Code contract.Code
}

// ProcedureRef names a procedure in a Report.
type ProcedureRef struct {
	ProcedureID string
	SEID        string
	Kind        string
	// Result is set when it ended: "success", "failed" (the SP was answered
	// with a failure), or "done" (an operator procedure).
	Result string
}

// Report says what a use case did, for logs and metrics once it committed.
type Report struct {
	Opened            []ConversationRef
	Ended             []ConversationRef
	Expired           []ConversationRef
	Queued            int
	Refused           []Refusal
	ScriptsRequested  int
	ScriptsCompleted  int
	ProceduresStarted []ProcedureRef
	ProceduresEnded   []ProcedureRef
	// StateChanges counts instance state changes (notified to SPs).
	StateChanges int
	// Notes are warnings for the log (no data values).
	Notes []string
}

// Service runs the use cases.
type Service struct {
	// Policy gives a new conversation its limits and lifetime.
	Policy domain.Policy
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// NewConversationID and NewScriptID make unique ids.
	NewConversationID func() string
	NewScriptID       func() string
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func (r *Report) refuse(op string, uow UnitOfWork, req events.RequestRef, ceSubject string, cerr *contract.Error) error {
	r.Refused = append(r.Refused, Refusal{Op: op, Code: cerr.Code})
	return uow.Reply(req, ceSubject, contract.FailureBody{Result: contract.Failure(cerr)})
}

// Begin opens a conversation for a resolved begin-conversation, queues it
// behind the SE's open conversation when the SP allowed it to wait
// (validitySeconds), or answers why not.
func (s *Service) Begin(uow UnitOfWork, b domain.BeginRequest) (Report, error) {
	var r Report
	now := s.now()
	if cerr := b.Validate(); cerr != nil {
		return r, r.refuse(b.Request.Op, uow, b.Request, b.SEID, cerr)
	}
	if b.ExpiredAt(now) {
		return r, r.refuse(b.Request.Op, uow, b.Request, b.SEID, domain.BeginExpired(b.SEID, false))
	}
	occupied, err := s.settle(uow, b.SEID, now, &r)
	if err != nil {
		return r, err
	}
	if !occupied {
		return r, s.open(uow, b, now, &r)
	}
	if b.ValidUntil.IsZero() {
		busy, err := s.busy(uow, b.SEID)
		if err != nil {
			return r, err
		}
		return r, r.refuse(b.Request.Op, uow, b.Request, b.SEID, busy)
	}
	r.Queued++
	return r, uow.EnqueueBegin(domain.WaitingBegin{Begin: b, EnqueuedAt: now})
}

// settle brings the SE's state up to date at now (expires an open
// conversation past its time, serves waiting begins of a free SE) and reports
// whether the SE is occupied afterwards.
func (s *Service) settle(uow UnitOfWork, seID string, now time.Time, r *Report) (bool, error) {
	id, err := uow.OpenConversationOf(seID)
	if err != nil {
		return false, err
	}
	if id != "" {
		c, err := uow.Conversation(id)
		if err != nil {
			return false, err
		}
		switch {
		case c != nil && c.Occupies(now):
			return true, nil
		case c != nil && c.DueForExpiry(now):
			if err := s.expire(uow, c, now, r); err != nil {
				return false, err
			}
		default:
			// The index points at a closed or missing conversation: the SE is
			// free (cannot happen through this package; repaired, not trusted).
			if err := s.free(uow, seID, now, r); err != nil {
				return false, err
			}
		}
	} else if err := s.serveNext(uow, seID, now, r); err != nil {
		return false, err
	}
	id, err = uow.OpenConversationOf(seID)
	return id != "", err
}

// open starts a conversation on a free SE and answers its begin.
func (s *Service) open(uow UnitOfWork, b domain.BeginRequest, now time.Time, r *Report) error {
	c := domain.Open(s.NewConversationID(), b, s.Policy, now)
	if err := uow.SaveConversation(c); err != nil {
		return err
	}
	if err := uow.SetOpenConversation(c.SEID, c.ID); err != nil {
		return err
	}
	r.Opened = append(r.Opened, ConversationRef{ConversationID: c.ID, SEID: c.SEID})
	expiresAt := c.ExpiresAt
	return uow.Reply(b.Request, c.ID, contract.BeginConversationResponse{
		Result: contract.Success(), ConversationID: c.ID, OTACarrier: c.OTACarrier,
		MaxScripts: c.Limits.MaxScripts, MaxAPDUsPerScript: c.Limits.MaxAPDUsPerScript,
		MaxScriptBytes: c.Limits.MaxScriptBytes, ScriptFormat: c.ScriptFormat, ExpiresAt: &expiresAt,
	})
}

// free releases the SE and opens the conversation of its first waiting begin
// that is still valid.
func (s *Service) free(uow UnitOfWork, seID string, now time.Time, r *Report) error {
	if err := uow.ClearOpenConversation(seID); err != nil {
		return err
	}
	return s.serveNext(uow, seID, now, r)
}

// serveNext takes waiting begins of a free SE in arrival order: those whose
// validity ran out are answered Expired, the first valid one is opened.
func (s *Service) serveNext(uow UnitOfWork, seID string, now time.Time, r *Report) error {
	waiting, err := uow.WaitingBegins(seID)
	if err != nil {
		return err
	}
	for _, w := range waiting {
		if err := uow.RemoveWaitingBegin(w.Key); err != nil {
			return err
		}
		if w.ExpiredAt(now) {
			if err := s.refuseExpiredWaiting(uow, w, r); err != nil {
				return err
			}
			continue
		}
		if w.Procedure != nil {
			held, err := s.startProcedure(uow, w.Procedure, now, r)
			if err != nil || held {
				return err
			}
			// Answered without a card step: the SE is still free.
			continue
		}
		return s.open(uow, w.Begin, now, r)
	}
	return nil
}

// refuseExpiredWaiting answers a waiting begin or SP procedure whose
// validitySeconds ran out before the SE was free.
func (s *Service) refuseExpiredWaiting(uow UnitOfWork, w domain.WaitingBegin, r *Report) error {
	if p := w.Procedure; p != nil {
		return r.refuse(p.Request.Op, uow, p.Request, p.SEID, p.Expired(true))
	}
	return r.refuse(w.Begin.Request.Op, uow, w.Begin.Request, w.Begin.SEID, domain.BeginExpired(w.Begin.SEID, true))
}

// busy is the CONVERSATION_BUSY answer for an SE held by a conversation or a
// procedure.
func (s *Service) busy(uow UnitOfWork, seID string) (*contract.Error, error) {
	id, err := uow.OpenConversationOf(seID)
	if err != nil {
		return nil, err
	}
	c, err := uow.Conversation(id)
	if err != nil {
		return nil, err
	}
	if c != nil && c.IsProcedure() && c.Procedure != nil {
		return domain.BusyWithProcedure(seID, c.Procedure.Kind), nil
	}
	return domain.Busy(seID), nil
}

// expire closes a conversation past its time, tells its SP and frees the SE.
func (s *Service) expire(uow UnitOfWork, c *domain.Conversation, now time.Time, r *Report) error {
	if !c.Expire(now) {
		return nil
	}
	if err := uow.SaveConversation(c); err != nil {
		return err
	}
	r.Expired = append(r.Expired, ConversationRef{ConversationID: c.ID, SEID: c.SEID})
	if err := uow.NotifyExpired(c.SPID, ExpiredNotification{SPID: c.SPID, ConversationID: c.ID, SEID: c.SEID, ExpiredAt: c.ExpiresAt}); err != nil {
		return err
	}
	return s.release(uow, c, now, r)
}

// release frees the SE of a closed conversation if it still holds it.
func (s *Service) release(uow UnitOfWork, c *domain.Conversation, now time.Time, r *Report) error {
	holder, err := uow.OpenConversationOf(c.SEID)
	if err != nil || holder != c.ID {
		return err
	}
	return s.free(uow, c.SEID, now, r)
}

// Sweep expires what ran out on one SE at now: its open conversation (SP
// notified, SE freed, next waiting begin served) and waiting begins past their
// validity (answered Expired). It is idempotent.
func (s *Service) Sweep(uow UnitOfWork, seID string) (Report, error) {
	var r Report
	now := s.now()
	if _, err := s.settle(uow, seID, now, &r); err != nil {
		return r, err
	}
	waiting, err := uow.WaitingBegins(seID)
	if err != nil {
		return r, err
	}
	for _, w := range waiting {
		if !w.ExpiredAt(now) {
			continue
		}
		if err := uow.RemoveWaitingBegin(w.Key); err != nil {
			return r, err
		}
		if err := s.refuseExpiredWaiting(uow, w, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// usable loads a conversation for an SP request, expiring it first if its
// time ran out, and returns it or the CONVERSATION_NOT_OPEN error to answer.
func (s *Service) usable(uow UnitOfWork, spID, conversationID string, now time.Time, r *Report) (*domain.Conversation, *contract.Error, error) {
	c, err := uow.Conversation(conversationID)
	if err != nil {
		return nil, nil, err
	}
	if c == nil || c.SPID != spID {
		// Another SP's conversation is reported as unknown: never leak it.
		return nil, domain.NotOpen(conversationID), nil
	}
	if c.DueForExpiry(now) {
		if err := s.expire(uow, c, now, r); err != nil {
			return nil, nil, err
		}
	}
	if cerr := c.CheckOpenFor(spID, now); cerr != nil {
		return nil, cerr, nil
	}
	return c, nil, nil
}

// SendScript is an SP's send-script request.
type SendScript struct {
	ConversationID  string
	Commands        []string
	Securing        string
	ContinueOnError bool
	// ValidUntil is zero when the SP set no validitySeconds.
	ValidUntil time.Time
}

// SendScript accepts a script into an open conversation and hands it to the
// script router; the SP is answered when the script completes (or now, with
// the reason it was refused).
func (s *Service) SendScript(uow UnitOfWork, req events.RequestRef, cmd SendScript) (Report, error) {
	var r Report
	now := s.now()
	subject := cmd.ConversationID
	switch {
	case cmd.ConversationID == "":
		return r, r.refuse(req.Op, uow, req, "", contract.Errorf(contract.CodeInvalidArgument,
			"conversationId is missing: give the conversationId of the begin-conversation response"))
	case len(cmd.Commands) == 0:
		return r, r.refuse(req.Op, uow, req, subject, contract.Errorf(contract.CodeInvalidArgument,
			"commands is empty: send at least one C-APDU"))
	}
	securing := cmd.Securing
	if securing == "" {
		securing = contract.SecuringEndToEnd
	}
	if securing != contract.SecuringEndToEnd && securing != contract.SecuringCentral {
		return r, r.refuse(req.Op, uow, req, subject, contract.Errorf(contract.CodeInvalidArgument,
			"securing %q is not end-to-end or central", cmd.Securing))
	}
	c, cerr, err := s.usable(uow, req.SPID, cmd.ConversationID, now, &r)
	if err != nil {
		return r, err
	}
	if cerr != nil {
		return r, r.refuse(req.Op, uow, req, subject, cerr)
	}
	scriptID := s.NewScriptID()
	if cerr := c.StartScript(scriptID, req, now); cerr != nil {
		return r, r.refuse(req.Op, uow, req, subject, cerr)
	}
	if err := uow.SaveConversation(c); err != nil {
		return r, err
	}
	r.ScriptsRequested++
	return r, uow.RequestScript(events.ScriptRequested{
		Request: req, ConversationID: c.ID, ScriptID: scriptID, SEID: c.SEID, MNO: c.MNOID,
		TargetAID: c.TargetAID, Commands: cmd.Commands, Securing: securing, ContinueOnError: cmd.ContinueOnError,
		MaxAPDUsPerScript: c.Limits.MaxAPDUsPerScript, MaxScriptBytes: c.Limits.MaxScriptBytes, ValidUntil: cmd.ValidUntil,
	})
}

// ScriptDone is the script router's report that a script has run.
type ScriptDone struct {
	Request        events.RequestRef
	ConversationID string
	ScriptID       string
	SEID           string
	Response       contract.SendScriptResponse
	// TemporaryKeys answers a procedure's create-sd step.
	TemporaryKeys *contract.TemporaryKeys
	// KeysRotated lists the SP SDs whose keys the SP's script replaced.
	KeysRotated []events.KeyRotation
}

// CompleteScript frees the conversation for its next script and answers the
// SP's send-script with the script's response. A completion of a script
// already answered changes nothing.
func (s *Service) CompleteScript(uow UnitOfWork, done ScriptDone) (Report, error) {
	var r Report
	c, err := uow.Conversation(done.ConversationID)
	if err != nil {
		return r, err
	}
	if c == nil {
		return r, fmt.Errorf("%w: completion of script %s names unknown conversation %s", ErrUnprocessable, done.ScriptID, done.ConversationID)
	}
	if c.SEID != done.SEID {
		return r, fmt.Errorf("%w: completion of script %s names SE %s but conversation %s is on SE %s",
			ErrUnprocessable, done.ScriptID, done.SEID, c.ID, c.SEID)
	}
	if c.IsProcedure() {
		return r, s.completeProcedureStep(uow, c, done, &r)
	}
	req := done.Request
	if running := c.CompleteScript(done.ScriptID); running != nil {
		// The request recorded when the script started is the one to answer.
		req = running.Request
		if err := uow.SaveConversation(c); err != nil {
			return r, err
		}
		r.ScriptsCompleted++
	} else {
		answered, err := uow.Answered(req)
		if err != nil || answered {
			return r, err
		}
		return r, fmt.Errorf("%w: script %s is not running in conversation %s and its request %s was never answered",
			ErrUnprocessable, done.ScriptID, c.ID, req.Key())
	}
	resp := done.Response
	resp.ConversationID = c.ID
	if resp.Responses == nil {
		resp.Responses = []string{}
	}
	if resp.Failed == nil {
		resp.Failed = []contract.ScriptFailure{}
	}
	if err := uow.Reply(req, c.ID, resp); err != nil {
		return r, err
	}
	return r, s.rotateKeys(uow, c, done.KeysRotated, &r)
}

// End closes a conversation at its SP's request, frees the SE and serves the
// next waiting begin.
func (s *Service) End(uow UnitOfWork, req events.RequestRef, conversationID, outcome string) (Report, error) {
	var r Report
	now := s.now()
	if conversationID == "" {
		return r, r.refuse(req.Op, uow, req, "", contract.Errorf(contract.CodeInvalidArgument,
			"conversationId is missing: give the conversationId of the begin-conversation response"))
	}
	c, cerr, err := s.usable(uow, req.SPID, conversationID, now, &r)
	if err != nil {
		return r, err
	}
	if cerr != nil {
		return r, r.refuse(req.Op, uow, req, conversationID, cerr)
	}
	if cerr := c.End(outcome, now); cerr != nil {
		return r, r.refuse(req.Op, uow, req, conversationID, cerr)
	}
	if err := uow.SaveConversation(c); err != nil {
		return r, err
	}
	r.Ended = append(r.Ended, ConversationRef{ConversationID: c.ID, SEID: c.SEID})
	if err := uow.Reply(req, c.ID, contract.EndConversationResponse{
		Result: contract.Success(), ConversationID: c.ID, Outcome: c.Outcome,
	}); err != nil {
		return r, err
	}
	if err := s.personalize(uow, c, now, &r); err != nil {
		return r, err
	}
	// Answer the ending SP first, then the begin that waited for the SE.
	return r, s.release(uow, c, now, &r)
}
