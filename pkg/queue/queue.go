package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// ErrCorrupt is returned by Next, with the Record, for a record whose
	// checksum no longer matches what was written: the disk changed it. Ack
	// that Record to skip it.
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

type segment struct {
	seq  uint64
	size int64 // bytes of good records; appends go here
}

// Queue is a durable FIFO of records in a directory. Append may be called
// from any number of goroutines; Next and Ack are meant for one consumer.
type Queue struct {
	cfg  Config
	lock *os.File // the directory lock
	ack  *ackFile

	mu sync.Mutex
	// segs are the segments on disk, oldest first: the oldest holds the
	// head, the newest takes appends.
	segs    []segment
	headOff int64 // offset of the oldest unacknowledged record in segs[0]
	w       *os.File
	r       *os.File // segs[0] once read from, for Next
	rseq    uint64
	n       int    // unacknowledged records
	bytes   int64  // their size on disk
	buf     []byte // the record being appended, framed
	hdr     [headerLen]byte
	waitc   chan struct{} // closed by the next Append; nil if nobody waits
	done    chan struct{}
	closed  bool
	// With Sync: everything before synced is on stable storage; syncing is
	// the file an fsync is running on, which a roll must not close; syncErr,
	// once set, fails every later Append, as a failed fsync may have lost
	// written pages (https://lwn.net/Articles/752063/).
	synced  pos
	syncing *os.File
	syncErr error

	syncMu sync.Mutex // one fsync at a time; taken before mu, never after
}

// Open opens the queue in cfg.Dir, creating it if missing, and recovers what
// a previous process left: every good record not yet acknowledged is
// delivered again, in order; a torn record at the end of a segment, and
// anything after it, is cut off.
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
	q := &Queue{cfg: cfg, lock: lock, done: make(chan struct{})}
	if err := q.recover(); err != nil {
		return nil, errors.Join(err, q.closeFiles())
	}
	return q, nil
}

func (q *Queue) path(seq uint64) string { return filepath.Join(q.cfg.Dir, segName(seq)) }

func (q *Queue) recover() error {
	af, ack, ok, err := openAck(q.cfg.Dir, q.cfg.Sync)
	if err != nil {
		return fmt.Errorf("queue: read ack position: %w", err)
	}
	q.ack = af
	if fi, err := af.f.Stat(); err == nil && fi.Size() > 0 && !ok {
		q.cfg.Logger.Warn("queue: ack position damaged; delivering every record again", "dir", q.cfg.Dir)
	}
	seqs, err := listSegments(q.cfg.Dir)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	for _, seq := range seqs {
		if ok && seq < ack.seq {
			// Acknowledged entirely; a crash came between writing the ack
			// position and removing the segment.
			if err := os.Remove(q.path(seq)); err != nil {
				return fmt.Errorf("queue: %w", err)
			}
			continue
		}
		from := int64(0)
		if ok && seq == ack.seq {
			from = ack.off
		}
		if err := q.recoverSegment(seq, from); err != nil {
			return err
		}
	}
	next := ack.seq + 1
	if len(q.segs) > 0 {
		next = q.segs[len(q.segs)-1].seq + 1
	}
	if len(q.segs) == 0 {
		f, err := q.create(next)
		if err != nil {
			return err
		}
		q.w = f
	} else {
		f, err := os.OpenFile(q.path(q.segs[len(q.segs)-1].seq), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		q.w = f
	}
	if err := q.remove(q.advance()); err != nil {
		return err
	}
	// A position past the recovered records (their end was lost with the
	// page cache, the ack was not) must not outlive this Open: records
	// appended from here on would fall behind it and count as acknowledged.
	if head := (pos{q.segs[0].seq, q.headOff}); !ok || head != ack {
		if err := q.ack.write(head); err != nil {
			return err
		}
	}
	last := q.segs[len(q.segs)-1]
	q.synced = pos{last.seq, last.size}
	if q.cfg.Sync {
		if err := syncDir(q.cfg.Dir); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	return nil
}

// recoverSegment scans a segment, cuts off what follows its last good
// record, and adds it to the queue; from is its acknowledged offset.
func (q *Queue) recoverSegment(seq uint64, from int64) error {
	f, err := os.OpenFile(q.path(seq), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	s, err := scanSegment(f, from)
	if err != nil {
		return fmt.Errorf("queue: read %s: %w", f.Name(), err)
	}
	if s.size > s.good {
		q.cfg.Logger.Warn("queue: cut off a torn or damaged end of a segment",
			"segment", f.Name(), "good_bytes", s.good, "dropped_bytes", s.size-s.good)
		if err := f.Truncate(s.good); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		if q.cfg.Sync {
			if err := f.Sync(); err != nil {
				return fmt.Errorf("queue: %w", err)
			}
		}
	}
	if len(q.segs) == 0 {
		q.headOff = s.head
	} else {
		s.head = 0
	}
	q.segs = append(q.segs, segment{seq: seq, size: s.good})
	q.n += s.n
	q.bytes += s.good - s.head
	return nil
}

// create creates the segment seq, empty, for appending.
func (q *Queue) create(seq uint64) (*os.File, error) {
	f, err := os.OpenFile(q.path(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if q.cfg.Sync {
		if err := syncDir(q.cfg.Dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	q.segs = append(q.segs, segment{seq: seq})
	return f, nil
}

// Append adds rec at the end of the queue. It returns ErrFull when the
// budget has no room for it, and once it returns nil the record survives the
// process (and, with Config.Sync, a power loss). rec may be reused at once.
func (q *Queue) Append(rec []byte) error {
	size := int64(headerLen + len(rec))
	if int64(len(rec)) > q.cfg.maxRecord() {
		return ErrTooLarge
	}
	q.mu.Lock()
	if err := q.appendLocked(rec, size); err != nil {
		q.mu.Unlock()
		return err
	}
	end := pos{q.segs[len(q.segs)-1].seq, q.segs[len(q.segs)-1].size}
	q.mu.Unlock()
	if q.cfg.Sync {
		return q.syncTo(end)
	}
	return nil
}

func (q *Queue) appendLocked(rec []byte, size int64) error {
	switch {
	case q.closed:
		return ErrClosed
	case q.syncErr != nil:
		return fmt.Errorf("queue: an earlier fsync failed: %w", q.syncErr)
	case q.bytes+size > q.cfg.MaxBytes:
		return ErrFull
	}
	if tail := q.segs[len(q.segs)-1]; tail.size > 0 && tail.size+size > q.cfg.SegmentBytes {
		if err := q.roll(); err != nil {
			return err
		}
	}
	tail := &q.segs[len(q.segs)-1]
	q.buf = appendRecord(q.buf[:0], rec)
	// One write, at an explicit offset: a record is never split across
	// calls, and a failed write (ENOSPC) is overwritten by the next.
	if _, err := q.w.WriteAt(q.buf, tail.size); err != nil {
		q.w.Truncate(tail.size)
		return fmt.Errorf("queue: %w", err)
	}
	tail.size += size
	q.n++
	q.bytes += size
	if q.waitc != nil {
		close(q.waitc)
		q.waitc = nil
	}
	return nil
}

// roll closes the segment appended to and starts the next.
func (q *Queue) roll() error {
	old := q.w
	if q.cfg.Sync {
		if err := old.Sync(); err != nil {
			q.syncErr = err
			return fmt.Errorf("queue: %w", err)
		}
	}
	f, err := q.create(q.segs[len(q.segs)-1].seq + 1)
	if err != nil {
		return err
	}
	q.w = f
	if q.cfg.Sync {
		q.synced = pos{q.segs[len(q.segs)-1].seq, 0}
	}
	if q.syncing != old { // else syncTo closes it when its fsync is done
		old.Close()
	}
	if err := q.remove(q.advance()); err != nil {
		// The record can still be appended; the next Open removes what
		// is left, as the ack position is at or past its end.
		q.cfg.Logger.Warn("queue: remove an acknowledged segment", "err", err)
	}
	return nil
}

// syncTo returns once everything up to end is on stable storage. Appenders
// that wait here together are covered by one fsync: the first to get syncMu
// syncs what all of them wrote.
func (q *Queue) syncTo(end pos) error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	if q.syncErr != nil || !q.synced.less(end) || q.closed {
		// Close syncs everything first: closed, it is synced or failed.
		err := q.syncErr
		q.mu.Unlock()
		return err
	}
	f, target := q.w, pos{q.segs[len(q.segs)-1].seq, q.segs[len(q.segs)-1].size}
	q.syncing = f
	q.mu.Unlock()

	err := f.Sync()

	q.mu.Lock()
	defer q.mu.Unlock()
	q.syncing = nil
	if f != q.w { // rolled meanwhile, and left for us to close
		f.Close()
	}
	if err != nil {
		q.syncErr = err
		return fmt.Errorf("queue: %w", err)
	}
	if q.synced.less(target) {
		q.synced = target
	}
	return nil
}

// Next returns the oldest record not yet acknowledged, waiting for one if
// the queue is empty, until ctx is done or the queue is closed. It returns
// the same record until it is acknowledged: a consumer whose delivery failed
// calls Next again to retry it.
func (q *Queue) Next(ctx context.Context) (Record, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return Record{}, ErrClosed
		}
		if q.n > 0 {
			r, err := q.readHead()
			q.mu.Unlock()
			return r, err
		}
		if q.waitc == nil {
			q.waitc = make(chan struct{})
		}
		wait := q.waitc
		q.mu.Unlock()
		select {
		case <-wait:
		case <-q.done:
			return Record{}, ErrClosed
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

func (q *Queue) readHead() (Record, error) {
	seg := q.segs[0]
	if q.r == nil || q.rseq != seg.seq {
		if q.r != nil {
			q.r.Close()
		}
		f, err := os.Open(q.path(seg.seq))
		if err != nil {
			q.r = nil
			return Record{}, fmt.Errorf("queue: %w", err)
		}
		q.r, q.rseq = f, seg.seq
	}
	hdr := q.hdr[:]
	if _, err := q.r.ReadAt(hdr, q.headOff); err != nil {
		return Record{}, fmt.Errorf("queue: read %s at %d: %w", q.r.Name(), q.headOff, eofIsShort(err))
	}
	n := int64(binary.LittleEndian.Uint32(hdr[:4]))
	rec := Record{seq: seg.seq, off: q.headOff, size: headerLen + n}
	if q.headOff+rec.size > seg.size {
		// The length field changed under us; the checksum would fail too.
		rec.size = seg.size - q.headOff
		return rec, fmt.Errorf("%w: %s at %d: length beyond the segment", ErrCorrupt, q.r.Name(), q.headOff)
	}
	rec.Data = make([]byte, n)
	if _, err := q.r.ReadAt(rec.Data, q.headOff+headerLen); err != nil {
		return Record{}, fmt.Errorf("queue: read %s at %d: %w", q.r.Name(), q.headOff, eofIsShort(err))
	}
	if checksum(hdr, rec.Data) != binary.LittleEndian.Uint32(hdr[4:]) {
		return rec, fmt.Errorf("%w: %s at %d: checksum mismatch", ErrCorrupt, q.r.Name(), q.headOff)
	}
	return rec, nil
}

func eofIsShort(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Ack acknowledges r, the record the last Next returned: the next Next
// returns the one after it, also after a restart. Space comes back at once
// for the budget, and on disk once a whole segment is acknowledged.
func (q *Queue) Ack(r Record) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if r.size == 0 || r.seq != q.segs[0].seq || r.off != q.headOff {
		return fmt.Errorf("queue: ack of a record that is not the oldest unacknowledged one (segment %d offset %d)", r.seq, r.off)
	}
	q.headOff += r.size
	q.n--
	q.bytes -= r.size
	dead := q.advance()
	if (len(q.segs) == 1 && q.headOff >= q.segs[0].size) || q.n == 0 {
		// Only after skipping a corrupt record can the counts be off.
		q.n, q.bytes = 0, 0
	}
	err := q.ack.write(pos{q.segs[0].seq, q.headOff})
	// Removing a segment acknowledges it even if the ack file is stale:
	// Open takes a missing segment for an acknowledged one.
	return errors.Join(err, q.remove(dead))
}

// advance moves the head past segments acknowledged to their end, but the
// one appended to, and removes them; it returns those it could not remove.
func (q *Queue) advance() []uint64 {
	var dead []uint64
	for len(q.segs) > 1 && q.headOff >= q.segs[0].size {
		dead = append(dead, q.segs[0].seq)
		q.segs = q.segs[1:]
		q.headOff = 0
	}
	if q.r != nil && len(dead) > 0 {
		q.r.Close()
		q.r = nil
	}
	return dead
}

func (q *Queue) remove(seqs []uint64) error {
	var errs []error
	for _, seq := range seqs {
		if err := os.Remove(q.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("queue: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Len returns the number of records not yet acknowledged.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Bytes returns the size on disk of the records not yet acknowledged, the
// figure Config.MaxBytes bounds.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
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
	if q.cfg.Sync && q.syncErr == nil {
		if err = q.w.Sync(); err != nil {
			q.syncErr = err
		} else {
			q.synced = pos{q.segs[len(q.segs)-1].seq, q.segs[len(q.segs)-1].size}
		}
	}
	return errors.Join(err, q.closeFiles())
}

func (q *Queue) closeFiles() error {
	var errs []error
	files := []*os.File{q.w, q.r, q.lock}
	if q.ack != nil {
		files = append(files, q.ack.f)
	}
	for _, f := range files {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	q.w, q.r, q.lock, q.ack = nil, nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}
