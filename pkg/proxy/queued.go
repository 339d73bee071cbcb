package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

// queuedForwarder sends exports straight upstream while the upstream takes
// them, and into a durable queue while it does not: when Phoenix is down or
// refusing (503, 429, network errors), exports are acknowledged to the app
// once on disk and delivered in order when Phoenix is back. Once anything is
// queued, later exports queue behind it, so order is kept.
//
// delivered is called for every export the upstream accepted, whichever way
// it went: that is when its spans are indexed.
type queuedForwarder struct {
	q         *queue.Queue // set by attach
	exporter  Forwarder
	delivered func(*otlp.Export)
	log       *slog.Logger
	metrics   *queueMetrics
	// onCorrupt, if set, is told of damage found on disk, in words.
	onCorrupt func(string)

	minBackoff, maxBackoff time.Duration

	mu      sync.Mutex
	backlog bool // true from the first queued export until the queue is drained
	wake    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// newQueuedForwarder returns a forwarder with no queue yet: it does no
// I/O. attach gives it its queue, start its delivery loop.
func newQueuedForwarder(exporter Forwarder, delivered func(*otlp.Export), reg prometheus.Registerer, log *slog.Logger) *queuedForwarder {
	f := &queuedForwarder{
		exporter: exporter, delivered: delivered, log: log,
		minBackoff: 250 * time.Millisecond, maxBackoff: 30 * time.Second,
		wake: make(chan struct{}, 1),
	}
	f.metrics = newQueueMetrics(reg, f)
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

// attach gives f the queue it holds exports in; whatever a previous run
// left there is delivered first.
func (f *queuedForwarder) attach(q *queue.Queue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.q = q
	f.backlog = q.Len() > 0
}

// queue returns the attached queue, nil before attach.
func (f *queuedForwarder) queue() *queue.Queue {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.q
}

// start runs the delivery loop until stop.
func (f *queuedForwarder) start() {
	f.wg.Go(f.deliverLoop)
}

// stop ends the delivery loop; what is still queued stays on disk.
func (f *queuedForwarder) stop() {
	f.cancel()
	f.wg.Wait()
}

// ConsumeTraces is what the receiver hands exports to.
func (f *queuedForwarder) ConsumeTraces(ctx context.Context, e *otlp.Export) error {
	return f.Export(ctx, e)
}

func (f *queuedForwarder) Export(ctx context.Context, e *otlp.Export) error {
	f.mu.Lock()
	backlog := f.backlog
	f.mu.Unlock()
	if !backlog {
		err := f.exporter.Export(ctx, e)
		if err == nil {
			f.delivered(e)
			return nil
		}
		var oe *otlp.Error
		if !errors.As(err, &oe) || !otlp.Retryable(oe.Code) {
			return err // a permanent refusal: the app must hear it, queuing would not help
		}
		f.log.Warn("upstream unavailable; queuing exports on disk", "err", err)
	}
	return f.enqueue(e)
}

func (f *queuedForwarder) enqueue(e *otlp.Export) error {
	err := f.q.Append(encodeRecord(e.Project, e.Body))
	switch {
	case err == nil:
		f.mu.Lock()
		f.backlog = true
		f.mu.Unlock()
		f.metrics.enqueued.Add(float64(e.Spans))
		select {
		case f.wake <- struct{}{}:
		default:
		}
		return nil
	case errors.Is(err, queue.ErrFull):
		f.metrics.refused.Inc()
		return &otlp.Error{Code: codes.ResourceExhausted, RetryAfter: 5 * time.Second,
			Msg: "the proxy's disk queue is full while Phoenix is unavailable; retry later"}
	case errors.Is(err, queue.ErrTooLarge):
		return otlp.Errorf(codes.InvalidArgument, "the export is larger than the proxy's whole disk queue")
	default:
		return &otlp.Error{Code: codes.Unavailable, RetryAfter: 5 * time.Second, Msg: "cannot queue the export: " + err.Error()}
	}
}

// deliverLoop sends queued exports upstream in order, retrying each until
// the upstream accepts it or refuses it for good.
func (f *queuedForwarder) deliverLoop() {
	backoff := f.minBackoff
	for {
		// Damaged records are skipped by the queue itself, and reported
		// through corrupted.
		rec, err := f.q.Next(f.ctx)
		switch {
		case errors.Is(err, queue.ErrClosed) || f.ctx.Err() != nil:
			return
		case err != nil:
			// The disk failed under us: try again later rather than stop
			// delivering until a restart.
			wait := backoff
			backoff = min(backoff*2, f.maxBackoff)
			f.log.Error("cannot read the next queued export; retrying", "err", err, "retry_in", wait)
			if !f.sleep(wait) {
				return
			}
			continue
		}
		e, err := decodeRecord(rec.Data)
		if err != nil {
			f.log.Error("a queued export cannot be decoded; skipped", "err", err)
			f.metrics.dropped.WithLabelValues("undecodable").Inc()
			_ = f.q.Ack(rec)
			continue
		}
		err = f.exporter.Export(f.ctx, e)
		if f.ctx.Err() != nil {
			return
		}
		var oe *otlp.Error
		switch {
		case err == nil:
			f.delivered(e)
			backoff = f.minBackoff
		case errors.As(err, &oe) && otlp.Retryable(oe.Code):
			wait := max(backoff, oe.RetryAfter)
			backoff = min(backoff*2, f.maxBackoff)
			f.log.Debug("upstream still unavailable", "err", err, "retry_in", wait, "queued", f.q.Len())
			if !f.sleep(wait) {
				return
			}
			continue
		default:
			// The app was told we had its spans; Phoenix refuses them for good.
			// There is nobody left to tell but the operator.
			f.log.Error("Phoenix refused a queued export for good; its spans are dropped", "spans", e.Spans, "err", err)
			f.metrics.dropped.WithLabelValues("refused").Add(float64(e.Spans))
		}
		if err := f.q.Ack(rec); err != nil {
			f.log.Error("cannot acknowledge a delivered export; it will be sent again after a restart", "err", err)
		}
		f.mu.Lock()
		if f.q.Len() == 0 {
			f.backlog = false
			f.log.Info("disk queue drained; exports go straight to Phoenix again")
		}
		f.mu.Unlock()
	}
}

// sleep waits d, or until stop; false when stopped.
func (f *queuedForwarder) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// corrupted reports damage the queue found on disk: it logged it already;
// here it is counted, and told to whoever reports it on (/readyz).
func (f *queuedForwarder) corrupted(c queue.Corruption) {
	f.metrics.corruptions.WithLabelValues(c.Kind.String()).Inc()
	f.metrics.corruptBytes.Add(float64(c.Bytes))
	if f.onCorrupt == nil {
		return
	}
	switch c.Kind {
	case queue.AckLost:
		f.onCorrupt(fmt.Sprintf("queue: the acknowledged position in %s was lost: every queued export is sent again (Phoenix may get some twice)", c.File))
	case queue.TornTail:
		f.onCorrupt(fmt.Sprintf("queue: a torn end of %d bytes was cut off %s at offset %d (an append cut short)", c.Bytes, c.File, c.Offset))
	default:
		f.onCorrupt(fmt.Sprintf("queue: %d damaged bytes skipped in %s at offset %d; the exports they held are lost", c.Bytes, c.File, c.Offset))
	}
}

// A queued record is: version byte, project length (uint16), project, the
// export in OTLP protobuf.
const recordVersion = 1

func encodeRecord(project string, body []byte) []byte {
	if len(project) > 0xffff {
		project = project[:0xffff]
	}
	b := make([]byte, 0, 3+len(project)+len(body))
	b = append(b, recordVersion)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(project)))
	b = append(b, project...)
	return append(b, body...)
}

func decodeRecord(b []byte) (*otlp.Export, error) {
	if len(b) < 3 || b[0] != recordVersion {
		return nil, errors.New("unknown record version")
	}
	n := int(binary.LittleEndian.Uint16(b[1:3]))
	if len(b) < 3+n {
		return nil, fmt.Errorf("record of %d bytes is shorter than its project name", len(b))
	}
	e := &otlp.Export{Project: string(b[3 : 3+n]), Body: b[3+n:], Transport: "queue"}
	var err error
	if e.Spans, err = wire.Scan(e.Body, nil); err != nil {
		return nil, err
	}
	return e, nil
}

type queueMetrics struct {
	capacity     prometheus.Gauge
	corruptions  *prometheus.CounterVec
	corruptBytes prometheus.Counter
	enqueued     prometheus.Counter
	refused      prometheus.Counter
	dropped      *prometheus.CounterVec
}

func newQueueMetrics(reg prometheus.Registerer, f *queuedForwarder) *queueMetrics {
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
