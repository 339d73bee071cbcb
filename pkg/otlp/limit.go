package otlp

import (
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// DefaultMaxInflightBytes bounds the request bytes being worked on at once.
const DefaultMaxInflightBytes = 64 << 20

// budget is a byte budget for exports being read, decoded and forwarded.
// When apps send faster than Phoenix takes, requests wait on the upstream and
// pile up; past the budget they are refused with a retryable answer instead
// of growing the proxy's memory without end. It is charged for the bytes a
// request has actually buffered, as they arrive, never for what a client
// only announces (a Content-Length costs nothing until the bytes come).
// Safe for concurrent use.
type budget struct {
	mu      sync.Mutex
	used    int64
	limit   int64
	metrics *Metrics
}

// reserve returns an empty reservation against b.
func (b *budget) reserve() *reservation { return &reservation{b: b} }

// reservation is what one request holds of the budget. It grows as the
// request buffers more and is released once, whatever path the request
// takes: done, refused, stalled or cut off. Not safe for concurrent use.
type reservation struct {
	b    *budget
	held int64
}

// grow charges n more bytes. It fails when the budget cannot take them; a
// request alone in flight may exceed the budget, so that a request larger
// than it is slow, never starved.
func (r *reservation) grow(n int64) bool {
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
	b.report()
	return true
}

// release gives back everything r holds; it may be called again.
func (r *reservation) release() {
	if r.held == 0 {
		return
	}
	b := r.b
	b.mu.Lock()
	b.used -= r.held
	r.held = 0
	b.report()
	b.mu.Unlock()
}

func (b *budget) report() {
	if b.metrics != nil {
		b.metrics.inflightBytes.Set(float64(b.used))
	}
}

// errOverloaded tells the client to come back: the OTLP answer for
// throttling (HTTP 429 with Retry-After, gRPC ResourceExhausted with
// RetryInfo).
func errOverloaded(limit int64) *Error {
	return &Error{Code: codes.ResourceExhausted, RetryAfter: time.Second,
		Msg: "the proxy is at its limit of in-flight export bytes (" + formatBytes(limit) + "); retry later"}
}

func formatBytes(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
