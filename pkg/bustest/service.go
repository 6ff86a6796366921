package bustest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Service is a service's Run function running in the background of a test.
type Service struct {
	// Addr is the address its HTTP server bound.
	Addr string

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// StartService calls run on a goroutine and waits until it sends the address
// its HTTP server bound on bound (a service passes bound on as its
// servicekit.Config.HTTPBound). The test fails if run returns first. The
// service is stopped by Stop or at the end of the test.
func StartService(t testing.TB, run func(ctx context.Context, bound chan<- string) error) *Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cancel: cancel, done: make(chan error, 1)}
	bound := make(chan string, 1)
	go func() { s.done <- run(ctx, bound) }()
	t.Cleanup(func() { s.Stop(t) })
	select {
	case s.Addr = <-bound:
	case err := <-s.done:
		s.once.Do(cancel)
		t.Fatalf("service did not start: %v", err)
	case <-time.After(Timeout):
		t.Fatalf("service did not bind its HTTP address within %s", Timeout)
	}
	return s
}

// Stop cancels the service's context and waits for run to return; an error
// it returns fails the test. Only the first call does anything.
func (s *Service) Stop(t testing.TB) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("service stopped with %v", err)
			}
		case <-time.After(Timeout):
			t.Errorf("service did not stop within %s", Timeout)
		}
	})
}

// GetJSON fetches path from the service's HTTP server, decodes a non-empty
// body into v (unless v is nil) and returns the status code.
func (s *Service) GetJSON(t testing.TB, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil && len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}

// Buffer is a bytes.Buffer that is safe for concurrent use: the log or output
// of code under test running on other goroutines.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
