package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
)

var (
	// ErrFull is returned by Append when the record would take the
	// unacknowledged bytes over Config.MaxBytes; it is temporary: Ack makes
	// room.
	ErrFull = errors.New("queue: full")
	// ErrTooLarge is returned by Append for a record that could never fit
	// the budget; retrying it is pointless.
	ErrTooLarge = errors.New("queue: record larger than the budget")
	// ErrClosed is returned by every method called after Close, and by a
	// Next that Close interrupted.
	ErrClosed = errors.New("queue: closed")
	// ErrCorrupt was returned by Next for a record the disk had changed.
	//
	// Deprecated: Next skips damaged records and reports them through
	// Config.OnCorrupt and Queue.CorruptBytes; it never returns ErrCorrupt.
	ErrCorrupt = errors.New("queue: record corrupt")
)

// Record is one record handed out by Next.
type Record struct {
	// Data is the payload as it was appended; the caller owns it.
	Data []byte
	seq  uint64
	off  int64
	size int64 // on disk, header included
}

// Queue is a durable FIFO of records in a directory. Its methods may be
// called from any number of goroutines, but Next and Ack are meant for one
// consumer: Next hands out the oldest unacknowledged record, and only Ack
// of that one moves on.
type Queue struct {
	cfg  Config
	lock *os.File // the directory lock

	mu      sync.Mutex
	w       *appender
	r       *reader
	corrupt int64         // bytes reported damaged since Open
	waitc   chan struct{} // closed by the next Append; nil if nobody waits
	done    chan struct{}
	closed  bool

	syncMu sync.Mutex // one fsync at a time; taken before mu, never after
}

// Open opens the queue in cfg.Dir, creating it if missing, and recovers what
// a previous process left: every intact record not yet acknowledged is
// delivered again, in order. Damaged records are skipped, the torn end of
// the newest segment is cut off, and both are reported (Config.OnCorrupt)
// before Open returns.
func Open(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	rec, err := recoverDir(cfg.Dir, cfg.Sync)
	if err != nil {
		return nil, errors.Join(err, lock.Close())
	}
	q := &Queue{cfg: cfg, lock: lock, done: make(chan struct{})}
	q.wire(rec)
	if err := q.settleOpen(rec); err != nil {
		return nil, errors.Join(err, q.closeFiles())
	}
	q.report(rec.found)
	return q, nil
}

// wire builds the two sides of the queue from what recovery found.
func (q *Queue) wire(rec recovered) {
	tail := rec.segs[len(rec.segs)-1]
	q.w = &appender{
		dir: q.cfg.Dir, segmentBytes: q.cfg.SegmentBytes, sync: q.cfg.Sync,
		f: rec.tail, seq: tail.seq, size: tail.end,
		synced: pos{tail.seq, tail.end},
	}
	q.r = &reader{dir: q.cfg.Dir, ack: rec.ack, segs: rec.segs, head: rec.head, log: q.cfg.Logger}
	for _, s := range rec.segs {
		q.r.n += s.n
		q.r.bytes += s.bytes
	}
}

// settleOpen moves the head past what recovery found finished or damaged
// and records it.
func (q *Queue) settleOpen(rec recovered) error {
	done, _ := q.r.settle(true)
	if err := removeSegments(q.cfg.Dir, done); err != nil {
		return err
	}
	// A position past the recovered records (their end was lost with the
	// page cache, the ack was not) must not outlive this Open: records
	// appended from here on would fall behind it and count as acknowledged.
	if head := (pos{q.r.segs[0].seq, q.r.head}); !rec.ackOK || head != rec.ackAt {
		if err := q.r.ack.write(head); err != nil {
			return err
		}
	}
	if q.cfg.Sync {
		if err := syncDir(q.cfg.Dir); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	return nil
}

// report logs each damage found, counts it, and calls Config.OnCorrupt.
// It is called without q.mu held.
func (q *Queue) report(found []Corruption) {
	if len(found) == 0 {
		return
	}
	var bytes int64
	for _, c := range found {
		logCorruption(q.cfg.Logger, c)
		bytes += c.Bytes
	}
	q.mu.Lock()
	q.corrupt += bytes
	q.mu.Unlock()
	if q.cfg.OnCorrupt != nil {
		for _, c := range found {
			q.cfg.OnCorrupt(c)
		}
	}
}

// Append adds a record at the end of the queue: rec, or the parts of rec
// one after the other (a header and a body need not be copied together
// first). It returns ErrFull when the budget has no room for it, and once
// it returns nil the record survives the process (and, with Config.Sync, a
// power loss). The parts may be reused at once.
func (q *Queue) Append(rec ...[]byte) error {
	n := 0
	for _, p := range rec {
		n += len(p)
	}
	if int64(n) > q.cfg.maxRecord() {
		return ErrTooLarge
	}
	q.mu.Lock()
	end, err := q.appendLocked(rec, n)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if q.cfg.Sync {
		return q.syncTo(end)
	}
	return nil
}

func (q *Queue) appendLocked(parts [][]byte, n int) (pos, error) {
	switch {
	case q.closed:
		return pos{}, ErrClosed
	case q.r.bytes+int64(headerLen+n) > q.cfg.MaxBytes:
		return pos{}, ErrFull
	}
	at, size, err := q.w.append(parts, n)
	if err != nil {
		return pos{}, err
	}
	q.r.pushed(at, size)
	if at.off == 0 {
		// Rolled: the segment before may be acknowledged to its end.
		done, _ := q.r.settle(false)
		if err := removeSegments(q.cfg.Dir, done); err != nil {
			// The record is appended all the same; the next Open removes
			// what is left, as the ack position is at or past its end.
			q.cfg.Logger.Warn("queue: remove an acknowledged segment", "err", err)
		}
	}
	if q.waitc != nil {
		close(q.waitc)
		q.waitc = nil
	}
	return q.w.end(), nil
}

// syncTo returns once everything up to end is on stable storage. Appenders
// that wait here together are covered by one fsync: the first to get syncMu
// syncs what all of them wrote.
func (q *Queue) syncTo(end pos) error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	w := q.w
	if w.syncErr != nil || !w.synced.less(end) || q.closed {
		// Close syncs everything first: closed, it is synced or failed.
		err := w.syncErr
		q.mu.Unlock()
		return err
	}
	f, target := w.f, w.end()
	w.syncing = f
	q.mu.Unlock()

	err := f.Sync()

	q.mu.Lock()
	defer q.mu.Unlock()
	w.syncing = nil
	if f != w.f { // rolled meanwhile, and left for us to close
		f.Close()
	}
	if err != nil {
		w.syncErr = err
		return fmt.Errorf("queue: %w", err)
	}
	if w.synced.less(target) {
		w.synced = target
	}
	return nil
}

// Next returns the oldest record not yet acknowledged, waiting for one if
// the queue is empty, until ctx is done or the queue is closed. It returns
// the same record until it is acknowledged: a consumer whose delivery failed
// calls Next again to retry it.
//
// A record the disk damaged is never returned: Next skips it (and any
// damage right after it) and returns the next intact record, after
// reporting what it skipped as Open does (log, Config.OnCorrupt,
// CorruptBytes). Next returns ErrClosed, ctx's error, or an error reading
// the disk; never ErrCorrupt.
func (q *Queue) Next(ctx context.Context) (Record, error) {
	recs, err := q.NextBatch(ctx, 1, 0, nil)
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// NextBatch is Next for several records: it returns the oldest record not
// yet acknowledged, waiting for one as Next does, and the intact records
// that follow it in the same segment, in order, as many as fit in
// maxRecords records and maxBytes of payload (the first is returned
// whatever its size). It reads them from the disk at once, into buf when
// its capacity is large enough (else into new memory): the records' Data
// then share buf, so a caller that passes the same buf again must be done
// with them. The same records come again until they are acknowledged; a
// consumer acknowledges them in order, all at once or the first ones.
func (q *Queue) NextBatch(ctx context.Context, maxRecords int, maxBytes int64, buf []byte) ([]Record, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		if q.r.n > 0 {
			recs, found, err := q.r.next(maxRecords, maxBytes, buf)
			q.mu.Unlock()
			q.report(found)
			if err != nil || len(recs) > 0 {
				return recs, err
			}
			continue // damage took every record left: wait for more
		}
		wait := q.waiter()
		q.mu.Unlock()
		select {
		case <-wait:
		case <-q.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waiter returns the channel the next Append closes; q.mu is held.
func (q *Queue) waiter() chan struct{} {
	if q.waitc == nil {
		q.waitc = make(chan struct{})
	}
	return q.waitc
}

// Ack acknowledges rs, each the oldest record not yet acknowledged in turn
// (what the last Next or NextBatch returned, or its first records): the
// next Next returns the one after them, also after a restart. The position
// is written once for all of them. Space comes back at once for the
// budget, and on disk once a whole segment is acknowledged.
func (q *Queue) Ack(rs ...Record) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	return q.r.acknowledge(rs)
}

// Len returns the number of intact records not yet acknowledged.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.r.n
}

// Bytes returns the size on disk of the intact records not yet
// acknowledged, the figure Config.MaxBytes bounds.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.r.bytes
}

// CorruptBytes returns how many bytes of records the queue has skipped as
// damaged since Open, torn tails included: the sum of the Bytes of the
// Corruptions reported, fit for a counter.
func (q *Queue) CorruptBytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.corrupt
}

// Close waits for a running fsync, syncs what was appended (with
// Config.Sync), and releases the directory. Next calls waiting return
// ErrClosed.
func (q *Queue) Close() error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	close(q.done)
	var err error
	if w := q.w; q.cfg.Sync && w.syncErr == nil {
		if err = w.f.Sync(); err != nil {
			w.syncErr = err
		} else {
			w.synced = w.end()
		}
	}
	return errors.Join(err, q.closeFiles())
}

func (q *Queue) closeFiles() error {
	var errs []error
	if q.w.f != nil {
		errs = append(errs, q.w.f.Close())
		q.w.f = nil
	}
	errs = append(errs, q.r.close())
	if q.lock != nil {
		errs = append(errs, q.lock.Close())
		q.lock = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}
