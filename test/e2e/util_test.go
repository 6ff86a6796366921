package e2e

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/spclient"
)

func asFailed(err error, f **spclient.FailedError) bool { return errors.As(err, f) }

func jsOrderedAll() jetstream.OrderedConsumerConfig { return jetstream.OrderedConsumerConfig{} }

func jsWait(d time.Duration) jetstream.FetchOpt { return jetstream.FetchMaxWait(d) }
