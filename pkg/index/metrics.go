package index

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the index's Prometheus metrics: the size, capacity and
// evictions trio of a stateful component, plus lookup hits and misses.
type Metrics struct {
	hits      prometheus.Counter
	misses    prometheus.Counter
	evictions *prometheus.CounterVec
	// storeErrors is registered by Restore: it exists only with a store.
	storeErrors prometheus.Counter
	reg         prometheus.Registerer
}

// NewMetrics registers the index metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	lookups := f.NewCounterVec(prometheus.CounterOpts{
		Name: "feedbackproxy_index_lookups_total",
		Help: "Response-id lookups, by result: hit or miss.",
	}, []string{"result"})
	return &Metrics{
		hits:   lookups.WithLabelValues("hit"),
		misses: lookups.WithLabelValues("miss"),
		evictions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_index_evictions_total",
			Help: "Entries removed from the index, by reason: capacity (LRU full) or age (older than the maximum age).",
		}, []string{"reason"}),
		reg: reg,
	}
}

// observe registers the gauges that read ix when scraped.
func (m *Metrics) observe(ix *Index) {
	f := promauto.With(m.reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_index_entries",
		Help: "Response ids currently indexed.",
	}, func() float64 { return float64(ix.Len()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_index_capacity",
		Help: "Maximum number of response ids the index keeps.",
	}, func() float64 { return float64(ix.Cap()) })
}

// observeStore registers the metrics of an index kept in a Store.
func (m *Metrics) observeStore() {
	m.storeErrors = promauto.With(m.reg).NewCounter(prometheus.CounterOpts{
		Name: "feedbackproxy_index_store_errors_total",
		Help: "Index changes that could not be written to the data directory (they are lost on restart).",
	})
}
