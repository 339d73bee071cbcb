package otlp

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
)

// retriedByHTTPClients are the statuses OTLP/HTTP clients retry.
// https://opentelemetry.io/docs/specs/otlp/#retryable-response-codes
var retriedByHTTPClients = map[int]bool{429: true, 502: true, 503: true, 504: true}

func TestHTTPStatus(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK:                 200,
		codes.InvalidArgument:    400,
		codes.Unauthenticated:    401,
		codes.PermissionDenied:   403,
		codes.NotFound:           404,
		codes.Unimplemented:      404,
		codes.ResourceExhausted:  429,
		codes.Unavailable:        503,
		codes.Canceled:           503,
		codes.DeadlineExceeded:   503,
		codes.Aborted:            503,
		codes.OutOfRange:         503,
		codes.DataLoss:           503,
		codes.Internal:           500,
		codes.Unknown:            500,
		codes.AlreadyExists:      500,
		codes.FailedPrecondition: 500,
	}
	for code := codes.OK; code <= codes.Unauthenticated; code++ {
		got := HTTPStatus(code)
		if w, ok := want[code]; !ok || got != w {
			t.Errorf("HTTPStatus(%v) = %d; want %d", code, got, w)
		}
		// The one mapping must keep the meaning: an HTTP client retries
		// exactly what a gRPC client may retry.
		if code != codes.OK && Retryable(code) != retriedByHTTPClients[got] {
			t.Errorf("%v is retryable=%v but answers %d", code, Retryable(code), got)
		}
	}
}

func TestFromUpstream(t *testing.T) {
	for s := 300; s < 600; s++ {
		e := fromUpstream(s, 4*time.Second, "msg")
		retryable := retriedByHTTPClients[s]
		if Retryable(e.Code) != retryable {
			t.Errorf("upstream %d -> %v, retryable=%v; want %v", s, e.Code, Retryable(e.Code), retryable)
		}
		// Our own HTTP clients must reach the same decision.
		if retriedByHTTPClients[HTTPStatus(e.Code)] != retryable {
			t.Errorf("upstream %d -> %v -> our %d: retry decision changed", s, e.Code, HTTPStatus(e.Code))
		}
		if (e.RetryAfter != 0) != retryable {
			t.Errorf("upstream %d: RetryAfter %v", s, e.RetryAfter)
		}
		if e.Code == codes.Unknown || e.Code == codes.OK {
			t.Errorf("upstream %d -> %v", s, e.Code)
		}
	}
}

func TestErrorGRPCStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   *Error
		code  codes.Code
		delay time.Duration
	}{
		{"retryable with delay", &Error{Code: codes.Unavailable, RetryAfter: 3 * time.Second, Msg: "m"}, codes.Unavailable, 3 * time.Second},
		{"retryable without delay", &Error{Code: codes.Unavailable, Msg: "m"}, codes.Unavailable, 0},
		{"resource exhausted always has a delay", &Error{Code: codes.ResourceExhausted, Msg: "m"}, codes.ResourceExhausted, time.Second},
		{"permanent drops the delay", &Error{Code: codes.InvalidArgument, RetryAfter: time.Second, Msg: "m"}, codes.InvalidArgument, 0},
		{"Unknown is never sent", &Error{Code: codes.Unknown, Msg: "m"}, codes.Unavailable, 0},
		{"an error is never OK", &Error{Code: codes.OK, RetryAfter: time.Second, Msg: "m"}, codes.Unavailable, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.err.GRPCStatus()
			var delay time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					delay = ri.GetRetryDelay().AsDuration()
				}
			}
			if st.Code() != tc.code || delay != tc.delay || st.Message() != "m" {
				t.Errorf("GRPCStatus = %v %q, delay %v; want %v, %v", st.Code(), st.Message(), delay, tc.code, tc.delay)
			}
		})
	}
	if got := statusOf(errors.New("boom")); got.Code() != codes.Unavailable || got.Message() != "boom" {
		t.Errorf("statusOf(plain error) = %v %q; want Unavailable boom", got.Code(), got.Message())
	}
}
