package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/ratelimit"
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

// guardMetrics count the requests refused in front of the feedback API
// (CORS, rate limits) and show the rate limits' buckets.
type guardMetrics struct {
	reg     prometheus.Registerer
	refused *prometheus.CounterVec
}

func newGuardMetrics(reg prometheus.Registerer) *guardMetrics {
	return &guardMetrics{reg: reg, refused: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "feedbackproxy_feedback_refused_total",
		Help: "Feedback API requests refused before they were handled, by reason: rate_address, rate_network and rate_token (429, --feedback-rate-per-*; a network is an IPv4 /24 or an IPv6 /48), " +
			"cors_origin (403, an Origin not in --cors-allowed-origins), cors_method and cors_headers (403, a preflight asking for more than the API takes), " +
			"cors_mint (403, a page calling POST /feedback/tokens), cors_off (403, a write from another origin while no --cors-allowed-origins is set).",
	}, []string{"reason"})}
}

// watch shows the size, capacity and evictions of a rate limit's buckets.
func (m *guardMetrics) watch(limit string, l *ratelimit.Limiter) {
	f := promauto.With(m.reg)
	labels := prometheus.Labels{"limit": limit}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_ratelimit_buckets", ConstLabels: labels,
		Help: "Token buckets a feedback API rate limit holds, by limit (address, token).",
	}, func() float64 { return float64(l.Len()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_ratelimit_capacity", ConstLabels: labels,
		Help: "Most token buckets a feedback API rate limit holds (--feedback-rate-max-keys), by limit.",
	}, func() float64 { return float64(l.Cap()) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "feedbackproxy_ratelimit_evictions_total", ConstLabels: labels,
		Help: "Token buckets a feedback API rate limit forgot to make room for others, by limit; a bucket forgotten before it refilled gives its client a fresh burst.",
	}, func() float64 { return float64(l.Evictions()) })
}
