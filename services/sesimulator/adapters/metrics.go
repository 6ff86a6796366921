package adapters

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tsmhub/tsmhub/services/sesimulator/app"
)

// PromObserver counts the use cases' work as Prometheus series (no SE ids as
// labels: the fleet is large and the ids are not for dashboards).
type PromObserver struct {
	manufactured prometheus.Counter
	scripts      prometheus.Counter
	apdus        *prometheus.CounterVec
	cache        *prometheus.CounterVec
	resets       prometheus.Counter
}

var _ app.Observer = (*PromObserver)(nil)

// NewPromObserver registers the series on reg; cached reports the number of
// decoded cards in memory.
func NewPromObserver(reg prometheus.Registerer, cached func() int) *PromObserver {
	o := &PromObserver{
		manufactured: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_sesim_cards_manufactured_total",
			Help: "Cards manufactured for enrolled SEs."}),
		scripts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_sesim_scripts_executed_total",
			Help: "Scripts executed and committed."}),
		apdus: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_sesim_apdus_executed_total",
			Help: "C-APDUs executed and committed, by origin (script, debug, reader)."}, []string{"origin"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsm_sesim_card_cache_lookups_total",
			Help: "Lookups of the decoded-card cache, by result (hit, miss)."}, []string{"result"}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsm_sesim_reader_resets_total",
			Help: "Card power-offs, power-ons and resets from a card reader (vpcd), committed."}),
	}
	reg.MustRegister(o.manufactured, o.scripts, o.apdus, o.cache, o.resets,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsm_sesim_cards_cached",
			Help: "Decoded cards held in memory."}, func() float64 { return float64(cached()) }))
	return o
}

// CardManufactured implements app.Observer.
func (o *PromObserver) CardManufactured() { o.manufactured.Inc() }

// ScriptExecuted implements app.Observer.
func (o *PromObserver) ScriptExecuted(apdus int) {
	o.scripts.Inc()
	o.apdus.WithLabelValues("script").Add(float64(apdus))
}

// DebugAPDUExecuted implements app.Observer.
func (o *PromObserver) DebugAPDUExecuted() { o.apdus.WithLabelValues("debug").Inc() }

// ReaderAPDUExecuted implements app.Observer.
func (o *PromObserver) ReaderAPDUExecuted() { o.apdus.WithLabelValues("reader").Inc() }

// ReaderReset implements app.Observer.
func (o *PromObserver) ReaderReset() { o.resets.Inc() }

// CardCacheLookup implements app.Observer.
func (o *PromObserver) CardCacheLookup(hit bool) {
	if hit {
		o.cache.WithLabelValues("hit").Inc()
		return
	}
	o.cache.WithLabelValues("miss").Inc()
}
