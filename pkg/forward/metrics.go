package forward

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

type queueMetrics struct {
	capacity     prometheus.Gauge
	corruptions  *prometheus.CounterVec
	corruptBytes prometheus.Counter
	enqueued     prometheus.Counter
	refused      prometheus.Counter
	dropped      *prometheus.CounterVec
}

func newQueueMetrics(reg prometheus.Registerer, f *Queued) *queueMetrics {
	fac := promauto.With(reg)
	// The gauges read the queue once it is attached, zero before.
	read := func(get func(*queue.Queue) float64) func() float64 {
		return func() float64 {
			if q := f.queue(); q != nil {
				return get(q)
			}
			return 0
		}
	}
	fac.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_queue_bytes", Help: "Bytes of exports waiting in the disk queue for Phoenix.",
	}, read(func(q *queue.Queue) float64 { return float64(q.Bytes()) }))
	fac.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackproxy_queue_exports", Help: "Exports waiting in the disk queue.",
	}, read(func(q *queue.Queue) float64 { return float64(q.Len()) }))
	return &queueMetrics{
		capacity: fac.NewGauge(prometheus.GaugeOpts{
			Name: "feedbackproxy_queue_capacity_bytes", Help: "Budget of the disk queue.",
		}),
		corruptions: fac.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_queue_corruptions_total",
			Help: "Damage found in the disk queue, by kind: records (damaged records skipped, lost), torn_tail (an append cut short, cut off), ack_lost (the acknowledged position lost: everything sent again).",
		}, []string{"kind"}),
		corruptBytes: fac.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_queue_corrupt_bytes_total",
			Help: "Bytes of the disk queue skipped because they were damaged (each skip is logged with its segment and offset).",
		}),
		enqueued: fac.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_queue_enqueued_spans_total", Help: "Spans queued on disk while Phoenix was unavailable.",
		}),
		refused: fac.NewCounter(prometheus.CounterOpts{
			Name: "feedbackproxy_queue_refused_exports_total", Help: "Exports refused (429) because the disk queue was full.",
		}),
		dropped: fac.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackproxy_queue_dropped_total",
			Help: "Queued spans (or records) dropped, by reason: refused (Phoenix refused them for good), undecodable (records); damaged bytes are feedbackproxy_queue_corrupt_bytes_total.",
		}, []string{"reason"}),
	}
}
