package ports

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/mnoadapter/app"
	"github.com/tsmhub/tsmhub/services/mnoadapter/domain"
)

// Metrics are the adapter's own series, labelled with the MNO id.
type Metrics struct {
	deliveries *prometheus.CounterVec
	latency    prometheus.Observer
}

// MetricsConfig tells NewMetrics where to read the gauges from.
type MetricsConfig struct {
	MNOID string
	// JS reads the deliver consumer's pending counts (queue depth).
	JS jetstream.JetStream
	// App reports the deliveries waiting on the bearer.
	App *app.App
}

// NewMetrics registers the series on reg:
//
//	tsm_mno_deliveries_total{mno,outcome}   deliver events handled, by outcome
//	tsm_mno_delivery_latency_seconds{mno}   deliver event stored -> SEExecute committed
//	tsm_mno_queue_depth{mno}                deliver events not yet acknowledged by
//	                                        this MNO's consumer (pending + in progress)
//	tsm_mno_bearer_waiting{mno}             deliveries waiting for the rate limiter or
//	                                        the bearer latency right now
func NewMetrics(reg prometheus.Registerer, cfg MetricsConfig) *Metrics {
	labels := prometheus.Labels{"mno": cfg.MNOID}
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_mno_deliveries_total",
		Help:        "Deliver events handled by the MNO adapter, by outcome (delivered, expired, too-large, malformed, duplicate).",
		ConstLabels: labels}, []string{"outcome"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tsm_mno_delivery_latency_seconds",
		Help:        "Time from a deliver event entering the stream to its SEExecute being committed (queue, rate limit, bearer latency).",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})
	consumer := topology.MNOAdapterDeliver(cfg.MNOID)
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_mno_queue_depth",
		Help:        "Deliver events not yet acknowledged by this MNO's consumer: waiting in the stream plus in progress.",
		ConstLabels: labels}, func() float64 { return queueDepth(cfg.JS, consumer) })
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_mno_bearer_waiting",
		Help:        "Deliveries waiting for the rate limiter or the bearer latency.",
		ConstLabels: labels}, func() float64 { return float64(cfg.App.Waiting()) })
	reg.MustRegister(deliveries, latency, depth, waiting)
	for _, o := range []string{domain.OutcomeDelivered, domain.OutcomeExpired, domain.OutcomeTooLarge,
		domain.OutcomeMalformed, domain.OutcomeDuplicate} {
		deliveries.WithLabelValues(o) // export zeros, so rates work from the start
	}
	return &Metrics{deliveries: deliveries, latency: latency}
}

func (m *Metrics) delivered(res app.Result) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(res.Outcome).Inc()
	if res.Outcome == domain.OutcomeDelivered && res.Latency > 0 {
		m.latency.Observe(res.Latency.Seconds())
	}
}

// queueDepth asks JetStream for the consumer's pending counts; -1 when it
// cannot tell (not created yet, server unreachable).
func queueDepth(js jetstream.JetStream, c topology.Consumer) float64 {
	if js == nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, c.Stream, c.Name)
	if err != nil {
		return -1
	}
	info := cons.CachedInfo()
	return float64(info.NumPending) + float64(info.NumAckPending)
}
