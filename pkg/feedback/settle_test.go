package feedback

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

func TestSettle(t *testing.T) {
	received := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	deadline := received.Add(time.Minute)
	var (
		notFound    = &phoenix.APIError{StatusCode: 404, Message: "Spans with IDs 00f067aa0ba902b7 do not exist."}
		unavailable = &phoenix.APIError{StatusCode: 503}
		refused     = &phoenix.APIError{StatusCode: 422, Message: "body.data.0.annotator_kind: Input should be 'LLM', 'CODE' or 'HUMAN'"}
		unreadable  = &phoenix.UnreadableAnswerError{StatusCode: 200, Err: errors.New("decoding: invalid character '<' looking for beginning of value")}
		slowDown    = func(d time.Duration) error { return &phoenix.APIError{StatusCode: 429, RetryAfter: d} }
	)
	tests := []struct {
		name       string
		a          attempt
		at         time.Duration // after received
		want       decision      // reason compared by wantReason
		wantReason string        // a part of the reason; "" means none
	}{
		{name: "stored", a: attempt{ids: []string{"ann-1"}}, at: time.Second,
			want: decision{next: end, state: Annotated, annID: "ann-1", result: "ok"}},
		{name: "stored, no id", a: attempt{}, at: time.Second,
			want: decision{next: end, state: Annotated, result: "ok"}},
		{name: "2xx unreadable: annotated without an id", a: attempt{err: unreadable}, at: time.Second,
			want:       decision{next: end, state: Annotated, result: "unreadable_answer"},
			wantReason: "Phoenix accepted the annotation, but its answer could not be read, so its id is unknown: phoenix:"},
		{name: "refused", a: attempt{err: refused}, at: time.Second,
			want: decision{next: end, state: Failed, result: "permanent"}, wantReason: "Phoenix refused the annotation: " + refused.Error()},
		{name: "not an answer from Phoenix is permanent", a: attempt{err: errors.New("boom")}, at: time.Second,
			want: decision{next: end, state: Failed, result: "permanent"}, wantReason: "boom"},
		{name: "superseded, stored: write the newer vote", a: attempt{ids: []string{"ann-1"}, superseded: true}, at: time.Second,
			want: decision{next: writeNewer, result: "ok"}},
		{name: "superseded, unreadable: write the newer vote", a: attempt{err: unreadable, superseded: true}, at: time.Second,
			want: decision{next: writeNewer, result: "unreadable_answer"}},
		{name: "superseded, refused: the newer vote may be accepted", a: attempt{err: refused, superseded: true}, at: time.Second,
			want: decision{next: writeNewer, result: "permanent"}},
		{name: "superseded, span not found: retry as usual", a: attempt{err: notFound, superseded: true, backoff: 2 * time.Second}, at: time.Second,
			want: decision{next: retryLater, wait: 2 * time.Second, result: "span_not_found"}, wantReason: "404"},
		{name: "span not found: back off", a: attempt{err: notFound, backoff: 4 * time.Second}, at: 3 * time.Second,
			want: decision{next: retryLater, wait: 4 * time.Second, result: "span_not_found"}, wantReason: "do not exist"},
		{name: "backoff cut to the deadline", a: attempt{err: notFound, backoff: 8 * time.Second}, at: 55 * time.Second,
			want: decision{next: retryLater, wait: 5 * time.Second, result: "span_not_found"}, wantReason: "404"},
		{name: "last attempt at the deadline", a: attempt{err: notFound, backoff: 8 * time.Second}, at: time.Minute,
			want:       decision{next: end, state: Expired, result: "span_not_found"},
			wantReason: "Phoenix did not accept the annotation within 1m0s; last answer: phoenix:"},
		{name: "past the deadline", a: attempt{err: unavailable, backoff: time.Second}, at: 2 * time.Minute,
			want: decision{next: end, state: Expired, result: "retryable"}, wantReason: "within 1m0s"},
		{name: "Retry-After longer than the backoff", a: attempt{err: slowDown(10 * time.Second), backoff: time.Second}, at: time.Second,
			want: decision{next: retryLater, wait: 10 * time.Second, result: "retryable"}, wantReason: "429"},
		{name: "Retry-After shorter than the backoff", a: attempt{err: slowDown(time.Second), backoff: 8 * time.Second}, at: time.Second,
			want: decision{next: retryLater, wait: 8 * time.Second, result: "retryable"}, wantReason: "429"},
		{name: "Retry-After outlasting the deadline: expired at once", a: attempt{err: slowDown(time.Hour), backoff: time.Second}, at: time.Second,
			want: decision{next: end, state: Expired, result: "retryable"}, wantReason: "last answer"},
		{name: "Retry-After ending at the deadline: expired", a: attempt{err: slowDown(30 * time.Second), backoff: time.Second}, at: 30 * time.Second,
			want: decision{next: end, state: Expired, result: "retryable"}, wantReason: "within 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := settle(tt.a, received, deadline, received.Add(tt.at))
			reason := got.reason
			got.reason = ""
			if got != tt.want {
				t.Errorf("settle = %+v, want %+v", got, tt.want)
			}
			if (tt.wantReason == "") != (reason == "") || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason = %q, want one with %q", reason, tt.wantReason)
			}
		})
	}
}
