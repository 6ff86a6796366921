package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/service"
)

// deadline bounds every wait; generous for a loaded 2-core machine.
const deadline = 30 * time.Second

// env is one embedded NATS server, one script router and recorders of every
// message on the subjects the tests watch.
type env struct {
	t     *testing.T
	js    jetstream.JetStream
	svc   *bustest.Service
	steps *bustest.Recorder
	dlq   *bustest.Recorder
	// schemas checks every recorded step against its published schema;
	// checked counts the steps already checked.
	schemas *bus.Schemas
	checked int
	// recordN numbers the registry records published.
	recordN int
	// cfg is the router's configuration (restart).
	cfg service.Config
}

func newEnv(t *testing.T, mutate func(*service.Config)) *env {
	t.Helper()
	srv := bustest.StartJetStream(t)
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, js: srv.JS, schemas: schemas,
		steps: bustest.Record(t, srv.JS, topology.StreamSteps.Name, "tsm.mno.>", "tsm.script.*.completed"),
		dlq:   bustest.Record(t, srv.JS, topology.StreamDeadLetters.Name)}

	cfg := service.Config{MaxAPDUsPerScript: 8, MaxScriptBytes: 512}
	cfg.Kit.Name = service.Name
	cfg.Kit.NATSURL = srv.URL()
	cfg.Kit.DataDir = t.TempDir()
	cfg.Kit.HTTPAddr = "127.0.0.1:0"
	cfg.Kit.Workers = 4
	cfg.Kit.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mutate != nil {
		mutate(&cfg)
	}
	e.cfg = cfg
	e.start()
	e.registerSPs()
	return e
}

// start runs the router on e.cfg (its bbolt file survives a restart).
func (e *env) start() {
	e.t.Helper()
	cfg := e.cfg
	e.svc = bustest.StartService(e.t, func(ctx context.Context, bound chan<- string) error {
		cfg.Kit.HTTPBound = bound
		return service.Run(ctx, cfg)
	})
}

// restart stops the router and starts it again on the same data directory.
func (e *env) restart() {
	e.t.Helper()
	e.svc.Stop(e.t)
	e.start()
}

// AIDs of the registry records every env starts with: sp-bank (the SP of
// requested) owns bankSD and the instance of service svc-1/1-0; sp-transit
// owns transitSD.
const (
	bankSD       = "A000000555AA01"
	bankInstance = "A0000005550101"
	transitSD    = "A000000555AA02"
)

// registerSPs publishes the registry records of the two SPs and waits until
// the router projected them.
func (e *env) registerSPs() {
	e.t.Helper()
	e.publishRecord(topology.RegistrySP("sp-bank"), events.TypeRegistrySP,
		events.SPRecord{SPID: "sp-bank", Name: "Bank", SecurityDomainAID: bankSD})
	e.publishRecord(topology.RegistrySP("sp-transit"), events.TypeRegistrySP,
		events.SPRecord{SPID: "sp-transit", Name: "Transit", SecurityDomainAID: transitSD})
	e.publishRecord(topology.RegistryService("svc-1", "1-0"), events.TypeRegistryService,
		events.ServiceRecord{Number: "svc-1", Version: "1-0", SPID: "sp-bank", ELFAID: "A00000055501",
			ModuleAID: "A0000005550100", InstanceAID: bankInstance})
}

// publishRecord publishes a registry record and waits until the router's
// registry consumer acknowledged it (the projection committed it).
func (e *env) publishRecord(subject, ceType string, rec any) {
	e.t.Helper()
	e.recordN++
	ack := bustest.Publish(e.t, e.js, subject, bustest.Event{ID: fmt.Sprintf("reg-%d", e.recordN), Type: ceType, Data: rec})
	bustest.EventuallyReport(e.t, deadline, "the registry record projected", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, topology.StreamRegistry.Name, topology.ScriptRouterRegistry.Name)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream >= ack.Sequence && info.NumAckPending == 0,
			fmt.Sprintf("ack floor %d, want %d", info.AckFloor.Stream, ack.Sequence)
	})
}

// publish sends data as a CloudEvent of type ceType with ce-id id and a
// correlation id; msgID overrides Nats-Msg-Id (a re-publish beyond the
// stream's duplicate window) when not empty.
func (e *env) publish(subject, ceType, id, msgID string, data any) {
	e.t.Helper()
	bustest.Publish(e.t, e.js, subject, bustest.Event{ID: id, Type: ceType, Correlation: "corr-" + id, Data: data, MsgID: msgID})
}

// recorder returns the recorder of subject: dead letters are on TSM_DLQ.
func (e *env) recorder(subject string) *bustest.Recorder {
	if strings.HasPrefix(subject, "tsm.dlq.") {
		return e.dlq
	}
	return e.steps
}

// matching returns the recorded messages on subject for which keep is true;
// it first reports the recorded steps that do not match their schema.
func (e *env) matching(subject string, keep func(jetstream.Msg) bool) []jetstream.Msg {
	e.t.Helper()
	e.checkSchemas()
	var out []jetstream.Msg
	for _, m := range e.recorder(subject).Messages() {
		if m.Subject() == subject && (keep == nil || keep(m)) {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits until at least n matching messages were recorded, up to the
// deadline.
func (e *env) waitFor(subject string, n int, keep func(jetstream.Msg) bool) []jetstream.Msg {
	e.t.Helper()
	var got []jetstream.Msg
	bustest.EventuallyReport(e.t, deadline, fmt.Sprintf("%d message(s) on %s", n, subject), func() (bool, string) {
		got = e.matching(subject, keep)
		return len(got) >= n, fmt.Sprintf("%d message(s)", len(got))
	})
	return got
}

// checkSchemas reports every step recorded since the last call that does not
// match its published schema.
func (e *env) checkSchemas() {
	e.t.Helper()
	steps := e.steps.Messages()
	for _, m := range steps[e.checked:] {
		if ceType := m.Headers().Get("ce-type"); m.Headers().Get(bus.HeaderDLQReason) == "" && e.schemas.Has(ceType) {
			if err := e.schemas.Validate(ceType, m.Data()); err != nil {
				e.t.Errorf("emitted event does not match its schema: %s: %v", m.Subject(), err)
			}
		}
	}
	e.checked = len(steps)
}

// forScript keeps messages whose data names scriptID.
func forScript(scriptID string) func(jetstream.Msg) bool {
	return func(m jetstream.Msg) bool {
		var v struct {
			ScriptID string `json:"scriptId"`
		}
		return json.Unmarshal(m.Data(), &v) == nil && v.ScriptID == scriptID
	}
}

// getJSON fetches path from the service's HTTP API.
func (e *env) getJSON(path string, v any) int {
	e.t.Helper()
	return e.svc.GetJSON(e.t, path, v)
}
