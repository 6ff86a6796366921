// Package app holds the MNO adapter's use cases: deliver a script over the
// MNO's OTA bearer (rate limit, bearer latency, validity, size) and follow the
// MNO's registry record. Every use case commits its inbox record, its state and
// its events in one transaction of a Transactor; it knows nothing of NATS,
// CloudEvents or bbolt.
package app

import (
	"time"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
)

// Message is what a use case needs to know about the event that triggered it.
type Message struct {
	// Inbox names the consumer whose inbox records EventID (idempotency).
	Inbox string
	// EventID is the ce-id of the incoming event.
	EventID string
	// CorrelationID is copied to every event emitted for it.
	CorrelationID string
}

// Transactor runs transactions on the adapter's store. Update's fn may run
// more than once (group commit retries): no effects outside Tx.
type Transactor interface {
	Update(fn func(Tx) error) error
	View(fn func(ReadTx) error) error
}

// MNOState is the stored projection of the MNO's registry record.
type MNOState struct {
	Record events.MNORecord `json:"record"`
	// StreamSeq is the registry stream sequence of the record, so an older
	// record redelivered late never overwrites a newer one.
	StreamSeq  uint64    `json:"streamSeq"`
	ReceivedAt time.Time `json:"receivedAt"`
}

// ReadTx reads the adapter's state.
type ReadTx interface {
	// MNO returns the projected registry record; ok is false before the first one.
	MNO() (state MNOState, ok bool, err error)
	// Delivery returns the bookkeeping of a handled deliver event.
	Delivery(eventID string) (d domain.Delivery, ok bool, err error)
}

// Tx is one write transaction: inbox, state and outbox.
type Tx interface {
	ReadTx
	// MarkProcessed records the event id in the inbox; false means it was
	// processed before and the use case must do nothing.
	MarkProcessed(inbox, eventID string) (bool, error)
	PutMNO(state MNOState) error
	PutDelivery(d domain.Delivery) error
	Outbox() Outbox
}

// Outbox emits events with the transaction.
type Outbox interface {
	// Execute hands the script to the SE.
	Execute(correlationID string, e events.SEExecute) error
	// Executed answers the script router directly when the script never
	// reaches the SE (expired, too large, malformed).
	Executed(correlationID string, e events.SEExecuted) error
}
