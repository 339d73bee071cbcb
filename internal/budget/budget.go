// Package budget bounds the memory that requests hold on the proxy's
// behalf: a Budget of bytes, and a Reservation per request that grows as
// the request buffers more and is released once, whatever path the request
// takes (done, refused, stalled or cut off).
//
// A budget shared by everyone can be filled by a few clients that send part
// of a body and stop. So a request that is reading its body says so (Track)
// and marks each read (Progress); when the budget is full and another
// request needs room, the reading request that has made no progress for the
// longest, at least MinStall, is aborted and its bytes are waited for. A
// client must keep sending to keep what it holds.
package budget

import (
	"errors"
	"io"
	"sync"
	"time"
)

// Budget is a byte budget shared by concurrent requests. It is charged for
// the bytes a request has actually buffered, as they arrive, never for what
// a client only announces. Safe for concurrent use.
type Budget struct {
	mu    sync.Mutex
	used  int64
	limit int64
	// report, if set, is told the bytes in use after every change, under
	// the budget's lock.
	report func(used int64)
	// readers are the reservations of requests reading their body.
	readers map[*Reservation]struct{}
	// freed, when someone waits for room, is closed at the next release.
	freed chan struct{}
	// MinStall is how long a reading request must have made no progress
	// before it may be aborted to make room; zero means DefaultMinStall.
	MinStall time.Duration
}

// DefaultMinStall is Budget.MinStall's default: a body on a healthy link
// never pauses that long.
const DefaultMinStall = time.Second

// evictWait is how long Grow waits for the bytes of a request it aborted.
const evictWait = 200 * time.Millisecond

// New returns a budget of limit bytes; report, if not nil, is told the
// bytes in use after every change (a gauge's Set).
func New(limit int64, report func(used int64)) *Budget {
	return &Budget{limit: limit, report: report, readers: map[*Reservation]struct{}{}}
}

// Limit returns the budget's size.
func (b *Budget) Limit() int64 { return b.limit }

// Used returns the bytes held now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Reserve returns an empty reservation against b.
func (b *Budget) Reserve() *Reservation { return &Reservation{b: b} }

// Reservation is what one request holds of a budget. Not safe for
// concurrent use.
type Reservation struct {
	b    *Budget
	held int64
	// Set by Track, read under the budget's lock.
	abort    func()
	progress time.Time
	aborted  bool
	// reading is true from Track to Untrack; abortMu makes an abort and
	// Untrack exclude each other, so that no abort lands once the request
	// has read its body (on a kept-alive connection, on the next one).
	abortMu sync.Mutex
	reading bool
	// wait is how long Grow waits for room (see SetWait).
	wait time.Duration
}

// SetWait makes Grow wait up to d for room when the budget is full,
// instead of failing at once: for requests whose clients would rather wait
// a moment than retry (feedback from a page), and that hold the budget for
// milliseconds.
func (r *Reservation) SetWait(d time.Duration) { r.wait = d }

// Track says r's request is reading its body, and how to abort the read
// (e.g. a read deadline in the past) should the budget need its bytes.
func (r *Reservation) Track(abort func()) {
	r.abortMu.Lock()
	r.reading = true
	r.abortMu.Unlock()
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	r.abort, r.progress = abort, time.Now()
	b.readers[r] = struct{}{}
}

// abortRead aborts r's read, unless it has ended.
func (r *Reservation) abortRead() {
	r.abortMu.Lock()
	defer r.abortMu.Unlock()
	if r.reading {
		r.abort()
	}
}

// Progress marks that r's request read more of its body.
func (r *Reservation) Progress() {
	b := r.b
	b.mu.Lock()
	r.progress = time.Now()
	b.mu.Unlock()
}

// Untrack says r's request has read its body: it may wait on others now,
// but is no longer a stalled reader.
func (r *Reservation) Untrack() {
	r.abortMu.Lock()
	r.reading = false
	r.abortMu.Unlock()
	b := r.b
	b.mu.Lock()
	delete(b.readers, r)
	b.mu.Unlock()
}

// Aborted reports whether r's read was aborted to make room for others.
func (r *Reservation) Aborted() bool {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	return r.aborted
}

// Grow charges n more bytes. It fails when the budget cannot take them,
// even once the stalled readers it may abort (see the package doc) gave
// theirs back, and, with SetWait, once it waited that long for room. A request alone in flight may exceed the budget, so that a
// request larger than it is slow, never starved.
func (r *Reservation) Grow(n int64) bool {
	if n <= 0 {
		return true
	}
	b := r.b
	var deadline time.Time
	for {
		b.mu.Lock()
		if b.used <= r.held || b.used+n <= b.limit {
			b.used += n
			r.held += n
			b.changed()
			b.mu.Unlock()
			return true
		}
		victim := b.stalledLocked(r)
		if victim == nil && r.wait <= 0 {
			b.mu.Unlock()
			return false
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		if victim != nil {
			victim.abortRead()
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(max(r.wait, evictWait))
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-freed:
			t.Stop()
		case <-t.C:
			return false
		}
	}
}

// stalledLocked picks the reader, not r, that has made no progress for the
// longest, at least MinStall, holding bytes; it marks it aborted and stops
// tracking it. Nil when there is none.
func (b *Budget) stalledLocked(r *Reservation) *Reservation {
	minStall := b.MinStall
	if minStall == 0 {
		minStall = DefaultMinStall
	}
	cutoff := time.Now().Add(-minStall)
	var victim *Reservation
	for o := range b.readers {
		if o == r || o.held == 0 || o.progress.After(cutoff) {
			continue
		}
		if victim == nil || o.progress.Before(victim.progress) {
			victim = o
		}
	}
	if victim != nil {
		victim.aborted = true
		delete(b.readers, victim)
	}
	return victim
}

// Held returns the bytes r holds.
func (r *Reservation) Held() int64 { return r.held }

// Release gives back everything r holds; it may be called again.
func (r *Reservation) Release() {
	b := r.b
	b.mu.Lock()
	delete(b.readers, r)
	if r.held == 0 {
		b.mu.Unlock()
		return
	}
	b.used -= r.held
	r.held = 0
	b.changed()
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}

func (b *Budget) changed() {
	if b.report != nil {
		b.report(b.used)
	}
}

// ErrSpent is ReadAll's error when the budget cannot take the bytes.
var ErrSpent = errors.New("budget: spent")

// readChunk is ReadAll's first allocation, and the least it grows by.
const readChunk = 16 << 10

// ReadAll reads r to its end, or to limit+1 bytes, charging res for the
// memory before it is taken: a buffer that doubles as bytes arrive, so a
// client pays for what it sends, not for what it announces. It returns
// ErrSpent when res cannot grow; the bytes read so far with any error.
func ReadAll(r io.Reader, limit int64, res *Reservation) ([]byte, error) {
	var b []byte
	for {
		if len(b) == cap(b) {
			if int64(len(b)) > limit {
				return b, nil
			}
			newCap := min(max(2*int64(cap(b)), readChunk), limit+1)
			if !res.Grow(newCap - int64(cap(b))) {
				return b, ErrSpent
			}
			nb := make([]byte, len(b), newCap)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if n > 0 {
			res.Progress()
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
