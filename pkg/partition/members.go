package partition

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FileLock is an exclusive flock on a file, held until Close. Locks are per
// open file: two FileLocks on one path conflict even within one process.
type FileLock struct {
	f *os.File
}

// ErrLocked is returned by TryLock when another open file holds the lock.
var ErrLocked = errors.New("locked by another process")

// TryLock opens (creating it) path and takes an exclusive flock on it without
// waiting.
func TryLock(path string) (*FileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &FileLock{f: f}, nil
}

// Close releases the lock.
func (l *FileLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// sameFile reports whether path still names the locked file.
func (l *FileLock) sameFile(path string) bool {
	if l == nil || l.f == nil {
		return false
	}
	a, err := l.f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// membersDir is where the member files live inside the data directory.
const membersDir = "members"

// joinPrefix marks member files being created (locked, then renamed).
const joinPrefix = ".join-"

// member is this process's membership: a locked file named by its id.
type member struct {
	dir  string
	id   string
	lock *FileLock
}

// join creates dir/members/<id> already locked (created under a temporary
// name, locked, then renamed), so no other member ever sees it unlocked.
func join(dataDir string) (*member, error) {
	dir := filepath.Join(dataDir, membersDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	m := &member{dir: dir, id: hex.EncodeToString(b)}
	return m, m.register()
}

func (m *member) register() error {
	m.lock.Close()
	tmp := filepath.Join(m.dir, joinPrefix+m.id)
	l, err := TryLock(tmp)
	if err != nil {
		return fmt.Errorf("member file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, m.id)); err != nil {
		l.Close()
		os.Remove(tmp)
		return fmt.Errorf("member file: %w", err)
	}
	m.lock = l
	return nil
}

// ensure re-registers the member when its file was removed (by hand, or by a
// member that found it unlocked in the instant between create and lock of an
// older version of this code).
func (m *member) ensure() error {
	if m.lock.sameFile(filepath.Join(m.dir, m.id)) {
		return nil
	}
	return m.register()
}

func (m *member) leave() {
	if m.lock != nil {
		os.Remove(filepath.Join(m.dir, m.id))
		m.lock.Close()
		m.lock = nil
	}
}

// live lists the ids of the live members, sorted, this one included. A member
// file whose lock can be taken belongs to a dead process: it is removed.
func (m *member) live() ([]string, error) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, err
	}
	ids := []string{m.id}
	for _, e := range entries {
		name := e.Name()
		if name == m.id || e.IsDir() {
			continue
		}
		path := filepath.Join(m.dir, name)
		if strings.HasPrefix(name, joinPrefix) {
			// A join in progress, or left over by a crash during one.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				if l, err := TryLock(path); err == nil {
					os.Remove(path)
					l.Close()
				}
			}
			continue
		}
		l, err := TryLock(path)
		switch {
		case errors.Is(err, ErrLocked):
			ids = append(ids, name)
		case err == nil:
			os.Remove(path) // stale: its process is gone
			l.Close()
		case errors.Is(err, os.ErrNotExist):
		default:
			return nil, err
		}
	}
	sort.Strings(ids)
	return ids, nil
}
