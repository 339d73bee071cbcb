package otlp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	// Code is reported as it is, except OK and Unknown, which become
	// Unavailable: an error is not OK, and Unknown is not an answer.
	Code codes.Code
	// RetryAfter is the delay the upstream asked for; zero lets the client
	// use its own backoff, except that ResourceExhausted then announces one
	// second (see GRPCStatus).
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
	return e.status(e.Msg)
}

func (e *Error) status(msg string) *status.Status {
	code := e.Code
	if code == codes.OK || code == codes.Unknown {
		// An error is not OK, and Unknown tells the client nothing: report
		// it as other unexplained failures are (see statusOf).
		code = codes.Unavailable
	}
	st := status.New(code, strings.ToValidUTF8(msg, "\uFFFD"))
	delay := e.RetryAfter
	if code == codes.ResourceExhausted && delay <= 0 {
		// OTLP/gRPC clients retry ResourceExhausted only when it carries a
		// RetryInfo (https://opentelemetry.io/docs/specs/otlp/#failures);
		// OTLP/HTTP clients get Retry-After: 1 in this case (writeStatus).
		delay = time.Second
	}
	if delay > 0 && Retryable(code) {
		if with, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
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
		// err.Error(), not e.Msg: keep the context the error was wrapped in.
		return e.status(err.Error())
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		return st
	}
	return status.New(codes.Unavailable, strings.ToValidUTF8(err.Error(), "\uFFFD"))
}

// retryAfterOf returns the delay to announce with a retryable answer.
func retryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
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
