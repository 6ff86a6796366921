package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/servicekit"

	"github.com/tsmhub/tsmhub/services/registry/service"
)

// waitTimeout bounds every wait of these tests: generous, because they must
// pass on a loaded 2-core machine.
const waitTimeout = 30 * time.Second

// harness is one registry running in-process on an embedded NATS server.
type harness struct {
	t       *testing.T
	baseURL string
	dbPath  string
	nc      *nats.Conn
	js      jetstream.JetStream
	logs    *bustest.Buffer
	schemas *bus.Schemas
	srv     *bustest.Server
	dataDir string
	svc     *bustest.Service
}

// testKEK is the key-encryption key of the test registry.
var testKEK = bytes.Repeat([]byte{0x5A}, 32)

// testExchangeKey is the key-exchange key of the test registry.
var testExchangeKey = bytes.Repeat([]byte{0x3C}, 32)

type harnessOption func(*service.Config)

func withClock(now func() time.Time) harnessOption {
	return func(c *service.Config) { c.Now = now }
}

func withExchangeKey(k []byte) harnessOption {
	return func(c *service.Config) { c.KeyExchangeKey = k }
}

func startRegistry(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	return startRegistryOn(t, bustest.StartJetStream(t), t.TempDir(), opts...)
}

// restart stops the registry and starts another on the same NATS server and
// data directory.
func (h *harness) restart(opts ...harnessOption) *harness {
	h.t.Helper()
	h.svc.Stop(h.t)
	return startRegistryOn(h.t, h.srv, h.dataDir, opts...)
}

func startRegistryOn(t *testing.T, srv *bustest.Server, dataDir string, opts ...harnessOption) *harness {
	t.Helper()
	logs := &bustest.Buffer{}
	cfg := service.Config{
		Kit: servicekit.Config{NATSURL: srv.URL(), DataDir: dataDir, HTTPAddr: "127.0.0.1:0",
			Workers: 8, Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		KEK:             testKEK,
		KeyExchangeKey:  testExchangeKey,
		ImportBatchSize: 1000,
	}
	for _, o := range opts {
		o(&cfg)
	}
	svc := bustest.StartService(t, func(ctx context.Context, bound chan<- string) error {
		cfg.Kit.HTTPBound = bound
		return service.Run(ctx, cfg)
	})
	h := &harness{t: t, baseURL: "http://" + svc.Addr, dbPath: filepath.Join(dataDir, "registry.db"), logs: logs,
		nc: srv.NC, js: srv.JS, srv: srv, dataDir: dataDir, svc: svc}
	var err error
	if h.schemas, err = bus.LoadSchemas(); err != nil {
		t.Fatal(err)
	}
	return h
}

// httpResult is an HTTP response read in full.
type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r httpResult) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response body %s: %v", r.Body, err)
	}
}

// do sends body (a string is sent as is, anything else as JSON).
func (h *harness) do(method, path string, body any) httpResult {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.baseURL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 2 * waitTimeout}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// mustDo is do with an expected status.
func (h *harness) mustDo(method, path string, body any, status int) httpResult {
	h.t.Helper()
	r := h.do(method, path, body)
	if r.Status != status {
		h.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, status, r.Body)
	}
	return r
}

// lastRecord waits for the latest message on a registry subject that satisfies
// accept (nil: any) and returns it.
func (h *harness) lastRecord(subject string, accept func(*jetstream.RawStreamMsg) bool) *jetstream.RawStreamMsg {
	h.t.Helper()
	var msg *jetstream.RawStreamMsg
	bustest.EventuallyReport(h.t, waitTimeout, "record on "+subject, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := h.js.Stream(ctx, "TSM_REG")
		if err != nil {
			return false, err.Error()
		}
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return false, err.Error()
		}
		if accept != nil && !accept(m) {
			return false, string(m.Data)
		}
		msg = m
		return true, ""
	})
	return msg
}

// requestsDrained reports whether the registry's request consumer has
// acknowledged everything the requests stream holds.
func (h *harness) requestsDrained() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.js.Consumer(ctx, "TSM_REQ", "registry-requests")
	if err != nil {
		return false, err.Error()
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, err.Error()
	}
	return info.NumPending == 0 && info.NumAckPending == 0,
		"pending " + itoa(info.NumPending) + ", ack pending " + itoa(uint64(info.NumAckPending))
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
