// Package app holds the script router's use cases: accept a requested script
// (validate, authorize, route it to the SE's MNO adapter or reject it at once)
// and complete an executed one (responses and failures back to the
// conversation). It runs every use case in one transaction of a Transactor,
// so the inbox record, the script state and the emitted events commit
// together; it knows nothing of NATS, CloudEvents or bbolt.
package app

import (
	"errors"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// Message is what a use case needs to know about the event that triggered it.
type Message struct {
	// Inbox names the consumer whose inbox records EventID (idempotency).
	Inbox string
	// EventID is the ce-id of the incoming event.
	EventID string
	// CorrelationID is copied to every event emitted for it (the SP request's ce-id).
	CorrelationID string
}

// Transactor runs fn in one write transaction: everything fn does through Tx
// commits together or not at all. fn may run more than once (group commit
// retries), so it must have no effect outside Tx.
type Transactor interface {
	Update(fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(fn func(Scripts) error) error
}

// Tx is one transaction: inbox, script state and outbox.
type Tx interface {
	// MarkProcessed records the event id in the inbox; false means it was
	// processed before and the use case must do nothing.
	MarkProcessed(inbox, eventID string) (bool, error)
	Scripts() Scripts
	Outbox() Outbox
}

// ErrNotFound is returned by Scripts for an unknown script id.
var ErrNotFound = errors.New("not found")

// Scripts stores scripts in flight and the summaries of completed ones.
type Scripts interface {
	// InFlight returns the script in flight, or ErrNotFound.
	InFlight(scriptID string) (domain.Script, error)
	// PutInFlight stores a script routed to its MNO adapter.
	PutInFlight(s domain.Script) error
	// DeleteInFlight removes a script that completed.
	DeleteInFlight(scriptID string) error
	// Summary returns the summary of a completed script, or ErrNotFound.
	Summary(scriptID string) (domain.Summary, error)
	// PutSummary stores the summary of a completed script.
	PutSummary(s domain.Summary) error
}

// Outbox emits events with the transaction.
type Outbox interface {
	// DeliverToMNO asks the MNO adapter of d's MNO to deliver the script.
	DeliverToMNO(mno, correlationID string, d events.MNODeliver) error
	// CompleteScript tells the conversation service how the script ended.
	CompleteScript(correlationID string, c events.ScriptCompleted) error
}
