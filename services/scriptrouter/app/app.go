package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// Config configures the use cases.
type Config struct {
	// DefaultLimits apply when a ScriptRequested carries no limit of its own.
	DefaultLimits domain.Limits
	// IssuerMasterKey diversifies the keys of each card's central SD.
	IssuerMasterKey []byte
	// KeyExchangeKey unwraps the SP key-transport keys of the registry records.
	KeyExchangeKey []byte
	// Sealer seals temporary keys at rest.
	Sealer Sealer
	// TemporaryKeyTTL is how long unrotated temporary keys are kept (messages).
	TemporaryKeyTTL time.Duration
	// Rand is the source of host challenges and temporary keys (crypto/rand if nil).
	Rand io.Reader
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// App is the script router's use cases.
type App struct {
	cfg   Config
	store Transactor
}

// New returns the use cases on store.
func New(cfg Config, store Transactor) *App {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &App{cfg: cfg, store: store}
}

// Outcomes of a use case, for logs and metrics.
const (
	OutcomeRouted    = "routed"
	OutcomeRejected  = "rejected"
	OutcomeCompleted = "completed"
	OutcomeDuplicate = "duplicate"
)

// Result says what a use case did once its transaction committed.
type Result struct {
	// Outcome is one of the Outcome* constants.
	Outcome string
	// Status of the ScriptCompleted emitted (rejected and completed only).
	Status contract.Status
	// Error of the ScriptCompleted emitted, if any.
	Error *contract.Error
	// Commands is the number of commands in the script.
	Commands int
	// Phase is the round trip of the router's own secure channel that was
	// sent (routed) or that ended the script (completed); empty for scripts
	// secured end to end.
	Phase string
	// TemporaryKeys is the key version of temporary keys handed out (0: none).
	TemporaryKeys int
	// KeysRotated is the number of SP SDs whose keys the script replaced.
	KeysRotated int
}

// RequestScript handles a script the conversation service accepted. A script
// that fails validation, the securing check, its validity or authorization
// (domain.Authorize, on the registry projection and the conversation's card
// state) is answered at once with a ScriptCompleted (Failed or Expired); a
// good one is stored in flight and handed to the MNO adapter of the SE's MNO,
// and the card state it leaves is stored for the next script. The same
// event, or the same script id under another event, is routed only once.
//
// stepErr is set when the event did not match its published schema but could
// still be decoded: the SP is answered rather than left waiting, with the
// script's own faults first (they say what to fix) and INTERNAL_ERROR otherwise.
func (a *App) RequestScript(ctx context.Context, msg Message, req events.ScriptRequested, stepErr error) (Result, error) {
	now := a.cfg.Now().UTC()
	limits := domain.Limits{MaxAPDUs: req.MaxAPDUsPerScript, MaxBytes: req.MaxScriptBytes}.WithDefaults(a.cfg.DefaultLimits)
	central := req.Procedure != nil || domain.IsCentral(req.Securing)
	// The router's session adds commands to the delivered script (EXTERNAL
	// AUTHENTICATE, and the PUT KEY of temporary keys): they count against the
	// MNO's APDU limit the conversation passed on.
	overhead := 0
	if central {
		overhead = 1
		if req.Procedure != nil && req.Procedure.TemporaryKeys != nil {
			overhead = 2
		}
		if limits.MaxAPDUs > overhead {
			limits.MaxAPDUs -= overhead
		}
	}
	commands, rej := domain.ValidateScript(req.Commands, req.Securing, limits)
	if rej != nil && central && rej.Err.Code == contract.CodeScriptTooLarge && len(req.Commands) > limits.MaxAPDUs {
		rej.Err.Message += fmt.Sprintf(" (with securing central the central TSM's secure channel takes %d of the conversation's %d APDUs)",
			overhead, limits.MaxAPDUs+overhead)
	}
	if rej == nil && central {
		rej = domain.CheckCentralCommands(commands)
	}
	if rej == nil && req.Procedure != nil {
		rej = checkProcedure(req.Procedure)
	}
	if rej == nil && stepErr != nil {
		rej = domain.Reject(contract.CodeInternalError, "the central TSM passed the script on malformed; contact its operator")
	}
	if rej == nil && !req.ValidUntil.IsZero() && now.After(req.ValidUntil) {
		rej = domain.Reject(contract.CodeExpired, "the request's validity ended at %s before the script could be routed",
			req.ValidUntil.UTC().Format(time.RFC3339))
	}
	if rej == nil && !topology.ValidToken(req.MNO) {
		// The conversation took the MNO from the registry: a missing one is
		// our fault, not the SP's, but the SP must still get an answer.
		rej = domain.Reject(contract.CodeInternalError, "the SE has no usable MNO to deliver the script through; contact the central TSM operator")
	}
	base := domain.Script{ScriptID: req.ScriptID, ConversationID: req.ConversationID, SEID: req.SEID, MNO: req.MNO,
		Request: req.Request, ContinueOnError: req.ContinueOnError, ValidUntil: req.ValidUntil, AcceptedAt: now}
	base.Commands = make([]string, len(commands))
	for i, c := range commands {
		base.Commands[i] = c.Hex
	}
	var res Result
	err := a.store.Update(func(tx Tx) error {
		script := base
		res = Result{Commands: len(req.Commands)}
		first, err := tx.MarkProcessed(msg.Inbox, msg.EventID)
		if err != nil || !first {
			res.Outcome = OutcomeDuplicate
			return err
		}
		if seen, err := scriptKnown(tx.Scripts(), req.ScriptID); err != nil || seen {
			// Same script re-requested under a new event id: it is already
			// routed (or answered); routing it again would run it twice.
			res.Outcome = OutcomeDuplicate
			return err
		}
		// Authorization runs after the syntax and limit checks, inside the
		// transaction: it reads the card state the conversation's previous
		// scripts left and stores the one this script leaves. Procedure
		// steps are the central TSM's own and skip it.
		rejection := rej
		var state *domain.CardState
		if rejection == nil {
			if req.Procedure != nil {
				script.Session, rejection, err = a.procedureSession(tx, req)
			} else {
				var next domain.CardState
				next, script.KeyPuts, script.Session, rejection, err = a.authorize(tx, req, commands, now)
				state = &next
			}
			if err != nil {
				return err
			}
		}
		if rejection != nil {
			resp := domain.RejectedResponse(req.ConversationID, rejection)
			res.Outcome, res.Status, res.Error = OutcomeRejected, resp.Status, resp.Error
			if err := tx.Scripts().PutSummary(domain.CompletedSummary(script, resp, now)); err != nil {
				return err
			}
			return tx.Outbox().CompleteScript(msg.CorrelationID, completed(script, resp))
		}
		res.Outcome = OutcomeRouted
		if state != nil {
			if err := tx.CardStates().Put(script.ConversationID, *state); err != nil {
				return err
			}
		}
		if err := tx.Scripts().PutInFlight(script); err != nil {
			return err
		}
		deliver := events.MNODeliver{Request: script.Request, ConversationID: script.ConversationID, ScriptID: script.ScriptID,
			SEID: script.SEID, Commands: script.Commands, ContinueOnError: script.ContinueOnError, ValidUntil: script.ValidUntil}
		if script.Session != nil {
			open, err := script.Session.OpenCommands()
			if err != nil {
				return err
			}
			res.Phase = domain.PhaseOpen
			deliver.ScriptID, deliver.Commands, deliver.ContinueOnError = domain.PhaseScriptID(script.ScriptID, domain.PhaseOpen), open, false
		}
		return tx.Outbox().DeliverToMNO(script.MNO, msg.CorrelationID, deliver)
	})
	return res, err
}

// ErrScriptNotInFlight is returned when an SE result names a script the router
// never routed or has lost: nothing can be answered; the event is dead-lettered.
var ErrScriptNotInFlight = errors.New("script not in flight")

// ErrSEMismatch is returned when an SE result comes from another SE than the
// one the script was routed to.
var ErrSEMismatch = errors.New("result from another SE")

// CompleteScript handles the SE's result of a script in flight: it builds the
// send-script response, emits ScriptCompleted and forgets the script, in one
// transaction. A result for a script that already completed is a duplicate.
// stepErr is set when the result did not match its published schema: the
// script then ends Failed (INTERNAL_ERROR, outcome unknown) instead of
// staying in flight until its conversation expires.
func (a *App) CompleteScript(_ context.Context, msg Message, ex events.SEExecuted, stepErr error) (Result, error) {
	now := a.cfg.Now().UTC()
	var res Result
	err := a.store.Update(func(tx Tx) error {
		res = Result{}
		first, err := tx.MarkProcessed(msg.Inbox, msg.EventID)
		if err != nil || !first {
			res.Outcome = OutcomeDuplicate
			return err
		}
		script, phase, err := inFlightFor(tx.Scripts(), ex.ScriptID)
		if errors.Is(err, ErrNotFound) {
			id := ex.ScriptID
			if base, _, ok := domain.SplitPhaseScriptID(id); ok {
				if _, serr := tx.Scripts().Summary(base); serr == nil {
					res.Outcome = OutcomeDuplicate
					return nil
				}
			}
			if _, serr := tx.Scripts().Summary(id); serr == nil {
				res.Outcome = OutcomeDuplicate
				return nil
			}
			return fmt.Errorf("%w: script %s of SE %s (conversation %s) is unknown to the router: its state was lost",
				ErrScriptNotInFlight, ex.ScriptID, ex.SEID, ex.ConversationID)
		}
		if err != nil {
			return err
		}
		if script.SEID != ex.SEID {
			return fmt.Errorf("%w: script %s was routed to SE %s but the result comes from SE %s",
				ErrSEMismatch, ex.ScriptID, script.SEID, ex.SEID)
		}
		seErr := ex.Error
		if stepErr != nil {
			seErr = contract.Errorf(contract.CodeInternalError,
				"the SE's result reached the central TSM malformed; the outcome of the script is unknown: check the SE's state before resending")
		}
		if script.Session != nil {
			if phase != script.Session.Phase {
				// A late result of a round trip already handled.
				res.Outcome = OutcomeDuplicate
				return nil
			}
			return a.advanceSession(tx, msg, script, ex, seErr, now, &res)
		}
		resp := domain.BuildResponse(script, ex.Responses, seErr)
		var rotated []events.KeyRotation
		if seErr == nil {
			if rotated, err = a.recordRotations(tx, script, ex.Responses, now); err != nil {
				return err
			}
		}
		return a.finish(tx, msg, script, resp, nil, rotated, now, &res)
	})
	return res, err
}

// inFlightFor finds the script in flight an SE result belongs to: the script
// itself, or the script whose session round trip the id names (phase set).
func inFlightFor(s Scripts, id string) (domain.Script, string, error) {
	script, err := s.InFlight(id)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return script, "", err
	}
	base, phase, ok := domain.SplitPhaseScriptID(id)
	if !ok {
		return script, "", err
	}
	script, err = s.InFlight(base)
	if err == nil && script.Session == nil {
		return domain.Script{}, "", ErrNotFound
	}
	return script, phase, err
}

// finish completes a script: summary, ScriptCompleted, and the script leaves
// the in-flight bucket.
func (a *App) finish(tx Tx, msg Message, script domain.Script, resp contract.SendScriptResponse,
	tk *contract.TemporaryKeys, rotated []events.KeyRotation, now time.Time, res *Result) error {
	res.Outcome, res.Status, res.Error, res.Commands = OutcomeCompleted, resp.Status, resp.Error, len(script.Commands)
	res.KeysRotated = len(rotated)
	if tk != nil {
		res.TemporaryKeys = tk.KeyVersion
	}
	if err := tx.Scripts().DeleteInFlight(script.ScriptID); err != nil {
		return err
	}
	if err := tx.Scripts().PutSummary(domain.CompletedSummary(script, resp, now)); err != nil {
		return err
	}
	c := completed(script, resp)
	c.TemporaryKeys, c.KeysRotated = tk, rotated
	return tx.Outbox().CompleteScript(msg.CorrelationID, c)
}

// Summary returns the state and counts of a script (in flight or completed),
// or ErrNotFound.
func (a *App) Summary(scriptID string) (domain.Summary, error) {
	var sum domain.Summary
	err := a.store.View(func(s Scripts) error {
		script, err := s.InFlight(scriptID)
		if err == nil {
			sum = script.InFlightSummary()
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		sum, err = s.Summary(scriptID)
		return err
	})
	return sum, err
}

// authorize applies domain.AuthorizeScript with what the SP owns on the SE
// and the card state of the conversation; it returns the state to store if
// the script is routed and the script's PUT KEY commands on the SP's SD. For
// securing central it also picks the SP SD whose temporary keys the router
// holds and returns the session to open with it (the script's commands then
// run with that SD selected on the basic channel), or the refusal that says
// why the router cannot secure the script.
func (a *App) authorize(tx Tx, req events.ScriptRequested, commands []domain.Command, now time.Time) (
	domain.CardState, []domain.KeyPut, *domain.Session, *domain.Rejection, error) {
	scope, found, err := tx.Registry().Scope(req.Request.SPID, req.SEID)
	if err != nil {
		return domain.CardState{}, nil, nil, nil, err
	}
	if !found {
		return domain.CardState{}, nil, nil, domain.Reject(contract.CodeNotAllowed,
			"the central TSM has no registry record of SP %s, so it cannot tell its security domain: contact the central TSM operator",
			req.Request.SPID), nil
	}
	state, err := tx.CardStates().Get(req.ConversationID)
	if err != nil {
		return domain.CardState{}, nil, nil, nil, err
	}
	var session *domain.Session
	if domain.IsCentral(req.Securing) {
		var rej *domain.Rejection
		if session, rej, err = a.centralSession(tx, req, scope); err != nil || rej != nil {
			return domain.CardState{}, nil, nil, rej, err
		}
		state = state.WithOwnSD(0, session.SDAID)
	}
	next, puts, rej := domain.AuthorizeScript(scope, state, commands)
	next.UpdatedAt = now
	return next, puts, session, rej, nil
}

// ApplyRegistry records one registry record in the projection, once per
// event; seq is its stream sequence (older records of a subject are ignored).
// rec is an events.SPRecord, events.ServiceRecord or events.SERecord.
func (a *App) ApplyRegistry(_ context.Context, msg Message, seq uint64, rec any) (bool, error) {
	applied := false
	err := a.store.Update(func(tx Tx) error {
		applied = false
		first, err := tx.MarkProcessed(msg.Inbox, msg.EventID)
		if err != nil || !first {
			return err
		}
		switch r := rec.(type) {
		case events.SPRecord:
			err = tx.Registry().PutSP(seq, r)
		case events.ServiceRecord:
			err = tx.Registry().PutService(seq, r)
		case events.SERecord:
			err = tx.Registry().PutSE(seq, r)
		default:
			return fmt.Errorf("%w: %T is not a registry record", ErrInvalidRecord, rec)
		}
		applied = err == nil
		return err
	})
	return applied, err
}

// ErrInvalidRecord is returned for a registry record the projection cannot hold.
var ErrInvalidRecord = errors.New("invalid registry record")

func scriptKnown(s Scripts, scriptID string) (bool, error) {
	if _, err := s.InFlight(scriptID); err == nil || !errors.Is(err, ErrNotFound) {
		return err == nil, err
	}
	if _, err := s.Summary(scriptID); err == nil || !errors.Is(err, ErrNotFound) {
		return err == nil, err
	}
	return false, nil
}

func completed(s domain.Script, resp contract.SendScriptResponse) events.ScriptCompleted {
	return events.ScriptCompleted{Request: s.Request, ConversationID: s.ConversationID, ScriptID: s.ScriptID,
		SEID: s.SEID, Response: resp}
}
