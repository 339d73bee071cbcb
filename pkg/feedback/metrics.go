package feedback

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the feedback service's Prometheus metrics.
type Metrics struct {
	received prometheus.Counter
	ended    *prometheus.CounterVec
	attempts *prometheus.CounterVec
	latency  prometheus.Histogram
	reg      prometheus.Registerer
}

// NewMetrics registers the feedback metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		received: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_received_total",
			Help: "Feedbacks accepted by POST /feedback.",
		}),
		ended: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_total",
			Help: "Feedbacks that ended, by outcome: annotated, failed or expired.",
		}, []string{"outcome"}),
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_annotate_attempts_total",
			Help: "Annotation requests to Phoenix, by result: ok, span_not_found (not ingested yet), retryable, permanent.",
		}, []string{"result"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "feedbackproxy_feedback_annotate_latency_seconds",
			Help:    "Time from receiving a feedback to Phoenix confirming its annotation.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12),
		}),
		reg: reg,
	}
	for _, o := range []State{Annotated, Failed, Expired} {
		m.ended.WithLabelValues(string(o))
	}
	return m
}

func (m *Metrics) observe(s *Service) {
	promauto.With(m.reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_feedback_pending",
		Help: "Feedbacks waiting for their span or for Phoenix.",
	}, func() float64 { return float64(s.Pending()) })
}
