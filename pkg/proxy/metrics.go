package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
)

// storeMetrics say what the start found of the data directory's state.db.
type storeMetrics struct {
	damaged   prometheus.Counter
	recovered *prometheus.GaugeVec
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	f := promauto.With(reg)
	return &storeMetrics{
		damaged: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_store_damaged_total",
			Help: "Damaged state.db files found at start, moved aside and salvaged (see /readyz and the log).",
		}),
		recovered: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedbackproxy_store_recovered_records",
			Help: "Records of a damaged state.db found at start, by kind (feedback, index) and outcome (salvaged, lost); lost counts only those known lost.",
		}, []string{"kind", "outcome"}),
	}
}

func (m *storeMetrics) report(r *store.Recovery) {
	m.damaged.Inc()
	m.recovered.WithLabelValues("feedback", "salvaged").Set(float64(r.FeedbackSalvaged))
	m.recovered.WithLabelValues("feedback", "lost").Set(float64(r.FeedbackLost))
	m.recovered.WithLabelValues("index", "salvaged").Set(float64(r.IndexSalvaged))
	m.recovered.WithLabelValues("index", "lost").Set(float64(r.IndexLost))
}
