// Package budget bounds the memory that requests hold on the proxy's
// behalf: a Budget of bytes, and a Reservation per request that grows as
// the request buffers more and is released once, whatever path the request
// takes (done, refused, stalled or cut off).
package budget

import "sync"

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
