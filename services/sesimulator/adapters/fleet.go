// Package adapters implements the se-simulator's ports: the fleet storage in
// the service's bbolt file (inside the bus.Store transactions that also hold
// the inbox and the outbox), the sealing of card states at rest, and the
// Prometheus observer.
package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// Buckets of the se-simulator's bbolt file, all systems of record (card
// state cannot be rebuilt from the streams: the card draws random
// challenges, and the registry stream keeps only the latest record).
const (
	// BucketCards maps an SE id to its card's sealed state (registry, keys,
	// channels, secure channel sessions).
	BucketCards = "cards"
	// BucketCardSessions maps an SE id to the conversation id the card's
	// current OTA session belongs to.
	BucketCardSessions = "card-sessions"
	// BucketCounters maps an SE id to its execution counters (JSON).
	BucketCounters = "counters"
)

// Buckets lists the service's own buckets, created at start.
var Buckets = []string{BucketCards, BucketCardSessions, BucketCounters}

// Source is the ce-source of the events the se-simulator emits.
const Source = topology.ServiceSourcePrefix + "sesimulator"

// FleetStore keeps the fleet in a bus.Store.
type FleetStore struct {
	store  *bus.Store
	sealer *StateSealer
}

// NewFleetStore returns the fleet storage; the store must have been opened
// with Buckets.
func NewFleetStore(store *bus.Store, sealer *StateSealer) *FleetStore {
	return &FleetStore{store: store, sealer: sealer}
}

var _ app.Fleet = (*FleetStore)(nil)

// Read implements app.Fleet.
func (f *FleetStore) Read(fn func(app.FleetReader) error) error {
	return f.store.DB().View(func(tx *bolt.Tx) error { return fn(reader{tx}) })
}

// Write implements app.Fleet: a bus.Store transaction (group commit, outbox).
func (f *FleetStore) Write(fn func(app.FleetWriter) error) error {
	return f.store.Update(func(tx *bus.Tx) error { return fn(writer{reader: reader{tx.Tx}, tx: tx}) })
}

// EncodeCard implements app.Fleet: MarshalBinary, then sealed under the KEK
// and bound to the SE id.
func (f *FleetStore) EncodeCard(seID string, c *card.Card) (app.StoredCard, error) {
	plain, err := c.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return f.sealer.Seal(seID, plain)
}

// DecodeCard implements app.Fleet.
func (f *FleetStore) DecodeCard(seID string, s app.StoredCard) (*card.Card, error) {
	plain, err := f.sealer.Open(seID, s)
	if err != nil {
		return nil, err
	}
	return card.Restore(plain)
}

type reader struct{ tx *bolt.Tx }

func (r reader) bucket(name string) (*bolt.Bucket, error) {
	b := r.tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("bucket %s missing (store not opened with adapters.Buckets)", name)
	}
	return b, nil
}

func (r reader) Card(seID string) (app.StoredCard, error) {
	b, err := r.bucket(BucketCards)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(seID))
	if v == nil {
		return nil, nil
	}
	// bbolt values live only as long as the transaction.
	return bytes.Clone(v), nil
}

func (r reader) HasCard(seID string) (bool, error) {
	b, err := r.bucket(BucketCards)
	if err != nil {
		return false, err
	}
	return b.Get([]byte(seID)) != nil, nil
}

func (r reader) SessionConversation(seID string) (string, error) {
	b, err := r.bucket(BucketCardSessions)
	if err != nil {
		return "", err
	}
	return string(b.Get([]byte(seID))), nil
}

func (r reader) Counters(seID string) (domain.Counters, error) {
	var c domain.Counters
	b, err := r.bucket(BucketCounters)
	if err != nil {
		return c, err
	}
	v := b.Get([]byte(seID))
	if v == nil {
		return c, nil
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, fmt.Errorf("counters of SE %s: %w", seID, err)
	}
	return c, nil
}

func (r reader) CardCount() (int, error) {
	b, err := r.bucket(BucketCards)
	if err != nil {
		return 0, err
	}
	return b.Stats().KeyN, nil
}

func (r reader) CardIDs(after string, limit int) ([]string, error) {
	b, err := r.bucket(BucketCards)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, limit)
	c := b.Cursor()
	k, _ := c.First()
	if after != "" {
		k, _ = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, _ = c.Next()
		}
	}
	for ; k != nil && len(ids) < limit; k, _ = c.Next() {
		ids = append(ids, string(k))
	}
	return ids, nil
}

type writer struct {
	reader
	tx *bus.Tx
}

func (w writer) PutCard(seID string, s app.StoredCard) error {
	b, err := w.bucket(BucketCards)
	if err != nil {
		return err
	}
	return b.Put([]byte(seID), s)
}

func (w writer) PutSessionConversation(seID, conversationID string) error {
	b, err := w.bucket(BucketCardSessions)
	if err != nil {
		return err
	}
	return b.Put([]byte(seID), []byte(conversationID))
}

func (w writer) PutCounters(seID string, c domain.Counters) error {
	b, err := w.bucket(BucketCounters)
	if err != nil {
		return err
	}
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Put([]byte(seID), v)
}

// inboxNames maps the use cases' inboxes to the consumers whose events they
// record (bus.Tx keeps one inbox per consumer name).
var inboxNames = map[app.Inbox]string{
	app.InboxEnrol:   topology.SESimulatorRegistry.Name,
	app.InboxExecute: topology.SESimulatorExecute.Name,
}

func (w writer) MarkProcessed(inbox app.Inbox, eventID string) (bool, error) {
	name, ok := inboxNames[inbox]
	if !ok {
		return false, fmt.Errorf("unknown inbox %d", inbox)
	}
	return w.tx.MarkProcessed(name, eventID)
}

// EmitExecuted queues the SEExecuted event on tsm.se.<seId>.executed with
// ce-subject = SE id and the SP request's correlation id.
func (w writer) EmitExecuted(result events.SEExecuted, correlationID string) error {
	ev, err := bus.NewEvent(bus.NewID(), Source, events.TypeSEExecuted, result.SEID, result)
	if err != nil {
		return err
	}
	if correlationID != "" {
		ev.SetExtension(bus.ExtCorrelationID, correlationID)
	}
	return w.tx.Emit(topology.SEExecuted(result.SEID), ev)
}
