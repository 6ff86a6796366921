// Package adapters implements the script router's app ports on the service's
// bbolt file (through pkg/bus, so the inbox and the outbox share each
// transaction) and its outgoing CloudEvents.
//
// Buckets:
//
//	scripts.inflight  scriptId -> domain.Script (JSON). System of record: a
//	                  script accepted and routed, waiting for the SE's result;
//	                  deleted in the transaction that emits ScriptCompleted.
//	                  A script the router secures itself carries its session
//	                  (phase, SD, key version, the public INITIALIZE UPDATE
//	                  data, sealed temporary keys; no session key), so a
//	                  restart between the two round trips resumes it.
//	scripts.summary   scriptId -> domain.Summary (JSON). System of record for
//	                  GET /v1/scripts/{id} after completion: state and counts,
//	                  no APDU data; pruned after the configured retention.
//	registry.*        projection of the registry stream TSM_REG (what each SP
//	                  owns), rebuildable by replaying it; see registry.go.
//	conversations.cardstate  conversationId -> the router's view of the card
//	                  (selection per logical channel) between the scripts of
//	                  a conversation; pruned with the summaries.
//	sd-keys, custody  temporary keys of SP SDs (sealed) and key custody per
//	                  SD; see custody.go.
package adapters

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/services/scriptrouter/app"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// Bucket names of the script router.
const (
	BucketInFlight = "scripts.inflight"
	BucketSummary  = "scripts.summary"
)

// Buckets lists the buckets to create at start-up.
var Buckets = []string{BucketInFlight, BucketSummary, BucketRegSPs, BucketRegServices, BucketRegInstances,
	BucketRegSEs, BucketCardStates, BucketSDKeys, BucketCustody}

// Store implements app.Transactor on a bus.Store.
type Store struct {
	bus    *bus.Store
	outbox OutboxConfig
}

// NewStore returns the transactor; events are emitted as described by cfg.
func NewStore(s *bus.Store, cfg OutboxConfig) *Store { return &Store{bus: s, outbox: cfg} }

// Update implements app.Transactor.
func (s *Store) Update(fn func(app.Tx) error) error {
	return s.bus.Update(func(tx *bus.Tx) error {
		return fn(&txn{tx: tx, scripts: scripts{tx: tx.Tx}, outbox: outbox{tx: tx, cfg: s.outbox}})
	})
}

// View implements app.Transactor.
func (s *Store) View(fn func(app.Scripts) error) error {
	return s.bus.DB().View(func(tx *bolt.Tx) error { return fn(scripts{tx: tx}) })
}

// InFlightCount returns the number of scripts in flight (a metric).
func (s *Store) InFlightCount() int {
	n := 0
	_ = s.bus.DB().View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(BucketInFlight)).Stats().KeyN
		return nil
	})
	return n
}

// PruneCardStates deletes the card states of conversations whose last script
// was routed before cutoff and returns how many it deleted.
func (s *Store) PruneCardStates(cutoff time.Time) (int, error) {
	return s.bus.DeleteWhere(BucketCardStates, func(_, v []byte) bool {
		var st domain.CardState
		return json.Unmarshal(v, &st) != nil || st.UpdatedAt.Before(cutoff)
	})
}

// PruneSummaries deletes the summaries of scripts completed before cutoff and
// returns how many it deleted.
func (s *Store) PruneSummaries(cutoff time.Time) (int, error) {
	return s.bus.DeleteWhere(BucketSummary, func(_, v []byte) bool {
		var sum domain.Summary
		return json.Unmarshal(v, &sum) != nil || sum.CompletedAt == nil || sum.CompletedAt.Before(cutoff)
	})
}

type txn struct {
	tx      *bus.Tx
	scripts scripts
	outbox  outbox
}

func (t *txn) MarkProcessed(inbox, eventID string) (bool, error) {
	return t.tx.MarkProcessed(inbox, eventID)
}
func (t *txn) Scripts() app.Scripts   { return t.scripts }
func (t *txn) Outbox() app.Outbox     { return t.outbox }
func (t *txn) Registry() app.Registry { return registry{tx: t.tx.Tx} }
func (t *txn) CardStates() app.CardStates {
	return cardStates{tx: t.tx.Tx}
}
func (t *txn) Custody() app.Custody { return custody{tx: t.tx.Tx} }

// scripts is the repository of both buckets inside one bbolt transaction.
type scripts struct{ tx *bolt.Tx }

func (s scripts) InFlight(scriptID string) (domain.Script, error) {
	var script domain.Script
	return script, s.get(BucketInFlight, scriptID, &script)
}

func (s scripts) PutInFlight(script domain.Script) error {
	return s.put(BucketInFlight, script.ScriptID, script)
}

func (s scripts) DeleteInFlight(scriptID string) error {
	return s.tx.Bucket([]byte(BucketInFlight)).Delete([]byte(scriptID))
}

func (s scripts) Summary(scriptID string) (domain.Summary, error) {
	var sum domain.Summary
	return sum, s.get(BucketSummary, scriptID, &sum)
}

func (s scripts) PutSummary(sum domain.Summary) error {
	return s.put(BucketSummary, sum.ScriptID, sum)
}

func (s scripts) get(bucket, key string, v any) error {
	if key == "" {
		return app.ErrNotFound
	}
	raw := s.tx.Bucket([]byte(bucket)).Get([]byte(key))
	if raw == nil {
		return app.ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %s: %w", bucket, key, err)
	}
	return nil
}

func (s scripts) put(bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.tx.Bucket([]byte(bucket)).Put([]byte(key), raw)
}
