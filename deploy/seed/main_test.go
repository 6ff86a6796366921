package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/devstack"
)

// fakeStack answers like a registry that turns ready after a few probes and a
// se-simulator that knows the cards once their SEs were enrolled. It records
// every PUT.
type fakeStack struct {
	mu       sync.Mutex
	probes   int
	puts     map[string]map[string]any
	enrolled map[string]bool
}

func (f *fakeStack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/readyz":
		f.probes++
		if f.probes < 3 {
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
			return
		}
	case r.Method == http.MethodPut:
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.puts[r.URL.Path] = body
		if seID, ok := strings.CutPrefix(r.URL.Path, "/v1/ses/"); ok {
			f.enrolled[seID] = true
		}
	case strings.HasPrefix(r.URL.Path, "/v1/cards/"):
		seID := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/cards/"), "/counters")
		if !f.enrolled[seID] {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"apdusExecuted":0}`))
	default:
		http.NotFound(w, r)
	}
}

func TestSeedEnrolsDemoAndWaitsForCards(t *testing.T) {
	f := &fakeStack{puts: map[string]map[string]any{}, enrolled: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		return map[string]string{"REGISTRY_ADDR": addr, "SESIM_ADDR": addr, "SEED_TIMEOUT": "20s"}[k]
	}
	if code := run(context.Background(), nil, getenv, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.probes < 3 {
		t.Errorf("seeded before the registry was ready (%d probes)", f.probes)
	}
	for _, se := range devstack.DemoSEs {
		body, ok := f.puts["/v1/ses/"+se.SEID]
		if !ok || body["mno"] != se.MNO || body["configuration"] != se.Configuration {
			t.Errorf("SE %s enrolled as %v", se.SEID, body)
		}
	}
	for _, p := range []string{"/v1/mnos/mno-a", "/v1/mnos/mno-b", "/v1/sps/bank1", "/v1/sps/transit1", "/v1/services/1/1"} {
		if _, ok := f.puts[p]; !ok {
			t.Errorf("no PUT %s", p)
		}
	}
	if !strings.Contains(out.String(), "4 SEs") {
		t.Errorf("summary: %q", out.String())
	}
}

func TestSeedGivesUpAndSaysWhy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-registry", strings.TrimPrefix(srv.URL, "http://"), "-timeout", "1s"},
		func(string) string { return "" }, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "registry ready") || !strings.Contains(errOut.String(), "503") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if code := run(context.Background(), nil, func(k string) string {
		return map[string]string{"SEED_TIMEOUT": "soon"}[k]
	}, &out, &errOut); code != 2 {
		t.Errorf("bad SEED_TIMEOUT: exit %d", code)
	}
}
