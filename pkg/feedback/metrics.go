package feedback

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the feedback service's Prometheus metrics, updated from its
// goroutines (Prometheus collectors are safe for concurrent use).
type Metrics struct {
	received  prometheus.Counter
	ended     *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	evictions *prometheus.CounterVec
	// tokenRefused counts requests refused for their per-response token.
	tokenRefused *prometheus.CounterVec
	latency      prometheus.Histogram
	reg          prometheus.Registerer
}

// Why an ended feedback was forgotten, as the evictions metric counts it.
const (
	evictedCount = "max_finished"
	evictedBytes = "max_bytes"
)

// NewMetrics registers the feedback metrics with reg. With a nil reg they
// are registered nowhere: New uses that when given no Metrics, so that the
// service counts without asking whether anyone reads.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		received: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_received_total",
			Help: "Feedbacks accepted by POST /feedback.",
		}),
		ended: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_total",
			Help: "Feedbacks that ended, by outcome: annotated, failed, expired or superseded (a newer vote for the same key, taken by another replica, is written instead).",
		}, []string{"outcome"}),
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_annotate_attempts_total",
			Help: "Annotation requests to Phoenix, by result: ok, unreadable_answer (2xx, stored, but the answer could not be read), span_not_found (not ingested yet), no_session (feedback on a session, the trace in none yet), retryable, permanent.",
		}, []string{"result"}),
		evictions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_evictions_total",
			Help: "Ended feedbacks forgotten (GET no longer shows them), by reason: max_finished (too many kept) or max_bytes (their memory was needed).",
		}, []string{"reason"}),
		tokenRefused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_feedback_token_refused_total",
			Help: "Feedback refused for its per-response token, by reason: expired, unknown_key (retired or foreign), bad_signature (changed or forged), malformed or out_of_scope (another response, identifier, name or annotator kind). Tokens over their rate are counted by the rate limiter.",
		}, []string{"reason"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "feedbackproxy_feedback_annotate_latency_seconds",
			Help:    "Time from receiving a feedback to Phoenix confirming its annotation.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12),
		}),
		reg: reg,
	}
	for _, o := range []State{Annotated, Failed, Expired, Superseded} {
		m.ended.WithLabelValues(string(o))
	}
	for _, r := range []string{evictedCount, evictedBytes} {
		m.evictions.WithLabelValues(r)
	}
	for _, r := range []string{"expired", "unknown_key", "bad_signature", "malformed", "out_of_scope"} {
		m.tokenRefused.WithLabelValues(r)
	}
	return m
}

// observe registers the gauges that read s when scraped: the size,
// capacity and evictions trio of a stateful component, in feedbacks and in
// bytes.
func (m *Metrics) observe(s *Service) {
	f := promauto.With(m.reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_feedback_pending",
		Help: "Feedbacks waiting for their span or for Phoenix.",
	}, func() float64 { return float64(s.Pending()) })
	for _, state := range []string{"pending", "ended"} {
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "feedbackproxy_feedback_bytes",
			Help:        "Memory held for feedback, as estimated per feedback (strings, metadata JSON, fixed overhead), by state: pending, or ended (kept for GET).",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 {
			pending, ended := s.heldBytes()
			if state == "pending" {
				return float64(pending)
			}
			return float64(ended)
		})
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_feedback_capacity_bytes",
		Help: "Most bytes held for feedback, pending and ended (MaxBytes): past it pending feedback is refused and ended feedback forgotten.",
	}, func() float64 { return float64(s.cfg.MaxBytes) })
}
