package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
)

// Config configures the use cases of one adapter instance.
type Config struct {
	// MNOID is the MNO this instance delivers for.
	MNOID string
	// Overrides from the environment (latency, APDU limit, rate).
	Overrides domain.Overrides
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// App is the MNO adapter's use cases.
type App struct {
	cfg     Config
	store   Transactor
	limiter *rate.Limiter
	waiting atomic.Int64
}

// New returns the use cases of one adapter instance.
func New(cfg Config, store Transactor) *App {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	limit := rate.Inf
	if cfg.Overrides.RateLimit > 0 {
		limit = rate.Limit(cfg.Overrides.RateLimit)
	}
	return &App{cfg: cfg, store: store, limiter: rate.NewLimiter(limit, max(cfg.Overrides.RateBurst, 1))}
}

// Result says what a use case did once its transaction committed.
type Result struct {
	// Outcome is one of the domain.Outcome* constants, or "applied" / "stale"
	// for registry records.
	Outcome string
	// Error sent back to the script router instead of delivering, if any.
	Error *contract.Error
	// Latency is the time from the deliver event entering the stream to the
	// SEExecute being committed (delivered scripts only).
	Latency time.Duration
}

// Registry record outcomes.
const (
	OutcomeApplied = "applied"
	OutcomeStale   = "stale"
)

// Waiting returns how many deliveries wait for the rate limiter or the bearer
// latency right now.
func (a *App) Waiting() int64 { return a.waiting.Load() }

// Settings returns the delivery settings in force.
func (a *App) Settings() (domain.Settings, error) {
	var rec *events.MNORecord
	err := a.store.View(func(tx ReadTx) error {
		st, ok, err := tx.MNO()
		if ok {
			rec = &st.Record
		}
		return err
	})
	return domain.EffectiveSettings(a.cfg.MNOID, rec, a.cfg.Overrides), err
}

// Deliver models the OTA bearer for one script: it waits for the rate limiter
// and then the bearer latency (a real delay of the modelled network), and
// hands the script to the SE. A script whose validity ended before delivery,
// or that is larger than the bearer carries, or whose event failed its schema
// (stepErr), is answered to the script router with an SEExecuted error
// instead, so no script hangs. A deliver event handled before is ignored
// without waiting. ctx cancellation ends the waits with ctx's error and
// nothing committed (the event is redelivered).
func (a *App) Deliver(ctx context.Context, msg Message, req events.MNODeliver, enqueuedAt time.Time, stepErr error) (Result, error) {
	var seen bool
	err := a.store.View(func(tx ReadTx) error {
		var err error
		_, seen, err = tx.Delivery(msg.EventID)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	if seen {
		return Result{Outcome: domain.OutcomeDuplicate}, nil
	}
	settings, err := a.Settings()
	if err != nil {
		return Result{}, err
	}
	outcome, answer := "", (*contract.Error)(nil)
	switch {
	case stepErr != nil:
		outcome, answer = domain.OutcomeMalformed, contract.Errorf(contract.CodeInternalError,
			"the script reached MNO adapter %s malformed and was not delivered; contact the central TSM operator", a.cfg.MNOID)
	case domain.Expired(a.cfg.MNOID, req.ValidUntil, a.cfg.Now()) != nil:
		outcome, answer = domain.OutcomeExpired, domain.Expired(a.cfg.MNOID, req.ValidUntil, a.cfg.Now())
	case settings.TooLarge(len(req.Commands)) != nil:
		outcome, answer = domain.OutcomeTooLarge, settings.TooLarge(len(req.Commands))
	default:
		if err := a.waitForBearer(ctx, settings.Latency); err != nil {
			return Result{}, err
		}
		outcome = domain.OutcomeDelivered
		if exp := domain.Expired(a.cfg.MNOID, req.ValidUntil, a.cfg.Now()); exp != nil {
			outcome, answer = domain.OutcomeExpired, exp
		}
	}
	res := Result{Outcome: outcome, Error: answer}
	err = a.store.Update(func(tx Tx) error {
		res.Outcome = outcome
		first, err := tx.MarkProcessed(msg.Inbox, msg.EventID)
		if err != nil || !first {
			res.Outcome = domain.OutcomeDuplicate
			return err
		}
		err = tx.PutDelivery(domain.Delivery{EventID: msg.EventID, ScriptID: req.ScriptID, ConversationID: req.ConversationID,
			SEID: req.SEID, Outcome: outcome, At: a.cfg.Now().UTC()})
		if err != nil {
			return err
		}
		if answer != nil {
			return tx.Outbox().Executed(msg.CorrelationID, events.SEExecuted{Request: req.Request,
				ConversationID: req.ConversationID, ScriptID: req.ScriptID, SEID: req.SEID, Responses: []string{}, Error: answer})
		}
		return tx.Outbox().Execute(msg.CorrelationID, events.SEExecute{Request: req.Request, ConversationID: req.ConversationID,
			ScriptID: req.ScriptID, SEID: req.SEID, MNO: a.cfg.MNOID, Commands: req.Commands, ContinueOnError: req.ContinueOnError})
	})
	if err != nil {
		return Result{}, err
	}
	if res.Outcome == domain.OutcomeDelivered && !enqueuedAt.IsZero() {
		res.Latency = a.cfg.Now().Sub(enqueuedAt)
	}
	return res, nil
}

// waitForBearer takes a token from the rate limiter, then waits the bearer
// latency. Both waits end early, with ctx's error, when ctx ends.
func (a *App) waitForBearer(ctx context.Context, latency time.Duration) error {
	a.waiting.Add(1)
	defer a.waiting.Add(-1)
	if err := a.limiter.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("rate limiter: %w", err)
	}
	if latency <= 0 {
		return nil
	}
	t := time.NewTimer(latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrOtherMNO is returned for a registry record of another MNO (a wiring
// error: the consumer filters on this MNO's subject).
var ErrOtherMNO = errors.New("record of another MNO")

// ApplyMNORecord updates the projection of the MNO's registry record. A record
// older (by registry stream sequence) than the one stored is ignored.
func (a *App) ApplyMNORecord(_ context.Context, msg Message, streamSeq uint64, rec events.MNORecord) (Result, error) {
	if rec.MNOID != a.cfg.MNOID {
		return Result{}, fmt.Errorf("%w: got %q, this adapter serves %q", ErrOtherMNO, rec.MNOID, a.cfg.MNOID)
	}
	var res Result
	err := a.store.Update(func(tx Tx) error {
		res = Result{}
		first, err := tx.MarkProcessed(msg.Inbox, msg.EventID)
		if err != nil || !first {
			res.Outcome = domain.OutcomeDuplicate
			return err
		}
		cur, ok, err := tx.MNO()
		if err != nil {
			return err
		}
		if ok && streamSeq != 0 && streamSeq <= cur.StreamSeq {
			res.Outcome = OutcomeStale
			return nil
		}
		res.Outcome = OutcomeApplied
		return tx.PutMNO(MNOState{Record: rec, StreamSeq: streamSeq, ReceivedAt: a.cfg.Now().UTC()})
	})
	return res, err
}
