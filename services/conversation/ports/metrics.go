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
	procs    *prometheus.CounterVec
	changes  prometheus.Counter
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
	m.procs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_procedures_total",
		Help: "Procedures (pre-personalize, service life cycle, lock-se, unlock-se, audit) started and ended, by kind and event (started, success, failed, done)."},
		[]string{"kind", "event"})
	m.changes = prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_service_state_changes_total",
		Help: "Service instance state changes (each notified to its SP)."})
	reg.MustRegister(m.opened, m.closed, m.queued, m.refused, m.scripts, m.sweepErr, m.procs, m.changes)
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
	for _, p := range r.ProceduresStarted {
		log.Info("procedure started", "procedureId", p.ProcedureID, "seId", p.SEID, "kind", p.Kind)
	}
	for _, p := range r.ProceduresEnded {
		log.Info("procedure ended", "procedureId", p.ProcedureID, "seId", p.SEID, "kind", p.Kind, "result", p.Result)
	}
	for _, n := range r.Notes {
		log.Warn("procedure note", "note", n)
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
	for _, p := range r.ProceduresStarted {
		m.procs.WithLabelValues(p.Kind, "started").Inc()
	}
	for _, p := range r.ProceduresEnded {
		m.procs.WithLabelValues(p.Kind, p.Result).Inc()
	}
	m.changes.Add(float64(r.StateChanges))
}
