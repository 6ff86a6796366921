// Package app holds the script router's use cases: accept a requested script
// (validate, authorize, route it to the SE's MNO adapter or reject it at once)
// and complete an executed one (responses and failures back to the
// conversation), and keep the projection of the registry that authorization
// reads (what each SP owns). It runs every use case in one transaction of a Transactor,
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
	// ListCustody returns the custody records of the SDs of an SE, by AID.
	ListCustody(seID string) ([]domain.Custody, error)
}

// Tx is one transaction: inbox, script state and outbox.
type Tx interface {
	// MarkProcessed records the event id in the inbox; false means it was
	// processed before and the use case must do nothing.
	MarkProcessed(inbox, eventID string) (bool, error)
	Scripts() Scripts
	Outbox() Outbox
	// Registry is the projection of the registry's SP, service and SE records.
	Registry() Registry
	// CardStates holds the router's view of the card per conversation.
	CardStates() CardStates
	// Custody holds the temporary keys of SP SDs and their custody records.
	Custody() Custody
}

// Custody stores the temporary keys the router holds (bucket sd-keys: system
// of record, values sealed) and the key custody of every SP SD it created or
// saw rotated (bucket custody: system of record, no key values).
type Custody interface {
	// Held returns the held keys of an SD on an SE, or ErrNotFound.
	Held(seID, sdAID string) (domain.HeldKeys, error)
	// PutHeld stores held keys.
	PutHeld(k domain.HeldKeys) error
	// DeleteHeld erases the held keys of an SD (no error if there are none).
	DeleteHeld(seID, sdAID string) error
	// Get returns the custody record of an SD on an SE, or ErrNotFound.
	Get(seID, sdAID string) (domain.Custody, error)
	// Put stores a custody record.
	Put(c domain.Custody) error
}

// Sealer seals key material at rest, bound to an SE and an SD (the
// additional data): AES-256-GCM under the router's KEK.
type Sealer interface {
	Seal(plain []byte, seID, sdAID string) ([]byte, error)
	Open(sealed []byte, seID, sdAID string) ([]byte, error)
}

// Registry is the router's projection of the registry stream (TSM_REG): what
// each SP owns. It is rebuildable by replaying the stream. Every Put takes the
// stream sequence of the record and ignores a record older than the one it
// holds for the same subject (the consumer processes in any order).
type Registry interface {
	// PutSP stores an SP's record (its security domain AID).
	PutSP(seq uint64, rec events.SPRecord) error
	// PutService stores a catalog entry (the SP and its instance AID).
	PutService(seq uint64, rec events.ServiceRecord) error
	// PutSE stores the SP SDs pre-issued on an SE.
	PutSE(seq uint64, rec events.SERecord) error
	// TransportKey returns the SP's key-transport key as the registry sent
	// it, wrapped under the key-exchange key ("" if it has none); found is
	// false when the registry has no record of the SP.
	TransportKey(spID string) (wrapped string, found bool, err error)
	// Scope returns what spID owns on seID; found is false when the
	// registry has no record of the SP.
	Scope(spID, seID string) (scope domain.SPScope, found bool, err error)
}

// CardStates stores the card state of each conversation between its scripts.
type CardStates interface {
	// Get returns the state, or a reset card for a conversation it does not know.
	Get(conversationID string) (domain.CardState, error)
	// Put stores the state after a routed script.
	Put(conversationID string, s domain.CardState) error
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
