package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

func TestOrderingKey(t *testing.T) {
	byToken := topology.Consumer{OrderingToken: 2}
	anyOrder := topology.Consumer{OrderingToken: -1}
	byField := topology.Consumer{OrderingToken: 2, OrderingFields: []string{"seId", "msi"}}
	binary := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"req-1"}}
	lower := nats.Header{"CE-SPECVERSION": {"1.0"}, "Ce-Id": {"req-2"}}
	structured := nats.Header{"content-type": {"application/cloudevents+json"}}
	for _, c := range []struct {
		name    string
		c       topology.Consumer
		subject string
		h       nats.Header
		body    string
		want    string
	}{
		{"subject token", byToken, "tsm.se.SE01.execute", nil, `{}`, "SE01"},
		{"token out of range: whole subject", topology.Consumer{OrderingToken: 9}, "tsm.se.SE01.execute", nil, ``, "tsm.se.SE01.execute"},
		{"any order: whole subject", anyOrder, "tsm.reg.sp.bank1", nil, ``, "tsm.reg.sp.bank1"},
		{"first field present", byField, "tsm.sp.bank1.req.get-se-data", binary, `{"msi":"4911","seId":"AB01"}`, "AB01"},
		{"second field when first is empty", byField, "tsm.sp.bank1.req.get-se-id", binary, `{"seId":"","msi":"4911"}`, "4911"},
		{"non-string field skipped", byField, "tsm.sp.bank1.req.get-se-id", binary, `{"seId":7,"msi":"4911"}`, "4911"},
		{"no field: ce-id", byField, "tsm.sp.bank1.req.other", binary, `{"x":"y"}`, "ce-id:req-1"},
		{"any header case", byField, "tsm.sp.bank1.req.other", lower, `[1,2]`, "ce-id:req-2"},
		{"structured mode", byField, "tsm.sp.bank1.req.get-se-id", structured,
			`{"specversion":"1.0","id":"req-3","data":{"msi":"4912"}}`, "4912"},
		{"structured mode without field", byField, "tsm.sp.bank1.req.get-se-id", structured,
			`{"specversion":"1.0","id":"req-3","data":{}}`, "ce-id:req-3"},
		{"no ce-id at all: subject", byField, "tsm.sp.bank1.req.get-se-id", nil, `not json`, "tsm.sp.bank1.req.get-se-id"},
	} {
		if got := bus.OrderingKey(c.c, c.subject, c.h, []byte(c.body)); got != c.want {
			t.Errorf("%s: key %q, want %q", c.name, got, c.want)
		}
	}
}

// SP requests carry the SP in their subject; a consumer ordering by a data
// field keeps each conversation's requests in order while the conversations
// of one SP proceed in parallel.
func TestRouterOrdersSPRequestsByDataField(t *testing.T) {
	js := bustest.StartJetStream(t).JS
	const convs, per = 20, 25
	for i := 0; i < per; i++ {
		for c := 0; c < convs; c++ {
			bustest.Publish(t, js, topology.SPRequest("bank1", topology.OpSendScript), bustest.Event{
				ID: fmt.Sprintf("r-%d-%d", c, i), Type: "tsm.send-script.request", Source: topology.SPSourcePrefix + "bank1",
				Data: map[string]any{"conversationId": fmt.Sprintf("c%02d", c), "i": i}})
		}
	}
	cons := topology.Consumer{Service: "test", Name: "conv-order", Stream: topology.StreamRequests.Name,
		FilterSubjects: []string{topology.SPRequest("*", topology.OpSendScript)}, OrderingToken: 2,
		OrderingFields: []string{"conversationId"}, MaxDeliver: 3}
	var mu sync.Mutex
	last := map[string]int{}
	var total, violations atomic.Int64
	other := make(chan struct{})
	var otherOnce sync.Once
	runRouter(t, js, cons, func(_ context.Context, d *bus.Delivery) error {
		var p struct {
			ConversationID string
			I              int
		}
		if err := json.Unmarshal(d.Event.Data(), &p); err != nil {
			return bus.Permanent(err)
		}
		if p.ConversationID == "c00" && p.I == 0 {
			// Held until another conversation of the same SP has been
			// handled: that needs a second worker.
			select {
			case <-other:
			case <-time.After(15 * time.Second):
				t.Error("no other conversation was handled while c00 waited: the SP's requests are serialised")
			}
		} else if p.ConversationID != "c00" {
			otherOnce.Do(func() { close(other) })
		}
		mu.Lock()
		if prev, ok := last[p.ConversationID]; ok && p.I != prev+1 || !ok && p.I != 0 {
			violations.Add(1)
		}
		last[p.ConversationID] = p.I
		mu.Unlock()
		total.Add(1)
		return nil
	})
	bustest.Eventually(t, 30*time.Second, "all requests handled", func() bool { return total.Load() == convs*per })
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d per-conversation order violations", v)
	}
}
