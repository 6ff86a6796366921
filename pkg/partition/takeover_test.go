package partition

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
)

// A partition's consumer taken over with a message its previous owner never
// acknowledged starts again at the ack floor: the unacknowledged message comes
// before every later one, in stream order.
func TestTakeoverRewindsToAckFloor(t *testing.T) {
	srv := bustest.StartJetStream(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := js.Publish(ctx, "t.se1.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := jetstream.ConsumerConfig{Durable: "c-p0", FilterSubjects: []string{"t.>"}, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute, DeliverPolicy: jetstream.DeliverAllPolicy}
	cons, err := Takeover(ctx, js, "T", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The first owner acks 1, fetches 2 and 3 and dies holding them; 4 is acked.
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 4 {
		t.Fatalf("fetched %d messages, want 4", len(got))
	}
	if err := got[0].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if err := got[3].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	// Without the takeover, 5 would be delivered now and 2 only after a minute.
	cons, err = Takeover(ctx, js, "T", cfg)
	if err != nil {
		t.Fatal(err)
	}
	batch, err = cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for m := range batch.Messages() {
		order = append(order, string(m.Data()))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if want := "[2 3 4 5]"; stringsOf(order) != want {
		t.Fatalf("after the takeover: %v, want %s", order, want)
	}
	// With nothing pending the consumer is kept (and its start position).
	cons, err = Takeover(ctx, js, "T", cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.AckFloor.Stream != 5 {
		t.Fatalf("after a clean takeover: pending %d, ack floor %d", info.NumPending, info.AckFloor.Stream)
	}
}

func stringsOf(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}
