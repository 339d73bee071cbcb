package sharedindex

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the shared index's Prometheus metrics.
type Metrics struct {
	writes        *prometheus.CounterVec
	lookups       *prometheus.CounterVec
	errors        *prometheus.CounterVec
	dropped       prometheus.Counter
	notifications prometheus.Counter
	superseded    prometheus.Counter
	unordered     prometheus.Counter
	duration      *prometheus.HistogramVec
	reg           prometheus.Registerer
}

// NewMetrics registers the shared index's metrics with reg; nil registers
// nowhere.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		writes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_writes_total",
			Help: "Entries sent to the shared index, by result: written, kept (an inner span of the same trace was there), expired (older than the max age before it could be written).",
		}, []string{"result"}),
		lookups: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_lookups_total",
			Help: "Response ids looked up in the shared index, by result: hit, miss, error, unreadable.",
		}, []string{"result"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_errors_total",
			Help: "Calls to Redis that failed, by operation: write, lookup, subscribe, vote.",
		}, []string{"op"}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_backlog_dropped_total",
			Help: "Entries dropped from the backlog, full while Redis was unreachable; this replica's own index still holds them.",
		}),
		notifications: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_notifications_total",
			Help: "Announcements of entries written by any replica (this one included) received on the shared index's channel; only those of ids this replica waits for are decoded.",
		}),
		superseded: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_votes_superseded_total",
			Help: "Votes not written because another replica took a newer vote for the same response, name and identifier.",
		}),
		unordered: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_shared_index_votes_unordered_total",
			Help: "Votes recorded or written without ordering against other replicas' (Redis unreachable, or a lock held past its time).",
		}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedbackproxy_shared_index_call_duration_seconds",
			Help:    "Round trips to Redis, by operation: write (one pipeline), lookup (one MGET).",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
		reg: reg,
	}
}

func (m *Metrics) observe(s *Index) {
	f := promauto.With(m.reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_shared_index_up",
		Help: "1 when the last call of every kind to the shared index succeeded, 0 when it is degraded.",
	}, s.up)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_shared_index_backlog",
		Help: "Entries waiting to be written to the shared index.",
	}, func() float64 { return float64(s.Backlog()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_shared_index_backlog_capacity",
		Help: "The most entries that may wait to be written to the shared index.",
	}, func() float64 { return float64(s.cfg.MaxBacklog) })
}
