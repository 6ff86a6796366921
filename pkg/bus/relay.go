package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// relayBatch bounds how many outbox entries are in flight at once.
const relayBatch = 512

// Published outbox entries are deleted by the next group commit of the
// service's own transactions (commitLoop), so that a hop costs one commit,
// not two. When no commit comes (an idle service), the relay commits their
// deletion itself once the oldest has waited publishedIdle, or at once when
// maxPublished wait.
const (
	publishedIdle = 200 * time.Millisecond
	maxPublished  = 4096
)

// RunRelay publishes outbox entries in commit order until ctx ends. An entry
// is deleted only after JetStream acknowledged it, in a later commit (see
// above); until then the relay skips it by position. A crash in between
// re-publishes it with the same Nats-Msg-Id, which JetStream (within its
// duplicate window) and the consumers' inboxes (beyond it) absorb: entries
// are never lost, and published twice only with the same id.
func (s *Store) RunRelay(ctx context.Context, js jetstream.JetStream, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	// A clean stop leaves nothing to re-publish at the next start.
	defer s.flushPublished()
	retry := time.Duration(0)
	for {
		n, err := s.relayOnce(ctx, js, log)
		if ctx.Err() != nil {
			return
		}
		wait := time.Second // periodic sweep: entries left by a crash before the first wake
		if age, pending := s.publishedAge(); pending >= maxPublished || (pending > 0 && age >= publishedIdle) {
			s.flushPublished()
		} else if pending > 0 {
			wait = publishedIdle - age
		}
		switch {
		case err != nil:
			if retry == 0 {
				retry = 100 * time.Millisecond
			} else if retry < 5*time.Second {
				retry *= 2
			}
			log.Warn("outbox relay: publish failed, will retry", "error", err, "retryIn", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			continue
		case n == relayBatch:
			retry = 0
			continue // more waiting
		}
		retry = 0
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

type relayItem struct {
	key []byte
	msg *nats.Msg
}

// relayPosition returns the key of the last entry JetStream acknowledged
// (nil: start from the first entry).
func (s *Store) relayPosition() []byte {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.relayAfter
}

// unpublished positions c on the first outbox entry after the relay's
// position.
func unpublished(c *bolt.Cursor, after []byte) (k, v []byte) {
	if after == nil {
		return c.First()
	}
	k, v = c.Seek(after)
	if k != nil && bytes.Equal(k, after) {
		k, v = c.Next()
	}
	return k, v
}

// publishedAge reports how long the oldest published entry has waited for
// deletion, and how many wait.
func (s *Store) publishedAge() (time.Duration, int) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if len(s.published) == 0 {
		return 0, 0
	}
	return time.Since(s.publishedAt), len(s.published)
}

// flushPublished commits the deletion of published entries now (the commit
// takes them, see commitLoop). A failure leaves them for the next commit.
func (s *Store) flushPublished() {
	if _, n := s.publishedAge(); n == 0 {
		return
	}
	_ = s.Update(func(*Tx) error { return nil })
}

func (s *Store) relayOnce(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (int, error) {
	// Rounds are exclusive: the position is advanced by one round at a time.
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	after := s.relayPosition()
	var items []relayItem
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := unpublished(c, after); k != nil && len(items) < relayBatch; k, v = c.Next() {
			var e outboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				// A corrupt entry cannot be published; keep it for an operator
				// rather than dropping it, but do not block the others.
				log.Error("outbox relay: corrupt outbox entry kept unpublished", "key", fmt.Sprintf("%x", k), "error", err)
				continue
			}
			m := nats.NewMsg(e.Subject)
			m.Header = e.Header
			m.Data = e.Data
			items = append(items, relayItem{key: append([]byte(nil), k...), msg: m})
		}
		return nil
	})
	if err != nil || len(items) == 0 {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, len(items))
	var pubErr error
	for i, it := range items {
		f, err := js.PublishMsgAsync(it.msg, jetstream.WithMsgID(it.msg.Header.Get(HeaderMsgID)))
		if err != nil {
			pubErr = err
			items = items[:i]
			break
		}
		futures[i] = f
	}
	// Keep the acknowledged prefix only: moving past a failure could let a
	// later event overtake an earlier one for the same SE.
	acked := 0
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
wait:
	for i := range items {
		select {
		case <-futures[i].Ok():
			acked++
		case err := <-futures[i].Err():
			pubErr = err
			break wait
		case <-timeout.C:
			pubErr = context.DeadlineExceeded
			break wait
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if acked > 0 {
		s.outMu.Lock()
		if len(s.published) == 0 {
			s.publishedAt = time.Now()
		}
		for _, it := range items[:acked] {
			s.published = append(s.published, it.key)
		}
		s.relayAfter = items[acked-1].key
		s.outMu.Unlock()
	}
	if pubErr != nil {
		return acked, pubErr
	}
	return acked, nil
}

// OutboxLen reports how many events wait to be published (for /readyz and
// metrics): the entries after the relay's position. Published entries whose
// deletion has not been committed yet are not counted.
func (s *Store) OutboxLen() int {
	after := s.relayPosition()
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, _ := unpublished(c, after); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n
}
