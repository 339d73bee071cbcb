package otlp

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Error is the outcome of an export that did not succeed, in OTLP terms: a
// gRPC code that says whether the client may retry, and how long it should
// wait first. It implements GRPCStatus, so gRPC handlers can return it as it
// is and clients see its code, not Unknown.
type Error struct {
	Code codes.Code
	// RetryAfter is the delay the upstream asked for; zero lets the client
	// use its own backoff.
	RetryAfter time.Duration
	Msg        string
}

// Errorf returns an *Error with the given code.
func Errorf(code codes.Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Msg }

// GRPCStatus returns the status a gRPC client sees, with a RetryInfo detail
// when a delay is known (OTLP/gRPC exporters honour it).
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Msg)
	if e.RetryAfter > 0 && Retryable(e.Code) {
		if with, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
			return with
		}
	}
	return st
}

// Retryable reports whether OTLP lets a client retry an export that failed
// with code.
func Retryable(code codes.Code) bool {
	switch code {
	case codes.Canceled, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// HTTPStatus maps a gRPC code to the HTTP status OTLP/HTTP answers with. The
// retryable codes become 429 or 503, the two statuses (with 502 and 504)
// that OTLP/HTTP clients retry.
func HTTPStatus(code codes.Code) int {
	switch code {
	case codes.OK:
		return http.StatusOK
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss:
		return http.StatusServiceUnavailable
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound, codes.Unimplemented:
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}

// fromUpstream maps an upstream OTLP/HTTP answer that was not 2xx to the
// error our own clients get. Only 429, 502, 503 and 504 are retryable, as
// the OTLP/HTTP specification says; every other status is permanent.
func fromUpstream(statusCode int, retryAfter time.Duration, msg string) *Error {
	var code codes.Code
	switch statusCode {
	case http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		code = codes.Unavailable
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		code = codes.InvalidArgument
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden:
		code = codes.PermissionDenied
	default:
		code = codes.Internal
	}
	e := &Error{Code: code, Msg: fmt.Sprintf("upstream answered %d: %s", statusCode, msg)}
	if Retryable(code) {
		e.RetryAfter = retryAfter
	}
	return e
}

// statusOf returns the status an error is reported with; an error that is
// not an *Error (nor carries a gRPC status) is a retryable Unavailable, as
// the Collector's receivers treat unknown failures.
func statusOf(err error) *status.Status {
	var e *Error
	if errors.As(err, &e) {
		return e.GRPCStatus()
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	return status.New(codes.Unavailable, err.Error())
}

// retryAfterOf returns the delay to announce with a retryable answer.
func retryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// decodeStatus returns the message of a protobuf google.rpc.Status, or "".
func decodeStatus(b []byte) string {
	var st spb.Status
	if proto.Unmarshal(b, &st) != nil {
		return ""
	}
	return st.GetMessage()
}
