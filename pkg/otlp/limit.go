package otlp

import (
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// DefaultMaxInflightBytes bounds the request bytes being worked on at once.
const DefaultMaxInflightBytes = 64 << 20

// inflight is a byte budget for exports being decoded and forwarded. When
// apps send faster than Phoenix takes, requests wait on the upstream and
// pile up; past the budget they are refused with a retryable answer instead
// of growing the proxy's memory without end.
type inflight struct {
	mu      sync.Mutex
	used    int64
	limit   int64
	metrics *Metrics
}

// acquire reserves n bytes. A request larger than the whole budget is let
// through when nothing else is in flight, so it is slow, never starved.
func (l *inflight) acquire(n int64) bool {
	if n <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used > 0 && l.used+n > l.limit {
		return false
	}
	l.used += n
	l.report()
	return true
}

func (l *inflight) release(n int64) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	l.used -= n
	l.report()
	l.mu.Unlock()
}

func (l *inflight) report() {
	if l.metrics != nil {
		l.metrics.inflightBytes.Set(float64(l.used))
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
