package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// outboxKeys counts the entries of the outbox bucket, published or not.
func outboxKeys(t *testing.T, s *bus.Store) int {
	t.Helper()
	n := 0
	err := s.DB().View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("bus.outbox")).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Published entries are no longer counted as waiting, are deleted by a later
// commit (the next group commit, or the relay's own when the store is idle),
// and a copy of the file taken before that deletion - the state a crash
// leaves - re-publishes them with the same Nats-Msg-Id only: no loss, no
// duplicate in the stream.
func TestOutboxPublishedEntriesDeletedLaterAndRepublishedSafely(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "s.db"))
	defer s.Close()
	emit := func(from, to int) {
		t.Helper()
		err := s.Update(func(tx *bus.Tx) error {
			for i := from; i < to; i++ {
				if err := tx.Emit(topology.SEExecute("SE01"), testEvent(t, fmt.Sprintf("ev-%03d", i), map[string]int{"i": i}).Event); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	emit(0, 30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); s.RunRelay(ctx, js, nil) }()
	stepsCount := func() uint64 {
		str, err := js.Stream(context.Background(), topology.StreamSteps.Name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := str.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	bustest.Eventually(t, 10*time.Second, "30 events published", func() bool { return stepsCount() == 30 })
	if n := s.OutboxLen(); n != 0 {
		t.Fatalf("OutboxLen %d after publishing everything, want 0", n)
	}
	// The state a crash right after publishing leaves behind (the entries may
	// or may not have been deleted yet; either way nothing may be lost).
	crashCopy := filepath.Join(dir, "crash.db")
	if err := s.DB().View(func(tx *bolt.Tx) error { return tx.CopyFile(crashCopy, 0o600) }); err != nil {
		t.Fatal(err)
	}
	emit(30, 40)
	bustest.Eventually(t, 10*time.Second, "40 events published", func() bool { return stepsCount() == 40 })
	bustest.Eventually(t, 10*time.Second, "published entries deleted", func() bool { return outboxKeys(t, s) == 0 })
	cancel()
	<-relayDone

	c := openStore(t, crashCopy)
	defer c.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go c.RunRelay(ctx2, js, nil)
	bustest.Eventually(t, 10*time.Second, "the copy's outbox re-published and deleted", func() bool {
		return c.OutboxLen() == 0 && outboxKeys(t, c) == 0
	})
	if n := stepsCount(); n != 40 {
		t.Fatalf("stream holds %d messages after the re-publish, want 40 (same Nats-Msg-Id)", n)
	}
}

// OutboxLen counts only what is unpublished: with no relay, every entry.
func TestOutboxLenWithoutRelay(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer s.Close()
	for i := 0; i < 3; i++ {
		err := s.Update(func(tx *bus.Tx) error {
			return tx.Emit(topology.SEExecute("SE01"), testEvent(t, fmt.Sprintf("e%d", i), nil).Event)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.OutboxLen(); n != 3 {
		t.Fatalf("OutboxLen %d, want 3", n)
	}
}

// Internal events can be left unchecked; SP requests never are.
func TestSchemasCheckInternalSwitch(t *testing.T) {
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	badInternal, err := bus.NewEvent("i-1", "urn:tsm:svc:test", "tsmhub.se.execute.v1", "", map[string]string{"nope": "x"})
	if err != nil {
		t.Fatal(err)
	}
	badRequest, err := bus.NewEvent("r-1", "urn:tsm:sp:bank-a", "tsm.get-se-id.request", "", map[string]string{"msi": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if schemas.CheckEvent(badInternal, log) == nil || schemas.CheckEvent(badRequest, log) == nil {
		t.Fatal("invalid events pass by default")
	}
	schemas.SetCheckInternal(false)
	if err := schemas.CheckEvent(badInternal, log); err != nil {
		t.Errorf("internal event checked with internal checks off: %v", err)
	}
	if schemas.CheckEvent(badRequest, log) == nil {
		t.Error("SP request not checked with internal checks off")
	}
	if schemas.Validate("tsmhub.se.execute.v1", badInternal.Data()) == nil {
		t.Error("Validate skipped an internal type: it must always check")
	}
	schemas.SetCheckInternal(true)
	if schemas.CheckEvent(badInternal, log) == nil {
		t.Error("internal checks not back on")
	}
}
