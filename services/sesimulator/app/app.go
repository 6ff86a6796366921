// Package app holds the se-simulator's use cases: manufacturing a card for an
// enrolled SE, executing a script on a card with exactly-once effect, the
// operators' queries and manual APDUs. It knows nothing of NATS or
// CloudEvents: storage, inbox and outbox come through the Fleet port.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// Errors of the use cases. Ports map them: ErrNotFound to HTTP 404,
// ErrInvalid and domain.ErrRejectedRecord to a dead letter (retrying cannot
// help), ErrCardNotYetEnrolled to a retry.
var (
	// ErrNotFound: the SE has no card.
	ErrNotFound = errors.New("no card for this SE")
	// ErrInvalid: the input can never be processed as it is.
	ErrInvalid = errors.New("invalid input")
	// ErrCardNotYetEnrolled: a script arrived for an SE without a card while
	// its enrolment may still be on its way; retry later.
	ErrCardNotYetEnrolled = errors.New("no card yet for this SE, enrolment may still be on its way")
)

// DefaultEnrolmentGrace is how long a script for an SE without a card is
// retried before it is answered SE_INACCESSIBLE.
const DefaultEnrolmentGrace = 15 * time.Second

// Config configures the use cases.
type Config struct {
	// Factory makes the cards.
	Factory domain.Factory
	// EnrolmentGrace: a script for an SE without a card is retried while the
	// event is younger than this (the SE record may still be on its way),
	// then answered SE_INACCESSIBLE. 0 means DefaultEnrolmentGrace.
	EnrolmentGrace time.Duration
	// CacheCards bounds the decoded cards kept in memory (default 1024).
	CacheCards int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observer receives counts for metrics (default: none).
	Observer Observer
	// Log receives one line per card manufactured and per script, with SE
	// ids, conversation ids and counts only.
	Log *slog.Logger
}

// App runs the use cases on a Fleet.
type App struct {
	fleet Fleet
	cfg   Config
	cache *cardCache
	locks seLocks
}

// New returns the use cases over fleet.
func New(fleet Fleet, cfg Config) *App {
	if cfg.EnrolmentGrace <= 0 {
		cfg.EnrolmentGrace = DefaultEnrolmentGrace
	}
	if cfg.CacheCards <= 0 {
		cfg.CacheCards = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &App{fleet: fleet, cfg: cfg, cache: newCardCache(cfg.CacheCards)}
}

// CachedCards returns how many decoded cards are in memory (metrics).
func (a *App) CachedCards() int { return a.cache.len() }

// load returns the SE's card as last committed, from the cache or decoded
// from storage; nil when the SE has no card. The caller holds the SE lock.
func (a *App) load(seID string) (*loadedCard, error) {
	if lc, ok := a.cache.get(seID); ok {
		a.cfg.Observer.CardCacheLookup(true)
		return lc, nil
	}
	a.cfg.Observer.CardCacheLookup(false)
	var (
		stored StoredCard
		lc     loadedCard
	)
	err := a.fleet.Read(func(r FleetReader) error {
		var err error
		if stored, err = r.Card(seID); err != nil || stored == nil {
			return err
		}
		if lc.conversationID, err = r.SessionConversation(seID); err != nil {
			return err
		}
		lc.counters, err = r.Counters(seID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read card of SE %s: %w", seID, err)
	}
	if stored == nil {
		return nil, nil
	}
	if lc.card, err = a.fleet.DecodeCard(seID, stored); err != nil {
		// Most likely a wrong SESIM_STATE_KEK: fail (and retry, then
		// dead-letter) rather than answer for a card we cannot read.
		return nil, fmt.Errorf("decode card of SE %s: %w", seID, err)
	}
	a.cache.add(seID, &lc)
	return &lc, nil
}

// EnrolCommand asks for the card of an enrolled SE.
type EnrolCommand struct {
	// EventID is the id of the registry event (inbox key).
	EventID string
	// Record is the registry's SE record.
	Record events.SERecord
}

// Enrol manufactures the card of an SE if it has none yet. An SE that has a
// card keeps it untouched, whatever its record says now: a card is made once
// (re-manufacturing would wipe everything the SPs installed). It reports
// whether a card was made. Errors wrapping domain.ErrRejectedRecord are
// permanent.
func (a *App) Enrol(_ context.Context, cmd EnrolCommand) (bool, error) {
	seID := cmd.Record.SEID
	spec, err := a.cfg.Factory.Spec(cmd.Record)
	if err != nil {
		return false, err
	}
	unlock := a.locks.lock(seID)
	defer unlock()
	if _, ok := a.cache.get(seID); ok {
		return false, nil
	}
	var exists bool
	if err := a.fleet.Read(func(r FleetReader) error {
		var err error
		exists, err = r.HasCard(seID)
		return err
	}); err != nil {
		return false, fmt.Errorf("read card of SE %s: %w", seID, err)
	}
	if exists {
		return false, nil
	}
	c, err := card.Manufacture(spec)
	if err != nil {
		// The factory checked everything it knows of; what is left (an AID
		// clashing with a well-known one, say) is in the record too.
		return false, fmt.Errorf("%w: SE %s: %v", domain.ErrRejectedRecord, seID, err)
	}
	stored, err := a.fleet.EncodeCard(seID, c)
	if err != nil {
		return false, fmt.Errorf("encode card of SE %s: %w", seID, err)
	}
	var created bool
	err = a.fleet.Write(func(w FleetWriter) error {
		created = false
		if has, err := w.HasCard(seID); err != nil || has {
			return err
		}
		fresh, err := w.MarkProcessed(InboxEnrol, cmd.EventID)
		if err != nil || !fresh {
			return err
		}
		if err := w.PutCard(seID, stored); err != nil {
			return err
		}
		if err := w.PutCounters(seID, domain.Counters{}); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store card of SE %s: %w", seID, err)
	}
	if created {
		a.cache.add(seID, &loadedCard{card: c})
		a.cfg.Observer.CardManufactured()
		a.cfg.Log.Info("card manufactured", "seId", seID, "configuration", cmd.Record.Configuration,
			"preIssuedSpDomains", len(cmd.Record.PreIssuedSPDomains))
	}
	return created, nil
}

// ExecuteCommand asks to run a script on an SE's card.
type ExecuteCommand struct {
	// EventID is the id of the execute event (inbox key).
	EventID string
	// StoredAt is when the bus stored the event (enrolment grace period).
	StoredAt time.Time
	// CorrelationID is copied to the result (the SP request's ce-id).
	CorrelationID string
	// Request, ConversationID, ScriptID and SEID identify the script.
	Request        events.RequestRef
	ConversationID string
	ScriptID       string
	SEID           string
	// Commands are the C-APDUs in hex.
	Commands []string
	// ContinueOnError runs every command even after a failure.
	ContinueOnError bool
}

// Execute runs a script on the SE's card and commits, in one transaction,
// the card's new state, its session and counters, the inbox record and the
// result event. A crash before that commit leaves the old state, and the
// redelivered event runs the script again on it; after the commit a
// redelivered event changes nothing: every APDU is executed exactly once.
//
// The first script of a new conversation finds a reset card: a new OTA
// session starts with a power-cycled card, so no secure channel survives
// from another conversation.
func (a *App) Execute(_ context.Context, cmd ExecuteCommand) error {
	seID := cmd.SEID
	unlock := a.locks.lock(seID)
	defer unlock()
	lc, err := a.load(seID)
	if err != nil {
		return err
	}
	result := events.SEExecuted{Request: cmd.Request, ConversationID: cmd.ConversationID, ScriptID: cmd.ScriptID,
		SEID: seID, Responses: []string{}}
	if lc == nil {
		if age := a.cfg.Now().Sub(cmd.StoredAt); age < a.cfg.EnrolmentGrace {
			return fmt.Errorf("%w: SE %s, script %s waited %s of %s", ErrCardNotYetEnrolled, seID, cmd.ScriptID,
				age.Round(time.Millisecond), a.cfg.EnrolmentGrace)
		}
		result.Error = contract.Errorf(contract.CodeSEInaccessible,
			"no card for SE %s: the SE is not enrolled with the card simulator; enrol it at the registry (PUT /v1/ses/%s) and send the script again",
			seID, seID)
		return a.answerWithoutCard(cmd, result)
	}
	script, err := domain.ParseScript(cmd.Commands, cmd.ContinueOnError)
	if err != nil {
		result.Error = contract.Errorf(contract.CodeInvalidArgument, "%v; nothing was executed", err)
		return a.answerWithoutCard(cmd, result)
	}
	newSession := lc.conversationID != cmd.ConversationID
	if newSession {
		lc.card.Reset()
	}
	out := script.Run(lc.card)
	result.Responses = out.HexResponses()
	counters := lc.counters
	counters.RecordScript(cmd.ScriptID, out.Executed())
	stored, err := a.fleet.EncodeCard(seID, lc.card)
	if err != nil {
		a.cache.remove(seID)
		return fmt.Errorf("encode card of SE %s: %w", seID, err)
	}
	var duplicate bool
	err = a.fleet.Write(func(w FleetWriter) error {
		fresh, err := w.MarkProcessed(InboxExecute, cmd.EventID)
		if err != nil {
			return err
		}
		duplicate = !fresh
		if duplicate {
			return nil
		}
		if err := w.PutCard(seID, stored); err != nil {
			return err
		}
		if newSession {
			if err := w.PutSessionConversation(seID, cmd.ConversationID); err != nil {
				return err
			}
		}
		if err := w.PutCounters(seID, counters); err != nil {
			return err
		}
		return w.EmitExecuted(result, cmd.CorrelationID)
	})
	if err != nil || duplicate {
		// The card in memory ran the script but that state was not (or, for
		// a duplicate, must not be) committed: forget it, storage has the truth.
		a.cache.remove(seID)
		if err != nil {
			return fmt.Errorf("commit script %s on SE %s: %w", cmd.ScriptID, seID, err)
		}
		a.cfg.Log.Info("script already executed, redelivery ignored", "seId", seID, "scriptId", cmd.ScriptID,
			"eventId", cmd.EventID)
		return nil
	}
	lc.conversationID = cmd.ConversationID
	lc.counters = counters
	a.cache.add(seID, lc)
	a.cfg.Observer.ScriptExecuted(out.Executed())
	a.cfg.Log.Debug("script executed", "seId", seID, "conversationId", cmd.ConversationID, "scriptId", cmd.ScriptID,
		"commands", len(script.Commands), "executed", out.Executed(), "newSession", newSession)
	return nil
}

// answerWithoutCard commits a result that did not touch the card (no card,
// or a script that could not be read) with its inbox record.
func (a *App) answerWithoutCard(cmd ExecuteCommand, result events.SEExecuted) error {
	err := a.fleet.Write(func(w FleetWriter) error {
		fresh, err := w.MarkProcessed(InboxExecute, cmd.EventID)
		if err != nil || !fresh {
			return err
		}
		return w.EmitExecuted(result, cmd.CorrelationID)
	})
	if err != nil {
		return fmt.Errorf("commit result of script %s on SE %s: %w", cmd.ScriptID, cmd.SEID, err)
	}
	a.cfg.Log.Warn("script not executed", "seId", cmd.SEID, "conversationId", cmd.ConversationID,
		"scriptId", cmd.ScriptID, "code", result.Error.Code)
	return nil
}

// CardView is what operators see of a card: no key values.
type CardView struct {
	SEID          string
	CIN           []byte
	Configuration card.Config
	// LifeCycle is the card life-cycle state (GPC Table 11-6).
	LifeCycle byte
	// ExecutionCount is the number of APDUs the card processed.
	ExecutionCount uint64
	// SessionConversationID is the conversation of the current OTA session.
	SessionConversationID string
	// Registry lists the card's registry entries in GET STATUS order.
	Registry []card.RegistryEntry
}

// Card returns the view of an SE's card (ErrNotFound if none).
func (a *App) Card(_ context.Context, seID string) (CardView, error) {
	unlock := a.locks.lock(seID)
	defer unlock()
	lc, err := a.load(seID)
	if err != nil {
		return CardView{}, err
	}
	if lc == nil {
		return CardView{}, ErrNotFound
	}
	c := lc.card
	return CardView{SEID: seID, CIN: c.CIN(), Configuration: c.Config(), LifeCycle: c.LifeCycle(),
		ExecutionCount: c.ExecutionCount(), SessionConversationID: lc.conversationID, Registry: c.Registry()}, nil
}

// Counters returns the execution counters of an SE's card (ErrNotFound if
// none), as committed.
func (a *App) Counters(_ context.Context, seID string) (domain.Counters, error) {
	var (
		c   domain.Counters
		has bool
	)
	err := a.fleet.Read(func(r FleetReader) error {
		var err error
		if has, err = r.HasCard(seID); err != nil || !has {
			return err
		}
		c, err = r.Counters(seID)
		return err
	})
	if err != nil {
		return domain.Counters{}, err
	}
	if !has {
		return domain.Counters{}, ErrNotFound
	}
	return c, nil
}

// CardCount returns the number of cards in the fleet.
func (a *App) CardCount(_ context.Context) (int, error) {
	var n int
	err := a.fleet.Read(func(r FleetReader) error {
		var err error
		n, err = r.CardCount()
		return err
	})
	return n, err
}

// CardIDs lists up to limit SE ids with a card, in order, after after.
func (a *App) CardIDs(_ context.Context, after string, limit int) ([]string, error) {
	var ids []string
	err := a.fleet.Read(func(r FleetReader) error {
		var err error
		ids, err = r.CardIDs(after, limit)
		return err
	})
	return ids, err
}

// TransmitAPDU sends one APDU to a card outside any conversation, for
// operators' manual testing, and commits the card's new state. It does not
// reset the card nor change its session: an operator can break an SP's
// ongoing secure channel with it, which is why the endpoint is off by
// default.
func (a *App) TransmitAPDU(_ context.Context, seID string, capdu []byte) ([]byte, error) {
	resp, err := a.transmitOne(seID, capdu)
	if err != nil {
		return nil, err
	}
	a.cfg.Observer.DebugAPDUExecuted()
	a.cfg.Log.Info("debug APDU executed", "seId", seID, "sw", fmt.Sprintf("%04X", domain.StatusWord(resp)))
	return resp, nil
}

// transmitOne runs one APDU on a card under its SE lock and commits the
// card's new state and counters before returning the response: the fleet
// stays the system of record whatever door the APDU came in by. A failed
// commit drops the in-memory card (storage has the truth) and returns the
// error instead of a response the card would not remember.
func (a *App) transmitOne(seID string, capdu []byte) ([]byte, error) {
	if len(capdu) == 0 {
		return nil, fmt.Errorf("%w: empty APDU", ErrInvalid)
	}
	unlock := a.locks.lock(seID)
	defer unlock()
	lc, err := a.load(seID)
	if err != nil {
		return nil, err
	}
	if lc == nil {
		return nil, ErrNotFound
	}
	resp := lc.card.Transmit(capdu)
	counters := lc.counters
	counters.RecordAPDU()
	stored, err := a.fleet.EncodeCard(seID, lc.card)
	if err != nil {
		a.cache.remove(seID)
		return nil, fmt.Errorf("encode card of SE %s: %w", seID, err)
	}
	err = a.fleet.Write(func(w FleetWriter) error {
		if err := w.PutCard(seID, stored); err != nil {
			return err
		}
		return w.PutCounters(seID, counters)
	})
	if err != nil {
		a.cache.remove(seID)
		return nil, fmt.Errorf("commit APDU on SE %s: %w", seID, err)
	}
	lc.counters = counters
	a.cache.add(seID, lc)
	return resp, nil
}
