package bustest

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and fails the test when timeout
// passes first; what names the awaited state in the failure.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if _, ok := poll(timeout, func() (bool, string) { return cond(), "" }); !ok {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// EventuallyReport is Eventually for a condition that also says what it
// saw; the failure quotes what it saw last.
func EventuallyReport(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, seen string)) {
	t.Helper()
	if seen, ok := poll(timeout, cond); !ok {
		t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, seen)
	}
}

func poll(timeout time.Duration, cond func() (bool, string)) (string, bool) {
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		ok, seen := cond()
		if ok {
			return seen, true
		}
		if time.Now().After(deadline) {
			return seen, false
		}
		// A polling interval, not synchronisation: the condition decides.
		time.Sleep(delay)
		delay = min(2*delay, 20*time.Millisecond)
	}
}
