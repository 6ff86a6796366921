package bus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	bolt "go.etcd.io/bbolt"
)

// Buckets the bus layer owns in every service's bbolt file. Service buckets
// live beside them; the services document theirs.
var (
	// bucketOutbox holds events committed with a state change and not yet
	// acknowledged by JetStream (system of record until published).
	bucketOutbox = []byte("bus.outbox")
	// bucketInbox holds, per consumer, the ids of events already processed
	// (system of record for idempotency; pruned by age: RunInboxPruner).
	bucketInbox = []byte("bus.inbox")
	// bucketReplies holds, per SP request (spId/ce-id), the responses sent, so a
	// request re-sent with the same ce-id gets the original response again.
	bucketReplies = []byte("bus.replies")
)

// Store is a service's bbolt file plus the bus bookkeeping kept in it. Writes go
// through a group committer: transactions queued while a commit is in flight
// share the next commit (one fsync for many handlers) without adding latency
// when the service is idle.
type Store struct {
	db      *bolt.DB
	queue   chan *pendingTx
	wake    chan struct{} // outbox has new entries
	closeMu sync.Mutex
	closed  bool
	done    chan struct{}

	// relayMu makes relay rounds exclusive (a store may run more than one
	// relay; they then take turns instead of publishing the same entries).
	relayMu sync.Mutex
	// outMu guards the relay's position and the published entries awaiting
	// deletion, shared by the relay, the committer and OutboxLen.
	outMu sync.Mutex
	// relayAfter is the key of the last outbox entry JetStream acknowledged
	// (nil: none yet since open). Keys grow in commit order, so everything
	// after it is unpublished; entries up to it wait in published for deletion.
	relayAfter []byte
	// published are outbox keys JetStream acknowledged, deleted by the next
	// group commit (see commitLoop) rather than by a commit of their own.
	published [][]byte
	// publishedAt is when published last became non-empty.
	publishedAt time.Time
}

// StoreConfig configures OpenStore.
type StoreConfig struct {
	// Path of the bbolt file; its directory is created.
	Path string
	// Buckets are created at open (the service's own buckets).
	Buckets []string
	// OpenTimeout bounds the wait for the file lock another process holds
	// (default 5s; a partition taken over by another replica uses a short one).
	OpenTimeout time.Duration
}

// OpenStore opens (or creates) a service's bbolt file.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// The freelist is not written on commit (NoFreelistSync) but rebuilt by
	// scanning the file at open, and kept as a hash map rather than a sorted
	// array: a file with many free pages (the registry's after a large
	// import: every SE's outbox entry written and deleted) otherwise pays for
	// copying and writing the whole list on every commit, which made each
	// get-se-id at 1,000,000 SEs cost ~7 ms instead of ~1 ms (BENCHMARKS.md).
	// Durability is unchanged: the freelist is derived data, and a file
	// written either way opens either way.
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 5 * time.Second
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: cfg.OpenTimeout,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append([]string{string(bucketOutbox), string(bucketInbox), string(bucketReplies)}, cfg.Buckets...) {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("create buckets: %w", err)
	}
	s := &Store{db: db, queue: make(chan *pendingTx, 4096), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.commitLoop()
	return s, nil
}

// DB gives read access (View) to the underlying bbolt database. Writes must go
// through Update so that the outbox relay is woken.
func (s *Store) DB() *bolt.DB { return s.db }

// Close stops the committer and closes the file.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.closeMu.Unlock()
	<-s.done
	return s.db.Close()
}

// Tx is a write transaction with an outbox.
type Tx struct {
	*bolt.Tx
	emitted int
}

// ErrStoreClosed is returned by Update after Close.
var ErrStoreClosed = errors.New("store closed")

type pendingTx struct {
	fn   func(*Tx) error
	done chan error
}

// Update runs fn in a write transaction and returns once it is committed
// (durably, fsync included). fn may run more than once if another transaction
// of the same group fails, so it must have no effects outside the transaction.
func (s *Store) Update(fn func(*Tx) error) error {
	p := &pendingTx{fn: fn, done: make(chan error, 1)}
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return ErrStoreClosed
	}
	s.queue <- p
	s.closeMu.Unlock()
	return <-p.done
}

// commitLoop takes every queued transaction that is ready and commits them
// together. If one of them fails, the group is rolled back and each is re-run
// alone, so one failure never affects another handler's outcome.
func (s *Store) commitLoop() {
	defer close(s.done)
	for first := range s.queue {
		group := []*pendingTx{first}
	drain:
		for len(group) < 256 {
			select {
			case p, ok := <-s.queue:
				if !ok {
					break drain
				}
				group = append(group, p)
			default:
				break drain
			}
		}
		emitted := 0
		// Published outbox entries are deleted in this commit: no commit (and
		// no fsync) of their own. If the group fails they are put back for
		// the next one; until then the relay skips them by position.
		published := s.takePublished()
		errGroup := s.db.Update(func(btx *bolt.Tx) error {
			if err := deleteOutbox(btx, published); err != nil {
				return err
			}
			for _, p := range group {
				tx := &Tx{Tx: btx}
				if err := runTx(p.fn, tx); err != nil {
					return err
				}
				emitted += tx.emitted
			}
			return nil
		})
		if errGroup == nil {
			for _, p := range group {
				p.done <- nil
			}
		} else {
			s.returnPublished(published)
			emitted = 0
			for _, p := range group {
				var n int
				err := s.db.Update(func(btx *bolt.Tx) error {
					tx := &Tx{Tx: btx}
					err := runTx(p.fn, tx)
					n = tx.emitted
					return err
				})
				if err == nil {
					emitted += n
				}
				p.done <- err
			}
		}
		if emitted > 0 {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// takePublished hands the published outbox keys to a commit.
func (s *Store) takePublished() [][]byte {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	keys := s.published
	s.published = nil
	s.publishedAt = time.Time{}
	return keys
}

// returnPublished gives keys back after the commit that was to delete them
// failed.
func (s *Store) returnPublished(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if len(s.published) == 0 {
		s.publishedAt = time.Now()
	}
	s.published = append(keys, s.published...)
}

func deleteOutbox(btx *bolt.Tx, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	b := btx.Bucket(bucketOutbox)
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("delete published outbox entry: %w", err)
		}
	}
	return nil
}

// runTx calls fn and turns a panic into an error so a bad handler can never
// take the committer (and every other handler) down with it.
func runTx(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in transaction: %v", r)
		}
	}()
	return fn(tx)
}

// outboxEntry is the stored form of an event waiting to be published.
type outboxEntry struct {
	Subject string              `json:"subject"`
	Header  map[string][]string `json:"header"`
	Data    []byte              `json:"data"`
}

// Emit queues an event for publication once this transaction commits. The
// relay publishes outbox entries in commit order with Nats-Msg-Id = ce-id.
func (tx *Tx) Emit(subject string, ev event.Event) error {
	m, err := Encode(subject, ev)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketOutbox)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(outboxEntry{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil {
		return err
	}
	tx.emitted++
	return b.Put(u64key(seq), v)
}

// EmitReply emits a response to an SP request and remembers it under the
// request key, so that a re-sent request gets the same response again.
func (tx *Tx) EmitReply(requestKey, subject string, ev event.Event) error {
	if err := tx.Emit(subject, ev); err != nil {
		return err
	}
	return tx.appendReply(requestKey, subject, ev)
}

type storedReply struct {
	Subject string          `json:"subject"`
	Event   json.RawMessage `json:"event"`
}

func (tx *Tx) appendReply(requestKey, subject string, ev event.Event) error {
	b := tx.Bucket(bucketReplies)
	var list []storedReply
	if v := b.Get([]byte(requestKey)); v != nil {
		if err := json.Unmarshal(v, &list); err != nil {
			return fmt.Errorf("replies of %s: %w", requestKey, err)
		}
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	list = append(list, storedReply{Subject: subject, Event: raw})
	v, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return b.Put([]byte(requestKey), v)
}

// StoredReply is a response already sent for a request.
type StoredReply struct {
	Subject string
	Event   event.Event
}

// Replies returns the responses already sent for a request key (nil if none).
func (tx *Tx) Replies(requestKey string) ([]StoredReply, error) {
	return readReplies(tx.Tx, requestKey)
}

func readReplies(btx *bolt.Tx, requestKey string) ([]StoredReply, error) {
	v := btx.Bucket(bucketReplies).Get([]byte(requestKey))
	if v == nil {
		return nil, nil
	}
	var list []storedReply
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, fmt.Errorf("replies of %s: %w", requestKey, err)
	}
	out := make([]StoredReply, 0, len(list))
	for _, r := range list {
		var ev event.Event
		if err := json.Unmarshal(r.Event, &ev); err != nil {
			return nil, err
		}
		out = append(out, StoredReply{Subject: r.Subject, Event: ev})
	}
	return out, nil
}

// MarkProcessed records that consumer processed the event id; it returns false
// if it had already been recorded (the caller must then skip the effect).
// Call it in the same transaction as the state change.
func (tx *Tx) MarkProcessed(consumer, eventID string) (bool, error) {
	b, err := tx.Bucket(bucketInbox).CreateBucketIfNotExists([]byte(consumer))
	if err != nil {
		return false, err
	}
	k := []byte(eventID)
	if b.Get(k) != nil {
		return false, nil
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(time.Now().Unix()))
	return true, b.Put(k, ts[:])
}

func u64key(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// AcceptRequest records that an SP request (key spId/ce-id) is being handled.
// It reports whether the key had been seen before and the responses already
// sent for it: a re-sent request is then answered from these and never
// executed twice; seen without replies means the first one is still running.
//
// Read-only operations (get-se-id, get-se-data) are recorded and committed
// like the others before they are answered, fsync included. Their stored
// reply is what gives a re-sent ce-id the original answer even after the SE's
// MSI or data changed meanwhile, and the reply leaves through the outbox,
// which must be durable before the request is acked. bbolt can skip the fsync
// only for the whole file (NoSync), and then a power loss can corrupt the
// file instead of losing the last commit. The cost is shared instead: with SP
// requests ordered per SE or MSI rather than per SP (topology.RegistryRequests),
// the look-ups in flight share one group commit.
func (tx *Tx) AcceptRequest(requestKey string) (replies []StoredReply, seen bool, err error) {
	b := tx.Bucket(bucketReplies)
	if b.Get([]byte(requestKey)) == nil {
		return nil, false, b.Put([]byte(requestKey), []byte("[]"))
	}
	replies, err = readReplies(tx.Tx, requestKey)
	return replies, true, err
}

// Processed reports whether consumer already recorded eventID (read-only).
func (s *Store) Processed(consumer, eventID string) (bool, error) {
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketInbox).Bucket([]byte(consumer)); b != nil {
			found = b.Get([]byte(eventID)) != nil
		}
		return nil
	})
	return found, err
}

// DeleteWhere deletes, in one transaction, every entry of bucket for which
// match holds and returns how many it deleted.
func (s *Store) DeleteWhere(bucket string, match func(k, v []byte) bool) (int, error) {
	var n int
	err := s.Update(func(tx *Tx) error {
		n = 0
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("no bucket %s", bucket)
		}
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if match(k, v) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// PruneInbox deletes inbox records older than maxAge, in batches, so the
// inbox stays bounded. Redeliveries come within minutes (AckWait, restarts);
// a record older than the streams' retention can no longer be needed.
func (s *Store) PruneInbox(maxAge time.Duration) (int, error) {
	cutoff := uint64(time.Now().Add(-maxAge).Unix())
	total := 0
	for {
		n := 0
		err := s.Update(func(tx *Tx) error {
			n = 0
			root := tx.Bucket(bucketInbox)
			return root.ForEachBucket(func(name []byte) error {
				b := root.Bucket(name)
				c := b.Cursor()
				for k, v := c.First(); k != nil && n < 10000; k, v = c.Next() {
					if len(v) == 8 && binary.BigEndian.Uint64(v) < cutoff {
						if err := c.Delete(); err != nil {
							return err
						}
						n++
					}
				}
				return nil
			})
		})
		total += n
		if err != nil || n < 10000 {
			return total, err
		}
	}
}

// RunInboxPruner prunes the inbox every hour until ctx ends.
func (s *Store) RunInboxPruner(ctx context.Context, maxAge time.Duration, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.PruneInbox(maxAge); err != nil {
			log.Warn("inbox prune failed", "error", err)
		} else if n > 0 {
			log.Info("inbox pruned", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
