package tlsconfig

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics count the reloads of certificate files. It is safe for
// concurrent use.
type Metrics struct {
	reloads *prometheus.CounterVec
	expiry  *prometheus.GaugeVec
}

// NewMetrics registers the TLS metrics with reg; nil registers them
// nowhere (they still count, unseen).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_tls_reloads_total",
			Help: "Certificate files loaded, at start and whenever their contents changed, by whose they are (listeners, phoenix), " +
				"kind (certificate, ca) and outcome (loaded; failed: the previous contents stay in use, see the log).",
		}, []string{"source", "kind", "outcome"}),
		expiry: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedbackproxy_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate in use expires (its NotAfter, in Unix seconds), by whose it is (listeners, phoenix).",
		}, []string{"source"}),
	}
}
