package seek

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the Seeker's Prometheus metrics.
type Metrics struct {
	lookups *prometheus.CounterVec
	found   *prometheus.CounterVec
	reg     prometheus.Registerer
}

// NewMetrics registers the Seeker's metrics with reg; nil registers
// nowhere.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		lookups: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_seek_lookups_total",
			Help: "Response ids that waiting feedback looked up beyond this replica's index, by source (shared, phoenix) and result (hit, miss, error).",
		}, []string{"source", "result"}),
		found: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_seek_found_total",
			Help: "Spans found beyond this replica's index for waiting feedback, by how: shared (a lookup), announcement (another replica's), phoenix.",
		}, []string{"via"}),
		reg: reg,
	}
}

func (m *Metrics) observe(k *Seeker) {
	for _, r := range []*run{k.shared, k.phoenix} {
		if r == nil {
			continue
		}
		promauto.With(m.reg).NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "feedbackproxy_seek_scheduled",
			Help:        "Response ids scheduled for another lookup, by source.",
			ConstLabels: prometheus.Labels{"source": r.name},
		}, func() float64 { return float64(r.len()) })
	}
}
