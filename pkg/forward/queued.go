package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

// Exporter sends an export upstream and says, with an *otlp.Error, whether
// the client may retry it; *otlp.Exporter is one.
type Exporter interface {
	Export(ctx context.Context, e *otlp.Export) error
}

// Queued sends exports straight upstream while the upstream takes them,
// and into a durable queue while it does not: when Phoenix is down or
// refusing (503, 429, network errors), exports are acknowledged to the app
// once on disk and delivered in order when Phoenix is back, in batches (see
// BatchBytes). Once anything is queued, later exports queue behind it, so
// order is kept.
//
// delivered is called for every export the upstream accepted, whichever way
// it went: that is when its spans are indexed.
//
// A Queued is safe for use by several goroutines once attached: the
// receiver's handlers export through it while its delivery loop drains the
// queue.
type Queued struct {
	// OnCorrupt, if set, is told of damage found on disk, in words. Set it
	// before the queue is opened with Corrupted as its OnCorrupt.
	OnCorrupt func(string)

	q         *queue.Queue // set by Attach
	exporter  Exporter
	delivered func(*otlp.Export)
	log       *slog.Logger
	metrics   *queueMetrics

	minBackoff, maxBackoff time.Duration

	mu      sync.Mutex
	backlog bool // true from the first queued export until the queue is drained
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewQueued returns a forwarder with no queue yet: it does no I/O. Attach
// gives it its queue, Start its delivery loop. Its metrics
// (feedbackproxy_queue_*) are registered with reg.
func NewQueued(exporter Exporter, delivered func(*otlp.Export), reg prometheus.Registerer, log *slog.Logger) *Queued {
	f := &Queued{
		exporter: exporter, delivered: delivered, log: log,
		minBackoff: 250 * time.Millisecond, maxBackoff: 30 * time.Second,
	}
	f.metrics = newQueueMetrics(reg, f)
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

// Attach gives f the queue it holds exports in, opened with a budget of
// capacity bytes (reported as feedbackproxy_queue_capacity_bytes);
// whatever a previous run left there is delivered first.
func (f *Queued) Attach(q *queue.Queue, capacity int64) {
	f.metrics.capacity.Set(float64(capacity))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.q = q
	f.backlog = q.Len() > 0
}

// queue returns the attached queue, nil before Attach.
func (f *Queued) queue() *queue.Queue {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.q
}

// Start runs the delivery loop until Stop.
func (f *Queued) Start() {
	f.wg.Go(f.deliverLoop)
}

// Stop ends the delivery loop; what is still queued stays on disk.
func (f *Queued) Stop() {
	f.cancel()
	f.wg.Wait()
}

// ConsumeTraces is what the receiver hands exports to.
func (f *Queued) ConsumeTraces(ctx context.Context, e *otlp.Export) error {
	return f.Export(ctx, e)
}

// Export sends e straight upstream, or queues it on disk while the
// upstream is unavailable or a backlog waits.
func (f *Queued) Export(ctx context.Context, e *otlp.Export) error {
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

func (f *Queued) enqueue(e *otlp.Export) error {
	err := f.q.Append(recordHeader(e.Project), e.Body)
	switch {
	case err == nil:
		// Behind it, later exports queue. Unless the delivery loop has
		// delivered it already and found the queue empty: then they go
		// straight again.
		f.mu.Lock()
		if f.q.Len() > 0 {
			f.backlog = true
		}
		f.mu.Unlock()
		f.metrics.enqueued.Add(float64(e.Spans))
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

// Batches of the backlog. Exports wait in the queue only while Phoenix is
// down or refusing; once it is back, the backlog is sent in batches
// rather than one request per export: an ExportTraceServiceRequest is one
// repeated field, so consecutive exports of one project concatenate into
// one valid request. 512 KiB of protobuf stays under the 1 MiB that
// reverse proxies in front of Phoenix often take at most (nginx's default
// client_max_body_size) once compressed or not, and a batch Phoenix
// refuses for good is sent again in halves, so that only the exports it
// refuses are dropped. 8192 spans is the Collector's batch processor's
// default. BatchBytes also bounds the memory the delivery loop holds
// (proxy.MemoryBound counts it).
const (
	// halveAfter is how many times in a row a batch may fail with an
	// error worth retrying before it is sent in halves.
	halveAfter   = 3
	batchRecords = 1024
	batchSpans   = 8192
	BatchBytes   = 512 << 10
)

// queuedItem is a record read back from the queue, decoded.
type queuedItem struct {
	rec queue.Record
	e   *otlp.Export
	err error // undecodable: dropped
}

// deliverLoop sends queued exports upstream in order, in batches, retrying
// each until the upstream accepts it or refuses it for good.
func (f *Queued) deliverLoop() {
	backoff := f.minBackoff
	for {
		// Damaged records are skipped by the queue itself, and reported
		// through Corrupted.
		recs, err := f.q.NextBatch(f.ctx, batchRecords, BatchBytes, nil)
		switch {
		case errors.Is(err, queue.ErrClosed) || f.ctx.Err() != nil:
			return
		case err != nil:
			// The disk failed under us: try again later rather than stop
			// delivering until a restart.
			wait := backoff
			backoff = min(backoff*2, f.maxBackoff)
			f.log.Error("cannot read the next queued exports; retrying", "err", err, "retry_in", wait)
			if !f.sleep(wait) {
				return
			}
			continue
		}
		if !f.deliverRecords(recs, &backoff) {
			return
		}
		f.mu.Lock()
		if f.q.Len() == 0 && f.backlog {
			f.backlog = false
			f.log.Info("disk queue drained; exports go straight to Phoenix again")
		}
		f.mu.Unlock()
	}
}

// deliverRecords delivers recs, consecutive records from the head of the
// queue, as batches of one project, each acknowledged once delivered or
// dropped. False when the loop must stop: what is not acknowledged is
// delivered again.
func (f *Queued) deliverRecords(recs []queue.Record, backoff *time.Duration) bool {
	items := make([]queuedItem, len(recs))
	for i, r := range recs {
		items[i].rec = r
		items[i].e, items[i].err = decodeRecord(r.Data)
	}
	for len(items) > 0 {
		if err := items[0].err; err != nil {
			f.log.Error("a queued export cannot be decoded; skipped", "err", err)
			f.metrics.dropped.WithLabelValues("undecodable").Inc()
			f.ack(items[:1])
			items = items[1:]
			continue
		}
		n := batchRun(items)
		if !f.deliver(items[:n], backoff) {
			return false
		}
		items = items[n:]
	}
	return true
}

// batchRun returns how many of items, from the first (decoded), make one
// batch: decoded, of the same project, within the batch bounds; at least
// one.
func batchRun(items []queuedItem) int {
	first := items[0].e
	spans, size := first.Spans, len(first.Body)
	n := 1
	for ; n < len(items) && n < batchRecords; n++ {
		e := items[n].e
		if items[n].err != nil || e.Project != first.Project {
			break
		}
		spans, size = spans+e.Spans, size+len(e.Body)
		if spans > batchSpans || size > BatchBytes {
			break
		}
	}
	return n
}

// deliver sends run as one export until Phoenix takes it or refuses it
// for good; refused, a run of several is delivered again one half at a
// time. The records are acknowledged once delivered or dropped. False
// when the loop must stop.
func (f *Queued) deliver(run []queuedItem, backoff *time.Duration) bool {
	e := batchExport(run)
	for failures := 0; ; {
		err := f.exporter.Export(f.ctx, e)
		if f.ctx.Err() != nil {
			return false
		}
		var oe *otlp.Error
		switch {
		case err == nil:
			*backoff = f.minBackoff
			f.delivered(e)
		case errors.As(err, &oe) && otlp.Retryable(oe.Code) && failures >= halveAfter && len(run) > 1:
			// A batch no export alone would have made may be what fails
			// (too large to go through in time, a proxy in front of
			// Phoenix that times it out): halves, nothing dropped.
			half := len(run) / 2
			return f.deliver(run[:half], backoff) && f.deliver(run[half:], backoff)
		case errors.As(err, &oe) && otlp.Retryable(oe.Code):
			failures++
			wait := max(*backoff, oe.RetryAfter)
			*backoff = min(*backoff*2, f.maxBackoff)
			f.log.Debug("upstream still unavailable", "err", err, "retry_in", wait, "queued", f.q.Len())
			if !f.sleep(wait) {
				return false
			}
			continue
		case len(run) > 1:
			// Phoenix may refuse a batch for one export of it, or for its
			// size: halves find which, and keep the rest.
			half := len(run) / 2
			return f.deliver(run[:half], backoff) && f.deliver(run[half:], backoff)
		default:
			// The app was told we had its spans; Phoenix refuses them for good.
			// There is nobody left to tell but the operator.
			f.log.Error("Phoenix refused a queued export for good; its spans are dropped", "spans", e.Spans, "err", err)
			f.metrics.dropped.WithLabelValues("refused").Add(float64(e.Spans))
		}
		f.ack(run)
		return true
	}
}

// batchExport is run as one export: its bodies one after the other.
func batchExport(run []queuedItem) *otlp.Export {
	if len(run) == 1 {
		return run[0].e
	}
	size, spans := 0, 0
	for _, it := range run {
		size, spans = size+len(it.e.Body), spans+it.e.Spans
	}
	body := make([]byte, 0, size)
	for _, it := range run {
		body = append(body, it.e.Body...)
	}
	return &otlp.Export{Project: run[0].e.Project, Body: body, Spans: spans, Transport: "queue"}
}

// ack acknowledges run's records, in one write of the queue's position.
func (f *Queued) ack(run []queuedItem) {
	recs := make([]queue.Record, len(run))
	for i, it := range run {
		recs[i] = it.rec
	}
	if err := f.q.Ack(recs...); err != nil {
		f.log.Error("cannot acknowledge delivered exports; they will be sent again after a restart", "err", err)
	}
}

// sleep waits d, or until stop; false when stopped.
func (f *Queued) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// Corrupted reports damage the queue found on disk, as the queue's
// OnCorrupt: the queue logged it already; here it is counted, and told to
// OnCorrupt, whoever reports it on (/readyz).
func (f *Queued) Corrupted(c queue.Corruption) {
	f.metrics.corruptions.WithLabelValues(c.Kind.String()).Inc()
	f.metrics.corruptBytes.Add(float64(c.Bytes))
	if f.OnCorrupt == nil {
		return
	}
	switch c.Kind {
	case queue.AckLost:
		f.OnCorrupt(fmt.Sprintf("queue: the acknowledged position in %s was lost: every queued export is sent again (Phoenix may get some twice)", c.File))
	case queue.TornTail:
		f.OnCorrupt(fmt.Sprintf("queue: a torn end of %d bytes was cut off %s at offset %d (an append cut short)", c.Bytes, c.File, c.Offset))
	default:
		f.OnCorrupt(fmt.Sprintf("queue: %d damaged bytes skipped in %s at offset %d; the exports they held are lost", c.Bytes, c.File, c.Offset))
	}
}
