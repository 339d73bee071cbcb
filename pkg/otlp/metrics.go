package otlp

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics counts what the receiver took and what the exporter sent.
type Metrics struct {
	receivedSpans    *prometheus.CounterVec
	exportedSpans    *prometheus.CounterVec
	exportDuration   *prometheus.HistogramVec
	upstreamRejected prometheus.Counter
	inflightBytes    prometheus.Gauge
	overloaded       *prometheus.CounterVec
	refusedConns     *prometheus.CounterVec
}

// NewMetrics registers the OTLP metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		receivedSpans: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_receiver_spans_total",
			Help: "Spans received from apps, by transport (grpc, http) and outcome (accepted, or the OTLP code they were refused with).",
		}, []string{"transport", "outcome"}),
		exportedSpans: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_exporter_spans_total",
			Help: "Spans sent upstream, by outcome (sent, or the OTLP code of the failure).",
		}, []string{"outcome"}),
		exportDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedbackproxy_exporter_request_duration_seconds",
			Help:    "Duration of export requests to the upstream, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"outcome"}),
		inflightBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackproxy_receiver_inflight_bytes",
			Help: "Decompressed bytes of the exports being worked on now (bounded by --max-inflight-bytes).",
		}),
		overloaded: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_receiver_overloaded_requests_total",
			Help: "Export requests refused with 429 / ResourceExhausted because the in-flight byte budget was spent, by transport.",
		}, []string{"transport"}),
		refusedConns: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_receiver_refused_connections_total",
			Help: "Connections closed at once because the listener had --max-connections open, by transport.",
		}, []string{"transport"}),
		upstreamRejected: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_exporter_upstream_rejected_spans_total",
			Help: "Spans the upstream accepted the request for but reported as rejected (OTLP partial success).",
		}),
	}
}

// setInflight reports the bytes of the in-flight budget in use; m may be
// nil.
func (m *Metrics) setInflight(used int64) {
	if m != nil {
		m.inflightBytes.Set(float64(used))
	}
}

func outcome(err error) string {
	if err == nil {
		return "accepted"
	}
	return statusOf(err).Code().String()
}

func (m *Metrics) received(transport string, spans int, err error) {
	m.receivedSpans.WithLabelValues(transport, outcome(err)).Add(float64(spans))
}

func (m *Metrics) exported(spans int, seconds float64, err error) {
	o := "sent"
	if err != nil {
		o = statusOf(err).Code().String()
	}
	m.exportedSpans.WithLabelValues(o).Add(float64(spans))
	m.exportDuration.WithLabelValues(o).Observe(seconds)
}
