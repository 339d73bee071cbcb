package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

// queuedForwarder puts every export in a durable queue and answers the app
// once it is there; a delivery loop sends the queue to Phoenix in order, in
// batches. An ExportTraceServiceRequest is one repeated field, so
// consecutive exports of one project concatenate into one valid request,
// and their gzip bytes, as the clients sent them, into one gzip stream
// (RFC 1952: members one after the other): a batch is one request to
// Phoenix and one write to the index where the exports would each have
// been one, which is most of what an export costs the proxy once it is
// read (docs/benchmarks.md). A batch waits for more exports for its linger
// (100 ms) at most, less once a full batch is queued.
//
// When Phoenix is down or refusing for a while (503, 429, network errors),
// the queue holds the exports, up to its budget, and delivers them when it
// is back. When Phoenix refuses a batch for good, its exports are sent one
// by one, and an export refused for good is dropped, logged and counted:
// the app was answered already. A refusal that is not about the export
// (401, 403, 404: the proxy's own configuration) is also told to the apps
// from then on: their exports are sent straight to Phoenix, and they hear
// Phoenix's answer as they would without a data directory, until an export
// goes through.
//
// delivered is called for every batch the upstream accepted, whichever way
// it went: that is when its spans are indexed.
type queuedForwarder struct {
	q         *queue.Queue // set by attach
	exporter  Forwarder
	delivered func(*otlp.Export)
	log       *slog.Logger
	metrics   *queueMetrics
	// onCorrupt, if set, is told of damage found on disk, in words.
	onCorrupt func(string)
	// gzipUpstream: the exporter sends gzip, so an export the client sent
	// in gzip is queued as it came, and sent so.
	gzipUpstream bool

	batch                  batchLimits
	minBackoff, maxBackoff time.Duration
	// drainTimeout bounds how long stop delivers what is queued.
	drainTimeout time.Duration

	kept   keptExports
	nonce  uint64 // tells this process's records from a previous one's
	nextID atomic.Uint64
	// The delivery loop's buffers, reused from batch to batch: the records
	// read, and a batch's protobuf and wire bytes.
	readBuf, plainBuf, wireBuf []byte

	mu sync.Mutex
	// refusal is Phoenix's last refusal for good that was not about the
	// export (see refusedForGood); nil once an export goes through.
	refusal error

	wake chan struct{} // a full batch is queued, or the refusal ended
	// flushing ends when stop begins: the loop stops waiting for more and
	// delivers what is queued; ctx ends when it must stop at once.
	flushing   context.Context
	startFlush context.CancelFunc
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// batchLimits bound a batch sent to Phoenix.
type batchLimits struct {
	// linger is how long the first export of a batch waits for others.
	linger time.Duration
	// records, spans, wireBytes (as sent: gzip members, or protobuf) and
	// plainBytes (protobuf) bound a batch; an export over them is sent
	// alone.
	records    int
	spans      int
	wireBytes  int64
	plainBytes int64
}

// Batch limits by default. 512 KiB on the wire stays under the 1 MiB that
// reverse proxies in front of Phoenix often take at most (nginx's default
// client_max_body_size), and a batch refused as too large is sent again
// in halves. 8192 spans is the Collector's batch processor's default.
var defaultBatch = batchLimits{
	linger:     100 * time.Millisecond,
	records:    1024,
	spans:      8192,
	wireBytes:  defaultBatchWireBytes,
	plainBytes: defaultBatchPlainBytes,
}

const (
	defaultBatchWireBytes  = 512 << 10
	defaultBatchPlainBytes = 8 << 20
)

// Bounds of what the forwarder keeps in memory of exports not yet
// delivered: a gzip export's decompressed body (see keptExports).
const (
	maxKeptBytes   = 16 << 20
	maxKeptExports = 1 << 16
)

// QueueMemoryBytes is what a queued forwarder holds in memory besides the
// receiver's budget, at most: the bodies it keeps, and the batch it sends
// (its records as read from disk, its protobuf and its wire bytes; a
// single export over the batch limits, up to the receiver's
// MaxRequestBytes, comes on top).
const QueueMemoryBytes = maxKeptBytes + readBufBytes + defaultBatchPlainBytes + defaultBatchWireBytes

// newQueuedForwarder returns a forwarder with no queue yet: it does no
// I/O. attach gives it its queue, start its delivery loop.
func newQueuedForwarder(exporter Forwarder, delivered func(*otlp.Export), reg prometheus.Registerer, log *slog.Logger) *queuedForwarder {
	f := &queuedForwarder{
		exporter: exporter, delivered: delivered, log: log, batch: defaultBatch,
		minBackoff: 250 * time.Millisecond, maxBackoff: 30 * time.Second, drainTimeout: 5 * time.Second,
		wake: make(chan struct{}, 1),
	}
	if c, ok := exporter.(interface{ Compression() string }); ok {
		f.gzipUpstream = c.Compression() == "gzip"
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	f.nonce = binary.LittleEndian.Uint64(b[:])
	f.kept.m = map[uint64]keptExport{}
	f.metrics = newQueueMetrics(reg, f)
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.flushing, f.startFlush = context.WithCancel(context.Background())
	return f
}

// attach gives f the queue it holds exports in; whatever a previous run
// left there is delivered first.
func (f *queuedForwarder) attach(q *queue.Queue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.q = q
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

// stop delivers what is queued, without waiting for more, for drainTimeout
// at most (Phoenix down, it stops at the first failure), then ends the
// delivery loop: what is still queued stays on disk for the next start.
// Exports must no longer come: the receiver has stopped.
func (f *queuedForwarder) stop() {
	f.startFlush()
	t := time.AfterFunc(f.drainTimeout, f.cancel)
	f.wg.Wait()
	t.Stop()
	f.cancel()
}

// ConsumeTraces is what the receiver hands exports to.
func (f *queuedForwarder) ConsumeTraces(ctx context.Context, e *otlp.Export) error {
	return f.Export(ctx, e)
}

func (f *queuedForwarder) Export(ctx context.Context, e *otlp.Export) error {
	f.mu.Lock()
	refused := f.refusal != nil
	f.mu.Unlock()
	if refused {
		return f.exportDirect(ctx, e)
	}
	return f.enqueue(e)
}

// exportDirect sends e straight to Phoenix, while it refuses exports for a
// reason that is not theirs: the app hears the answer. One that goes
// through ends that; one Phoenix cannot take now is queued.
func (f *queuedForwarder) exportDirect(ctx context.Context, e *otlp.Export) error {
	err := f.exporter.Export(ctx, e)
	if err == nil {
		f.setRefusal(nil)
		f.delivered(e)
		return nil
	}
	if !retryable(err) {
		return err
	}
	return f.enqueue(e)
}

func (f *queuedForwarder) setRefusal(err error) {
	f.mu.Lock()
	was := f.refusal
	f.refusal = err
	f.mu.Unlock()
	switch {
	case err != nil && was == nil:
		f.log.Error("Phoenix refuses exports for a reason that is not theirs; apps are told so until one goes through", "err", err)
	case err == nil && was != nil:
		f.log.Info("Phoenix takes exports again; they go through the disk queue")
		f.signal()
	}
}

func (f *queuedForwarder) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *queuedForwarder) enqueue(e *otlp.Export) error {
	h := recordHeader{project: e.Project, spans: e.Spans, plainLen: len(e.Body), nonce: f.nonce, id: f.nextID.Add(1)}
	payload := e.Body
	if f.gzipUpstream && e.Gzipped != nil {
		h.gzip, payload = true, e.Gzipped
	}
	// Kept before it is appended: the delivery loop may read it at once.
	f.kept.add(h, e.Body)
	err := f.q.Append(h.encode(), payload)
	switch {
	case err == nil:
		f.metrics.enqueued.Add(float64(e.Spans))
		// The delivery loop waits for a full batch, or the linger: woken
		// only for the first, not at every export.
		if f.batchFull() {
			f.signal()
		}
		return nil
	case errors.Is(err, queue.ErrFull):
		f.kept.release(h.id)
		f.metrics.refused.Inc()
		return &otlp.Error{Code: codes.ResourceExhausted, RetryAfter: 5 * time.Second,
			Msg: "the proxy's disk queue is full while Phoenix is unavailable; retry later"}
	case errors.Is(err, queue.ErrTooLarge):
		f.kept.release(h.id)
		return otlp.Errorf(codes.InvalidArgument, "the export is larger than the proxy's whole disk queue")
	default:
		f.kept.release(h.id)
		return &otlp.Error{Code: codes.Unavailable, RetryAfter: 5 * time.Second, Msg: "cannot queue the export: " + err.Error()}
	}
}

// deliverLoop sends the queue upstream in order, a batch at a time,
// retrying each until the upstream accepts it or refuses it for good.
func (f *queuedForwarder) deliverLoop() {
	backoff := f.minBackoff
	f.readBuf = make([]byte, readBufBytes)
	for {
		// Damaged records are skipped by the queue itself, and reported
		// through corrupted. Once flushing, an empty queue ends the loop.
		err := f.q.Wait(f.flushing)
		if err == nil {
			f.linger()
			var recs []queue.Record
			recs, err = f.q.NextBatch(f.ctx, f.batch.records, f.batch.wireBytes, f.readBuf)
			if err == nil {
				if !f.deliverRecords(recs) {
					return
				}
				backoff = f.minBackoff
				continue
			}
		}
		switch {
		case errors.Is(err, queue.ErrClosed) || f.ctx.Err() != nil || f.flushing.Err() != nil:
			return
		default:
			// The disk failed under us: try again later rather than stop
			// delivering until a restart.
			wait := backoff
			backoff = min(backoff*2, f.maxBackoff)
			f.log.Error("cannot read the next queued exports; retrying", "err", err, "retry_in", wait)
			if !f.sleep(wait) {
				return
			}
		}
	}
}

// readBufBytes is a batch's records as the queue reads them: payloads and
// headers.
const readBufBytes = defaultBatchWireBytes + 1024*64

// linger waits until a batch is worth sending: linger from now, or sooner
// once the queue holds a full batch or stop begins. An export waits
// therefore about linger, plus the time to send the batch before it, at
// most, before it is sent.
func (f *queuedForwarder) linger() {
	if f.batch.linger <= 0 {
		return
	}
	t := time.NewTimer(f.batch.linger)
	defer t.Stop()
	for !f.batchFull() {
		select {
		case <-t.C:
			return
		case <-f.wake:
		case <-f.flushing.Done():
			return
		}
	}
}

// batchFull reports whether the queue holds a full batch: no need to wait
// for more.
func (f *queuedForwarder) batchFull() bool {
	return f.q.Len() >= f.batch.records || f.q.Bytes() >= f.batch.wireBytes
}

// item is a record read back from the queue, decoded.
type item struct {
	rec     queue.Record
	h       recordHeader
	payload []byte
	err     error // undecodable: dropped
}

// deliverRecords delivers recs, consecutive records from the head of the
// queue, as batches of one project and one encoding, each acknowledged
// once delivered or dropped. False when the loop must stop: what is not
// acknowledged is delivered again.
func (f *queuedForwarder) deliverRecords(recs []queue.Record) bool {
	items := make([]item, len(recs))
	for i, r := range recs {
		it := &items[i]
		it.rec = r
		it.h, it.payload, it.err = decodeRecordHeader(r.Data)
		// An export from an earlier process is checked again, as the
		// receiver checked it (a gzip one once decompressed, see
		// batchExport): what is indexed must be well formed.
		if it.err == nil && !it.h.gzip && it.h.nonce != f.nonce {
			_, it.err = wire.Scan(it.payload, nil)
		}
	}
	for len(items) > 0 {
		n := f.batch.run(items)
		if !f.deliver(items[:n]) {
			return false
		}
		items = items[n:]
	}
	return true
}

// run returns how many of items, from the first, make one batch: the same
// project and encoding, within the limits; at least one.
func (b batchLimits) run(items []item) int {
	first := items[0]
	if first.err != nil {
		return 1
	}
	spans, wireBytes, plainBytes := first.h.spans, int64(len(first.payload)), int64(first.h.plainLen)
	n := 1
	for ; n < len(items) && n < b.records; n++ {
		it := items[n]
		if it.err != nil || it.h.project != first.h.project || it.h.gzip != first.h.gzip {
			break
		}
		spans, wireBytes, plainBytes = spans+it.h.spans, wireBytes+int64(len(it.payload)), plainBytes+int64(it.h.plainLen)
		if spans > b.spans || wireBytes > b.wireBytes || plainBytes > b.plainBytes {
			break
		}
	}
	return n
}

// deliver sends run as one export until Phoenix takes it or refuses it
// for good; refused, a batch of several is delivered again one half at a
// time, so that only the exports refused are dropped. The records are
// acknowledged once delivered or dropped. False when the loop must stop.
func (f *queuedForwarder) deliver(run []item) bool {
	if err := run[0].err; err != nil {
		f.log.Error("a queued export cannot be decoded; skipped", "err", err)
		f.metrics.dropped.WithLabelValues("undecodable").Inc()
		f.ack(run)
		return true
	}
	e, err := f.batchExport(run)
	if err != nil {
		// A record from an earlier process that does not decode: sent
		// alone, it is dropped as undecodable.
		if len(run) > 1 {
			return f.deliverHalves(run)
		}
		run[0].err = err
		return f.deliver(run)
	}
	backoff := f.minBackoff
	for {
		err := f.exporter.Export(f.ctx, e)
		if f.ctx.Err() != nil {
			return false
		}
		switch {
		case err == nil:
			f.setRefusal(nil)
			f.delivered(e)
			f.ack(run)
			return true
		case retryable(err):
			if f.flushing.Err() != nil {
				return false // stopping: left on disk for the next start
			}
			wait := backoff
			var oe *otlp.Error
			if errors.As(err, &oe) {
				wait = max(wait, oe.RetryAfter)
			}
			backoff = min(backoff*2, f.maxBackoff)
			f.log.Debug("upstream unavailable; the exports wait in the disk queue", "err", err, "retry_in", wait, "queued", f.q.Len())
			if !f.sleep(wait) {
				return false
			}
		case len(run) > 1:
			return f.deliverHalves(run)
		default:
			// The app was told we had its spans; Phoenix refuses them for
			// good. There is nobody left to tell but the operator, and
			// the apps if the refusal is not about this export.
			f.log.Error("Phoenix refused a queued export for good; its spans are dropped", "spans", e.Spans, "err", err)
			f.metrics.dropped.WithLabelValues("refused").Add(float64(e.Spans))
			if refusedForGood(err) {
				f.setRefusal(err)
			}
			f.ack(run)
			return true
		}
	}
}

func (f *queuedForwarder) deliverHalves(run []item) bool {
	half := len(run) / 2
	return f.deliver(run[:half]) && f.deliver(run[half:])
}

// ack acknowledges run's records and forgets what was kept of them.
func (f *queuedForwarder) ack(run []item) {
	recs := make([]queue.Record, len(run))
	for i, it := range run {
		recs[i] = it.rec
		if it.err == nil && it.h.nonce == f.nonce {
			f.kept.release(it.h.id)
		}
	}
	if err := f.q.Ack(recs...); err != nil {
		f.log.Error("cannot acknowledge delivered exports; they will be sent again after a restart", "err", err)
	}
}

// batchExport joins run's exports into one: their bodies one after the
// other, and their gzip members one after the other when they are gzip,
// in the delivery loop's buffers (valid until the next batch). A gzip
// export's body is the one kept when it came, else decompressed from its
// record and checked again, as it comes from the disk.
func (f *queuedForwarder) batchExport(run []item) (*otlp.Export, error) {
	first := run[0].h
	e := &otlp.Export{Project: first.project, Transport: "queue"}
	for _, it := range run {
		e.Spans += it.h.spans
	}
	if len(run) == 1 {
		// One export: its bodies as they are, no copy.
		if !first.gzip {
			e.Body = run[0].payload
			return e, nil
		}
		if kept, ok := f.keptBody(first); ok {
			e.Body, e.Gzipped = kept, run[0].payload
			return e, nil
		}
	}
	plain := f.plainBuf[:0]
	for _, it := range run {
		switch kept, ok := f.keptBody(it.h); {
		case !it.h.gzip:
			plain = append(plain, it.payload...)
		case ok:
			plain = append(plain, kept...)
		default:
			var err error
			if plain, err = gunzipRecord(plain, it.payload, it.h.plainLen); err != nil {
				return nil, err
			}
		}
	}
	e.Body = plain
	if first.gzip {
		e.Gzipped = run[0].payload
		if len(run) > 1 {
			wire := f.wireBuf[:0]
			for _, it := range run {
				wire = append(wire, it.payload...)
			}
			e.Gzipped = wire
			f.wireBuf = keepBuf(wire, defaultBatchWireBytes)
		}
	}
	f.plainBuf = keepBuf(plain, defaultBatchPlainBytes)
	return e, nil
}

// keptBody returns the body kept of the record h, if this process
// appended it and kept it.
func (f *queuedForwarder) keptBody(h recordHeader) ([]byte, bool) {
	if h.nonce != f.nonce {
		return nil, false
	}
	return f.kept.body(h.id)
}

// keepBuf returns b to be reused for the next batch, unless it grew past
// limit for an export over the batch limits: that memory is let go.
func keepBuf(b []byte, limit int) []byte {
	if cap(b) > limit {
		return nil
	}
	return b
}

// gunzipRecord appends to dst a queued gzip export of plainLen bytes,
// decompressed, and checks it, as a record from the disk (written by an
// earlier process) is not known to be what the receiver checked.
func gunzipRecord(dst, gz []byte, plainLen int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return dst, fmt.Errorf("queued gzip export: %w", err)
	}
	start := len(dst)
	dst = slices.Grow(dst, plainLen)[:start+plainLen]
	body := dst[start:]
	if _, err := io.ReadFull(zr, body); err != nil {
		return dst[:start], fmt.Errorf("queued gzip export: %w", err)
	}
	if n, _ := zr.Read(make([]byte, 1)); n != 0 {
		return dst[:start], errors.New("queued gzip export: longer than its record says")
	}
	if _, err := wire.Scan(body, nil); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// keptBufs holds the kept bodies' memory, by size class.
var keptBufs = mem.NewTieredBufferPool(16<<10, 32<<10, 64<<10, 128<<10, 256<<10, 512<<10, 1<<20, 2<<20, 4<<20, 8<<20)

// retryable reports whether an upstream error is worth retrying; an error
// that does not say is.
func retryable(err error) bool {
	var oe *otlp.Error
	return !errors.As(err, &oe) || otlp.Retryable(oe.Code)
}

// refusedForGood reports whether a permanent refusal is about the
// upstream's configuration (authentication, permissions, the endpoint)
// rather than the export refused: then every export would be refused.
func refusedForGood(err error) bool {
	var oe *otlp.Error
	return errors.As(err, &oe) && oe.Code != codes.InvalidArgument
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
	case <-f.flushing.Done():
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

// keptExports are the bodies, decompressed, of the gzip exports this
// process appended and has not delivered yet, by record id, so that
// delivery does not decompress them again to index them. Bounded
// (maxKeptBytes, maxKeptExports): past the bounds nothing is kept, and the
// delivery decompresses the record from the disk. Safe for concurrent use.
type keptExports struct {
	mu    sync.Mutex
	m     map[uint64]keptExport
	bytes int64
}

type keptExport struct {
	body *[]byte
}

// add keeps the body of a gzip record, within the bounds.
func (k *keptExports) add(h recordHeader, body []byte) {
	if !h.gzip {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) >= maxKeptExports || k.bytes+int64(len(body)) > maxKeptBytes {
		return
	}
	e := keptExport{body: keptBufs.Get(len(body))}
	copy(*e.body, body)
	k.bytes += int64(len(body))
	k.m[h.id] = e
}

// take forgets id and returns what was kept of it.
func (k *keptExports) take(id uint64) (keptExport, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[id]
	if ok {
		delete(k.m, id)
		if e.body != nil {
			k.bytes -= int64(len(*e.body))
		}
	}
	return e, ok
}

// release forgets id and recycles its body: once delivered, nothing uses
// it any more.
func (k *keptExports) release(id uint64) {
	if e, ok := k.take(id); ok && e.body != nil {
		keptBufs.Put(e.body)
	}
}

// body returns the body kept of the record id, if any.
func (k *keptExports) body(id uint64) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[id]
	if !ok || e.body == nil {
		return nil, false
	}
	return *e.body, true
}

// The records of the queue. Version 2, written since exports go through the
// queue, is
//
//	version   2
//	flags     1 byte: 1 when the export is the gzip bytes the client sent,
//	          0 when it is protobuf
//	spans     uint32, little endian: the spans in the export
//	plain     uint32: its size in protobuf (decompressed)
//	nonce     uint64: the process that appended it (random)
//	id        uint64: its number in that process
//	project   uint16 length, then the bytes: the x-project-name header
//	export
//
// Version 1, written before, is: version 1, the project (uint16 length,
// bytes), the export in protobuf. Both are read; testdata pins them.
const (
	recordV1 = 1
	recordV2 = 2
	flagGzip = 1
)

// recordV2Fixed is the size of a version 2 header without its project.
const recordV2Fixed = 1 + 1 + 4 + 4 + 8 + 8 + 2

type recordHeader struct {
	gzip      bool
	spans     int
	plainLen  int
	nonce, id uint64
	project   string
}

func (h recordHeader) encode() []byte {
	project := h.project
	if len(project) > 0xffff {
		project = project[:0xffff]
	}
	b := make([]byte, 0, recordV2Fixed+len(project))
	b = append(b, recordV2, 0)
	if h.gzip {
		b[1] = flagGzip
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(h.spans))
	b = binary.LittleEndian.AppendUint32(b, uint32(h.plainLen))
	b = binary.LittleEndian.AppendUint64(b, h.nonce)
	b = binary.LittleEndian.AppendUint64(b, h.id)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(project)))
	return append(b, project...)
}

// decodeRecordHeader returns a record's header and its export. A version 1
// record's export is checked here, as nothing else says how many spans it
// holds.
func decodeRecordHeader(b []byte) (recordHeader, []byte, error) {
	var h recordHeader
	if len(b) == 0 {
		return h, nil, errors.New("empty record")
	}
	switch b[0] {
	case recordV1:
		if len(b) < 3 {
			return h, nil, fmt.Errorf("record of %d bytes is shorter than its header", len(b))
		}
		n := int(binary.LittleEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return h, nil, fmt.Errorf("record of %d bytes is shorter than its project name", len(b))
		}
		h.project = string(b[3 : 3+n])
		body := b[3+n:]
		spans, err := wire.Scan(body, nil)
		if err != nil {
			return h, nil, err
		}
		h.spans, h.plainLen = spans, len(body)
		return h, body, nil
	case recordV2:
		if len(b) < recordV2Fixed {
			return h, nil, fmt.Errorf("record of %d bytes is shorter than its header", len(b))
		}
		if b[1]&^flagGzip != 0 {
			return h, nil, fmt.Errorf("unknown record flags %#x", b[1])
		}
		h.gzip = b[1]&flagGzip != 0
		h.spans = int(binary.LittleEndian.Uint32(b[2:]))
		h.plainLen = int(binary.LittleEndian.Uint32(b[6:]))
		h.nonce = binary.LittleEndian.Uint64(b[10:])
		h.id = binary.LittleEndian.Uint64(b[18:])
		n := int(binary.LittleEndian.Uint16(b[26:]))
		if len(b) < recordV2Fixed+n {
			return h, nil, fmt.Errorf("record of %d bytes is shorter than its project name", len(b))
		}
		h.project = string(b[recordV2Fixed : recordV2Fixed+n])
		body := b[recordV2Fixed+n:]
		if !h.gzip && len(body) != h.plainLen {
			return h, nil, fmt.Errorf("record's export is %d bytes, its header says %d", len(body), h.plainLen)
		}
		return h, body, nil
	}
	return h, nil, fmt.Errorf("unknown record version %d", b[0])
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
			Name: "feedbackproxy_queue_enqueued_spans_total", Help: "Spans put in the disk queue, on their way to Phoenix.",
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
