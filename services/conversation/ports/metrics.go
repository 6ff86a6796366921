package ports

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/services/conversation/app"
)

// Metrics are the conversation service's Prometheus series (ids and counts
// only: no APDU data, no personal data).
type Metrics struct {
	opened   prometheus.Counter
	closed   *prometheus.CounterVec
	queued   prometheus.Counter
	refused  *prometheus.CounterVec
	scripts  *prometheus.CounterVec
	sweepErr prometheus.Counter
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		opened: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_conversations_opened_total",
			Help: "Conversations opened."}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_conversations_closed_total",
			Help: "Conversations closed, by reason (ended, expired)."}, []string{"reason"}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_conversation_begins_queued_total",
			Help: "Begins that waited for a busy SE (validitySeconds set)."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_conversation_refusals_total",
			Help: "SP requests answered with a failure by the conversation service, by operation and code."},
			[]string{"op", "code"}),
		scripts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_conversation_scripts_total",
			Help: "Scripts handed to the script router (requested) and answered (completed)."}, []string{"event"}),
		sweepErr: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_conversation_sweep_errors_total",
			Help: "Expiry sweeps that failed (retried at the next tick)."}),
	}
	reg.MustRegister(m.opened, m.closed, m.queued, m.refused, m.scripts, m.sweepErr)
	return m
}

// observe logs and counts what a committed use case did.
func observe(log *slog.Logger, m *Metrics, r app.Report) {
	for _, c := range r.Opened {
		log.Info("conversation opened", "conversationId", c.ConversationID, "seId", c.SEID)
	}
	for _, c := range r.Ended {
		log.Info("conversation ended", "conversationId", c.ConversationID, "seId", c.SEID)
	}
	for _, c := range r.Expired {
		log.Info("conversation expired", "conversationId", c.ConversationID, "seId", c.SEID)
	}
	for _, f := range r.Refused {
		log.Debug("request refused", "op", f.Op, "code", string(f.Code))
	}
	if m == nil {
		return
	}
	m.opened.Add(float64(len(r.Opened)))
	m.closed.WithLabelValues("ended").Add(float64(len(r.Ended)))
	m.closed.WithLabelValues("expired").Add(float64(len(r.Expired)))
	m.queued.Add(float64(r.Queued))
	for _, f := range r.Refused {
		m.refused.WithLabelValues(f.Op, string(f.Code)).Inc()
	}
	m.scripts.WithLabelValues("requested").Add(float64(r.ScriptsRequested))
	m.scripts.WithLabelValues("completed").Add(float64(r.ScriptsCompleted))
}
