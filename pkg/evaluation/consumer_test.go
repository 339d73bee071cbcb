package evaluation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
)

func TestAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name, token, header string
		ok                  bool
	}{
		{name: "no token: open", header: "", ok: true},
		{name: "no token: any header", header: "Bearer whatever", ok: true},
		{name: "the token", token: "s3cret", header: "Bearer s3cret", ok: true},
		{name: "the scheme in any case", token: "s3cret", header: "bearer s3cret", ok: true},
		{name: "no header", token: "s3cret"},
		{name: "wrong token", token: "s3cret", header: "Bearer s3cret2"},
		{name: "wrong scheme", token: "s3cret", header: "Basic s3cret"},
		{name: "token alone", token: "s3cret", header: "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewConsumer(nil, tc.token, nil, nil).Authorize(tc.header)
			if tc.ok {
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				return
			}
			var oe *otlp.Error
			if !errors.As(err, &oe) || oe.Code != codes.Unauthenticated || !strings.Contains(oe.Msg, "Authorization: Bearer") {
				t.Fatalf("Authorize = %v; want Unauthenticated saying which header", err)
			}
		})
	}
}

// submitter is a feedback service that answers err and keeps what it took.
type submitter struct {
	err   error
	taken []feedback.Feedback
}

func (s *submitter) Submit(items []feedback.Feedback) ([]feedback.Status, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.taken = append(s.taken, items...)
	return make([]feedback.Status, len(items)), nil
}

func TestConsumeLogs(t *testing.T) {
	mixed := logsOf([][]int{{3}}, func(n int) plog.LogRecord {
		if n == 1 {
			r := plog.NewLogRecord()
			r.Body().SetStr("an ordinary log line")
			return r
		}
		return event(nil)
	})
	for _, tc := range []struct {
		name string
		ld   plog.Logs
		err  error // the submitter's
		// code is the refusal's code; OK when the export is taken.
		code       codes.Code
		retryAfter time.Duration
		rejected   int64
		taken      int
		metrics    string // outcome=count,... for transport http
	}{
		{name: "evaluations taken, the rest rejected", ld: mixed, rejected: 1, taken: 2, metrics: "accepted=2,not_evaluation=1"},
		{name: "nothing to submit", ld: logsOf([][]int{{1}}, func(int) plog.LogRecord { return plog.NewLogRecord() }), rejected: 1, metrics: "not_evaluation=1"},
		{name: "service full", ld: mixed, err: feedback.ErrFull, code: codes.ResourceExhausted, retryAfter: 5 * time.Second, metrics: "ResourceExhausted=3"},
		{name: "service full of bytes", ld: mixed, err: feedback.ErrFullBytes, code: codes.ResourceExhausted, retryAfter: 5 * time.Second, metrics: "ResourceExhausted=3"},
		{name: "service full of waiting feedback", ld: mixed, err: feedback.ErrFullWaiting, code: codes.ResourceExhausted, retryAfter: 5 * time.Second, metrics: "ResourceExhausted=3"},
		{name: "store failed", ld: mixed, err: fmt.Errorf("%w: disk full", feedback.ErrStore), code: codes.Unavailable, retryAfter: 5 * time.Second, metrics: "Unavailable=3"},
		{name: "shutting down", ld: mixed, err: errors.New("feedback: the service is shutting down"), code: codes.Unavailable, retryAfter: 5 * time.Second, metrics: "Unavailable=3"},
		{name: "an item refused", ld: mixed, err: fmt.Errorf("feedback: item 0: %w", &feedback.FieldError{Field: "label", Message: "bad"}),
			code: codes.InvalidArgument, metrics: "InvalidArgument=3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &submitter{err: tc.err}
			reg := prometheus.NewPedanticRegistry()
			c := NewConsumer(svc, "", NewMetrics(reg), nil)
			res, err := c.ConsumeLogs(context.Background(), otlp.Logs{Logs: tc.ld, Transport: "http"})
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("ConsumeLogs: %v", err)
				}
				if res.Rejected != tc.rejected || len(svc.taken) != tc.taken {
					t.Errorf("rejected %d, submitted %d; want %d, %d", res.Rejected, len(svc.taken), tc.rejected, tc.taken)
				}
				if (res.Rejected == 0) != (res.Message == "") {
					t.Errorf("message %q with %d rejected", res.Message, res.Rejected)
				}
			} else {
				var oe *otlp.Error
				if !errors.As(err, &oe) || oe.Code != tc.code || oe.RetryAfter != tc.retryAfter {
					t.Fatalf("ConsumeLogs = %v; want an *otlp.Error %s with retry after %s", err, tc.code, tc.retryAfter)
				}
			}
			var got []string
			for _, kv := range strings.Split(tc.metrics, ",") {
				outcome, _, _ := strings.Cut(kv, "=")
				n := testutil.ToFloat64(c.metrics.records.WithLabelValues("http", outcome))
				got = append(got, fmt.Sprintf("%s=%g", outcome, n))
			}
			if g := strings.Join(got, ","); g != tc.metrics {
				t.Errorf("metrics %s; want %s", g, tc.metrics)
			}
			if n := testutil.CollectAndCount(reg); n != len(strings.Split(tc.metrics, ",")) {
				t.Errorf("%d series; want only %s", n, tc.metrics)
			}
		})
	}
}

// TestConsumeLogsReachesTheService checks the path end to end in memory:
// an evaluation event taken is a pending feedback of the real service, as
// POST /feedback would leave it.
func TestConsumeLogsReachesTheService(t *testing.T) {
	svc := newService(t, feedback.Config{})
	c := NewConsumer(svc, "", nil, nil)
	ld := logsOf([][]int{{1}}, func(int) plog.LogRecord {
		return event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrUserID, "u-7") })
	})
	if _, err := c.ConsumeLogs(context.Background(), otlp.Logs{Logs: ld, Transport: "grpc"}); err != nil {
		t.Fatal(err)
	}
	st := svc.Lookup("chatcmpl-abc")
	if len(st) != 1 || st[0].State != feedback.Pending || st[0].Name != "user feedback" || st[0].Identifier != "u-7" {
		t.Fatalf("the service holds %+v; want one pending feedback named %q for u-7", st, "user feedback")
	}
}
