package app

import (
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// StoredCard is a card's state as storage keeps it. It contains key values,
// so the storage adapter seals it (encrypts and authenticates it) and the
// bytes are opaque to the use cases.
type StoredCard []byte

// Inbox names an idempotency inbox: the event ids one consumer processed.
type Inbox int

// The inboxes of the se-simulator.
const (
	// InboxEnrol records the SE records that made a card.
	InboxEnrol Inbox = iota + 1
	// InboxExecute records the execute events whose script ran.
	InboxExecute
)

// Fleet is the storage of the simulated cards (the bbolt file in
// production). Card states, card sessions, counters, the inbox and the
// outbox live in one store so that one transaction commits them together.
type Fleet interface {
	// Read runs fn in a read-only transaction.
	Read(fn func(FleetReader) error) error
	// Write runs fn in a write transaction and returns once it is durable.
	// fn may run more than once (group commit), so it must have no effect
	// outside the transaction.
	Write(fn func(FleetWriter) error) error
	// EncodeCard marshals and seals a card's state. It runs outside
	// transactions so that CPU-bound work stays off the single committer.
	EncodeCard(seID string, c *card.Card) (StoredCard, error)
	// DecodeCard opens and restores a card state written by EncodeCard.
	DecodeCard(seID string, s StoredCard) (*card.Card, error)
}

// FleetReader reads the fleet inside a transaction.
type FleetReader interface {
	// Card returns the stored state of an SE's card, nil if it has none.
	Card(seID string) (StoredCard, error)
	// HasCard reports whether the SE has a card (without reading its state).
	HasCard(seID string) (bool, error)
	// SessionConversation returns the conversation id the card's current OTA
	// session belongs to ("" before the first script).
	SessionConversation(seID string) (string, error)
	// Counters returns the execution counters of an SE's card.
	Counters(seID string) (domain.Counters, error)
	// CardCount returns the number of cards.
	CardCount() (int, error)
	// CardIDs returns up to limit SE ids in order, starting after after.
	CardIDs(after string, limit int) ([]string, error)
}

// FleetWriter changes the fleet inside a transaction.
type FleetWriter interface {
	FleetReader
	// PutCard stores an SE's card state.
	PutCard(seID string, s StoredCard) error
	// PutSessionConversation records the conversation of the card's OTA session.
	PutSessionConversation(seID, conversationID string) error
	// PutCounters stores an SE's execution counters.
	PutCounters(seID string, c domain.Counters) error
	// MarkProcessed records an event id in an inbox; false means it was
	// already there and the caller must not apply the effect again.
	MarkProcessed(inbox Inbox, eventID string) (bool, error)
	// EmitExecuted queues the result of a script for publication once the
	// transaction commits (transactional outbox), correlated with the SP
	// request.
	EmitExecuted(result events.SEExecuted, correlationID string) error
}

// Observer receives what the use cases did, for metrics. Implementations
// must be cheap and must not block.
type Observer interface {
	// CardManufactured counts a new card.
	CardManufactured()
	// ScriptExecuted counts a committed script and its APDUs.
	ScriptExecuted(apdus int)
	// DebugAPDUExecuted counts an APDU sent through the debug endpoint.
	DebugAPDUExecuted()
	// ReaderAPDUExecuted counts an APDU sent by a card reader (vpcd).
	ReaderAPDUExecuted()
	// ReaderReset counts a power-off, power-on or reset from a card reader.
	ReaderReset()
	// CardCacheLookup counts a lookup of the decoded-card cache.
	CardCacheLookup(hit bool)
}

type noObserver struct{}

func (noObserver) CardManufactured()    {}
func (noObserver) ScriptExecuted(int)   {}
func (noObserver) DebugAPDUExecuted()   {}
func (noObserver) ReaderAPDUExecuted()  {}
func (noObserver) ReaderReset()         {}
func (noObserver) CardCacheLookup(bool) {}
