// Package adapters implements the MNO adapter's app ports on the service's
// bbolt file (through pkg/bus, so the inbox and the outbox share each
// transaction) and its outgoing CloudEvents.
//
// Buckets:
//
//	mno.record       "record" -> app.MNOState (JSON). Projection of the MNO's
//	                 record on the registry stream (tsm.reg.mno.<mnoId>, latest
//	                 per subject): rebuilt by replaying that stream, e.g. after
//	                 deleting the file and the mnoadapter-<mnoId>-registry
//	                 consumer.
//	mno.deliveries   deliver ce-id -> domain.Delivery (JSON). System of record
//	                 of the adapter's delivery bookkeeping: which deliver events
//	                 were handled and how, so a redelivered one is recognised
//	                 before it waits on the bearer again. Pruned after the
//	                 configured retention (the steps stream keeps 7 days).
package adapters

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/services/mnoadapter/app"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
)

// Bucket names of the MNO adapter.
const (
	BucketMNO        = "mno.record"
	BucketDeliveries = "mno.deliveries"
)

// Buckets lists the buckets to create at start-up.
var Buckets = []string{BucketMNO, BucketDeliveries}

var recordKey = []byte("record")

// Store implements app.Transactor on a bus.Store.
type Store struct {
	bus    *bus.Store
	outbox OutboxConfig
}

// NewStore returns the transactor; events are stamped as cfg says.
func NewStore(s *bus.Store, cfg OutboxConfig) *Store { return &Store{bus: s, outbox: cfg} }

// Update implements app.Transactor.
func (s *Store) Update(fn func(app.Tx) error) error {
	return s.bus.Update(func(tx *bus.Tx) error {
		return fn(&txn{reader: reader{tx: tx.Tx}, tx: tx, outbox: outbox{tx: tx, cfg: s.outbox}})
	})
}

// View implements app.Transactor.
func (s *Store) View(fn func(app.ReadTx) error) error {
	return s.bus.DB().View(func(tx *bolt.Tx) error { return fn(reader{tx: tx}) })
}

// PruneDeliveries deletes the bookkeeping of deliveries handled before cutoff.
func (s *Store) PruneDeliveries(cutoff time.Time) (int, error) {
	return s.bus.DeleteWhere(BucketDeliveries, func(_, v []byte) bool {
		var d domain.Delivery
		return json.Unmarshal(v, &d) != nil || d.At.Before(cutoff)
	})
}

type reader struct{ tx *bolt.Tx }

func (r reader) MNO() (app.MNOState, bool, error) {
	var st app.MNOState
	raw := r.tx.Bucket([]byte(BucketMNO)).Get(recordKey)
	if raw == nil {
		return st, false, nil
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, false, fmt.Errorf("%s: %w", BucketMNO, err)
	}
	return st, true, nil
}

func (r reader) Delivery(eventID string) (domain.Delivery, bool, error) {
	var d domain.Delivery
	if eventID == "" {
		return d, false, nil
	}
	raw := r.tx.Bucket([]byte(BucketDeliveries)).Get([]byte(eventID))
	if raw == nil {
		return d, false, nil
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, false, fmt.Errorf("%s %s: %w", BucketDeliveries, eventID, err)
	}
	return d, true, nil
}

type txn struct {
	reader
	tx     *bus.Tx
	outbox outbox
}

func (t *txn) MarkProcessed(inbox, eventID string) (bool, error) {
	return t.tx.MarkProcessed(inbox, eventID)
}
func (t *txn) Outbox() app.Outbox { return t.outbox }

func (t *txn) PutMNO(st app.MNOState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return t.tx.Bucket([]byte(BucketMNO)).Put(recordKey, raw)
}

func (t *txn) PutDelivery(d domain.Delivery) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return t.tx.Bucket([]byte(BucketDeliveries)).Put([]byte(d.EventID), raw)
}
