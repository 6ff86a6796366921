package bus

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// relayBatch bounds how many outbox entries are in flight at once.
const relayBatch = 512

// RunRelay publishes outbox entries in commit order until ctx ends. Each entry
// is deleted only after JetStream acknowledged it; a crash in between
// re-publishes it with the same Nats-Msg-Id, which JetStream (within its
// duplicate window) and the consumers' inboxes (beyond it) absorb.
func (s *Store) RunRelay(ctx context.Context, js jetstream.JetStream, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	retry := time.Duration(0)
	for {
		n, err := s.relayOnce(ctx, js)
		if ctx.Err() != nil {
			return
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
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(time.Second):
			// Periodic sweep: entries left by a crash before the first wake.
		}
	}
}

type relayItem struct {
	key []byte
	msg *nats.Msg
}

func (s *Store) relayOnce(ctx context.Context, js jetstream.JetStream) (int, error) {
	var items []relayItem
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(items) < relayBatch; k, v = c.Next() {
			var e outboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				// A corrupt entry cannot be published; keep it for an operator
				// rather than dropping it, but do not block the others.
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
	// Keep the acknowledged prefix only: deleting past a failure could let a
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
		keys := items[:acked]
		err := s.Update(func(tx *Tx) error {
			b := tx.Bucket(bucketOutbox)
			for _, it := range keys {
				if err := b.Delete(it.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return acked, err
		}
	}
	if pubErr != nil {
		return acked, pubErr
	}
	return acked, nil
}

// OutboxLen reports how many events wait to be published (for /readyz and metrics).
func (s *Store) OutboxLen() int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	})
	return n
}
