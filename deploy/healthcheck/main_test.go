package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultURLFromHTTPAddr(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/readyz",
		"0.0.0.0:8081":   "http://127.0.0.1:8081/readyz",
		"127.0.0.1:8084": "http://127.0.0.1:8084/readyz",
		"[::]:8085":      "http://127.0.0.1:8085/readyz",
	} {
		got, err := defaultURL(env(map[string]string{"HTTP_ADDR": addr}))
		if err != nil || got != want {
			t.Errorf("HTTP_ADDR=%q: got %q, %v; want %q", addr, got, err, want)
		}
	}
	got, err := defaultURL(env(map[string]string{"HTTP_ADDR": ":8080", "HEALTHCHECK_URL": "http://127.0.0.1:8222/healthz"}))
	if err != nil || got != "http://127.0.0.1:8222/healthz" {
		t.Errorf("HEALTHCHECK_URL not preferred: %q, %v", got, err)
	}
	for _, bad := range []string{"", "8080", "host"} {
		if _, err := defaultURL(env(map[string]string{"HTTP_ADDR": bad})); err == nil {
			t.Errorf("HTTP_ADDR=%q accepted", bad)
		}
	}
}

func TestExitStatus(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready.Load() {
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var stderr bytes.Buffer
	if code := run(nil, env(map[string]string{"HTTP_ADDR": addr}), &stderr); code != 0 {
		t.Fatalf("ready service: exit %d (%s)", code, stderr.String())
	}
	ready.Store(false)
	stderr.Reset()
	if code := run(nil, env(map[string]string{"HTTP_ADDR": addr}), &stderr); code != 1 {
		t.Fatalf("unready service: exit %d", code)
	}
	if !strings.Contains(stderr.String(), "503") || !strings.Contains(stderr.String(), "not connected") {
		t.Errorf("reason not reported: %q", stderr.String())
	}
	if code := run([]string{srv.URL + "/other"}, env(nil), &stderr); code != 1 {
		t.Errorf("404 URL: exit %d", code)
	}
	srv.Close()
	if code := run([]string{"-timeout", "500ms", srv.URL + "/readyz"}, env(nil), &stderr); code != 1 {
		t.Errorf("closed server: exit %d", code)
	}
	if code := run(nil, env(nil), &stderr); code != 2 {
		t.Errorf("no URL and no HTTP_ADDR: exit %d", code)
	}
}
