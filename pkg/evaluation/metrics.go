package evaluation

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics counts the log records the consumer was given.
type Metrics struct {
	records *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg; nil registers them nowhere.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{records: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "feedbackproxy_evaluation_log_records_total",
		Help: "OTLP log records received, by transport (grpc, http) and outcome: accepted (evaluation events taken as feedback), " +
			"not_evaluation and invalid (rejected in the answer's partial success), or the OTLP code the export was refused with.",
	}, []string{"transport", "outcome"})}
}

func (m *Metrics) add(transport, outcome string, n int) {
	if n > 0 {
		m.records.WithLabelValues(transport, outcome).Add(float64(n))
	}
}
