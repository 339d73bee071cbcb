// Package budget bounds the memory that requests hold on the proxy's
// behalf: a Budget of bytes, and a Reservation per request that grows as
// the request buffers more and is released once, whatever path the request
// takes (done, refused, stalled or cut off).
package budget

import (
	"errors"
	"io"
	"sync"
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
}

// New returns a budget of limit bytes; report, if not nil, is told the
// bytes in use after every change (a gauge's Set).
func New(limit int64, report func(used int64)) *Budget {
	return &Budget{limit: limit, report: report}
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
}

// Grow charges n more bytes. It fails when the budget cannot take them; a
// request alone in flight may exceed the budget, so that a request larger
// than it is slow, never starved.
func (r *Reservation) Grow(n int64) bool {
	if n <= 0 {
		return true
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > r.held && b.used+n > b.limit {
		return false
	}
	b.used += n
	r.held += n
	b.changed()
	return true
}

// Held returns the bytes r holds.
func (r *Reservation) Held() int64 { return r.held }

// Release gives back everything r holds; it may be called again.
func (r *Reservation) Release() {
	if r.held == 0 {
		return
	}
	b := r.b
	b.mu.Lock()
	b.used -= r.held
	r.held = 0
	b.changed()
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
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
