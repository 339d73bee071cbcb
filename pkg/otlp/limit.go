package otlp

import (
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
)

// DefaultMaxInflightBytes bounds the request bytes being worked on at once.
// The budget (package budget) is charged for what a request has actually
// buffered, as it arrives, never for what a Content-Length announces: when
// apps send faster than Phoenix takes, requests wait on the upstream and
// pile up, and past the budget they are refused with a retryable answer
// instead of growing the proxy's memory without end.
const DefaultMaxInflightBytes = 64 << 20

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
