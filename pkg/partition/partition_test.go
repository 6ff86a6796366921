package partition

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bustest"
)

func TestOfAndIDs(t *testing.T) {
	for _, n := range []int{1, 2, 4, 7} {
		for k := range n {
			id := NewID("cv", k, n)
			if got := Of(id, n); got != k {
				t.Fatalf("Of(%s, %d) = %d, want %d", id, n, got, k)
			}
		}
	}
	if id := NewID("cv", 0, 1); len(id) < 4 || id[:3] != "cv-" || id[3] == 'p' && id[4] >= '0' && id[4] <= '9' {
		t.Fatalf("NewID with one partition = %s, want the unpartitioned cv-<nuid>", id)
	}
	// Untagged keys hash; a tag beyond n hashes too; the same key always maps alike.
	for _, key := range []string{"0100000000000005", "cv-ABC", "cv-p9-X", "cv-p-1", "pr-p01-X"} {
		a, b := Of(key, 4), Of(key, 4)
		if a != b || a < 0 || a >= 4 {
			t.Fatalf("Of(%q) = %d, %d", key, a, b)
		}
	}
	if _, ok := Tagged("pr-p01-X"); ok {
		t.Fatal("a tag with a leading zero is not one NewID makes")
	}
	if k, ok := Tagged("sc-p12-AB"); !ok || k != 12 {
		t.Fatalf("Tagged(sc-p12-AB) = %d, %v", k, ok)
	}
	if ConsumerName("conversation-begin", 2, 4) != "conversation-begin-p2" || ConsumerName("x", 0, 1) != "x" {
		t.Fatal("ConsumerName")
	}
	if Dir("/d", 0, 1) != "/d" || Dir("/d", 3, 4) != filepath.Join("/d", "p3") {
		t.Fatal("Dir")
	}
}

// ledger checks that no partition ever has two owners at once.
type ledger struct {
	t     *testing.T
	mu    sync.Mutex
	owner map[int]string
}

func (l *ledger) take(k int, who string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o, ok := l.owner[k]; ok {
		l.t.Errorf("partition %d taken by %s while %s owns it", k, who, o)
	}
	l.owner[k] = who
}

func (l *ledger) drop(k int, who string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owner[k] == who {
		delete(l.owner, k)
	}
}

func (l *ledger) snapshot() map[int]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[int]string{}
	for k, v := range l.owner {
		m[k] = v
	}
	return m
}

// testMember is a Manager whose partitions are lock files, like bbolt's.
type testMember struct {
	name   string
	m      *Manager
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	locks  map[int]*FileLock
}

func startMember(t *testing.T, dir, name string, partitions int, l *ledger) *testMember {
	t.Helper()
	tm := &testMember{name: name, done: make(chan struct{}), locks: map[int]*FileLock{}}
	m, err := Join(Config{Dir: dir, Partitions: partitions, Interval: 20 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Open: func(k int) (func(context.Context) error, error) {
			lock, err := TryLock(filepath.Join(dir, fmt.Sprintf("p%d.lock", k)))
			if err != nil {
				return nil, err
			}
			l.take(k, name)
			tm.mu.Lock()
			tm.locks[k] = lock
			tm.mu.Unlock()
			return func(ctx context.Context) error {
				<-ctx.Done()
				// Graceful release: handlers finish, then the store closes.
				time.Sleep(5 * time.Millisecond) // a slow graceful release widens the window for a second owner; not synchronisation
				tm.mu.Lock()
				defer tm.mu.Unlock()
				if tm.locks[k] == lock {
					l.drop(k, name)
					lock.Close()
					delete(tm.locks, k)
				}
				return nil
			}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	tm.m = m
	ctx, cancel := context.WithCancel(context.Background())
	tm.cancel = cancel
	go func() {
		defer close(tm.done)
		m.Run(ctx)
	}()
	t.Cleanup(tm.stop)
	return tm
}

func (tm *testMember) stop() {
	tm.cancel()
	<-tm.done
}

// crash drops every lock at once, as the kernel does for a process killed
// with SIGKILL, without any release.
func (tm *testMember) crash(l *ledger) {
	tm.mu.Lock()
	for k, lock := range tm.locks {
		l.drop(k, tm.name)
		lock.Close()
		delete(tm.locks, k)
	}
	tm.m.me.lock.Close()
	tm.mu.Unlock()
	tm.stop()
}

func waitOwners(t *testing.T, l *ledger, partitions int, want map[string]int) {
	t.Helper()
	bustest.EventuallyReport(t, 20*time.Second, fmt.Sprintf("owner counts %v", want), func() (bool, string) {
		got := map[string]int{}
		snap := l.snapshot()
		for _, who := range snap {
			got[who]++
		}
		ok := len(snap) == partitions
		for who, n := range want {
			if got[who] != n {
				ok = false
			}
		}
		return ok, fmt.Sprint(snap)
	})
}

func TestMembersShareAndTakeOver(t *testing.T) {
	dir := t.TempDir()
	l := &ledger{t: t, owner: map[int]string{}}
	a := startMember(t, dir, "a", 6, l)
	waitOwners(t, l, 6, map[string]int{"a": 6})
	b := startMember(t, dir, "b", 6, l)
	waitOwners(t, l, 6, map[string]int{"a": 3, "b": 3})
	c := startMember(t, dir, "c", 6, l)
	waitOwners(t, l, 6, map[string]int{"a": 2, "b": 2, "c": 2})

	// b dies without releasing anything: a and c take its partitions.
	before := slices.Clone(b.m.Owned())
	b.crash(l)
	waitOwners(t, l, 6, map[string]int{"a": 3, "c": 3})
	for _, k := range before {
		if o := l.snapshot()[k]; o != "a" && o != "c" {
			t.Fatalf("partition %d of the crashed member is owned by %q", k, o)
		}
	}
	// c stops gracefully: a runs everything again.
	c.stop()
	waitOwners(t, l, 6, map[string]int{"a": 6})
	if a.m.Members() != 1 {
		t.Fatalf("members = %d after two left, want 1", a.m.Members())
	}
}

func TestMoreMembersThanPartitions(t *testing.T) {
	dir := t.TempDir()
	l := &ledger{t: t, owner: map[int]string{}}
	a := startMember(t, dir, "a", 2, l)
	b := startMember(t, dir, "b", 2, l)
	c := startMember(t, dir, "c", 2, l)
	// Two own one partition each, the third is a standby.
	waitOwners(t, l, 2, nil)
	bustest.EventuallyReport(t, 20*time.Second, "two members owning one partition each", func() (bool, string) {
		n := 0
		for _, m := range []*testMember{a, b, c} {
			if len(m.m.Owned()) == 1 {
				n++
			}
		}
		return n == 2, fmt.Sprint(l.snapshot())
	})
	// The standby takes over from a crashed owner.
	for _, m := range []*testMember{a, b, c} {
		if len(m.m.Owned()) == 1 {
			m.crash(l)
			break
		}
	}
	waitOwners(t, l, 2, nil)
}
