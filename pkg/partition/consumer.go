package partition

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// Key is the partition key of a message for consumer c: its ordering key
// (bus.OrderingKey), i.e. the SE id of internal step subjects and the
// conversation id of send-script and end-conversation requests.
func Key(c topology.Consumer, d *bus.Delivery) string {
	return bus.OrderingKey(c, d.Subject, d.Header, d.Data)
}

// Filter wraps consumer c's handler h for partition k of n: a message of
// another partition is acknowledged without being handled (its own
// partition's consumer handles it). It reads the subject, or the body's
// ordering field, never the store.
func Filter(c topology.Consumer, k, n int, h bus.Handler) bus.Handler {
	if n <= 1 {
		return h
	}
	return func(ctx context.Context, d *bus.Delivery) error {
		if Of(Key(c, d), n) != k {
			return nil
		}
		return h(ctx, d)
	}
}

// Takeover creates or updates a partition's durable consumer (for
// bus.RouterConfig.CreateConsumer). When the consumer exists and messages
// delivered to a previous owner are still unacknowledged (it was killed, or
// handed back messages it had fetched but not started), later messages of
// the same SE would reach the new owner before those come back, after their
// ack wait: per-SE order would break. So such a consumer is recreated from
// its ack floor: everything after the last contiguous acknowledgement is
// delivered again in stream order, and what was already handled is skipped
// by the handlers' idempotency (the inbox in the partition's store).
func Takeover(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := js.Consumer(ctx, stream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return withLeader(ctx, cons, err)
	}
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	if info.NumAckPending == 0 {
		// Keep where it was created to start from (an update cannot change it).
		cfg.DeliverPolicy, cfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
		cfg.OptStartTime = info.Config.OptStartTime
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
		// Its leader may have been on a node that just left (a replica
		// restarted while a NATS node is down): the first pull waits for the
		// new one.
		return withLeader(ctx, cons, err)
	}
	if err := js.DeleteConsumer(ctx, stream, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("take over %s: %w", cfg.Durable, err)
	}
	cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cfg.OptStartSeq = info.AckFloor.Stream + 1
	cfg.OptStartTime = nil
	cons, err = js.CreateConsumer(ctx, stream, cfg)
	return withLeader(ctx, cons, err)
}

// withLeader waits (up to 5 s) until a consumer just created or updated on a
// cluster has a leader, so that the first pull request reaches one.
func withLeader(ctx context.Context, cons jetstream.Consumer, err error) (jetstream.Consumer, error) {
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err == nil && (info.Cluster == nil || info.Cluster.Leader != "") {
			return cons, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return cons, nil // the iterator's heartbeats cover the rest
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
