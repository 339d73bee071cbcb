package feedback_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// wantState fails unless st is in state want.
func wantState(t *testing.T, st feedback.Status, want feedback.State) {
	t.Helper()
	if st.State != want {
		t.Fatalf("state = %q (reason %q, attempts %d), want %q", st.State, st.Reason, st.Attempts, want)
	}
}

// wantCallTimes fails unless the fake was called at these offsets from start.
func wantCallTimes(t *testing.T, calls []call, start time.Time, want ...time.Duration) {
	t.Helper()
	got := make([]time.Duration, len(calls))
	for i, c := range calls {
		got[i] = c.at.Sub(start)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("calls at %v, want %v", got, want)
	}
}

func TestService(t *testing.T) {
	type testCase struct {
		name    string
		cfg     func(*feedback.Config) // changes to testConfig; nil: none
		answers []answer
		run     func(t *testing.T, h *harness)
	}
	tests := []testCase{
		{
			name:    "span already indexed: annotated at once",
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				sp := h.indexSpan("chatcmpl-1", 1)
				st := h.submit(t, vote("chatcmpl-1", "up", identifier("user-7"), metadata(map[string]any{"app": "bot"})))
				if st[0].SpanID != sp.SpanID.String() || st[0].TraceID != sp.TraceID.String() {
					t.Errorf("Submit status = %+v, want the span resolved", st[0])
				}
				synctest.Wait()

				got := h.one(t, "chatcmpl-1")
				wantState(t, got, feedback.Annotated)
				if got.AnnotationID != "ann-1" || got.Attempts != 1 || got.SpanID != sp.SpanID.String() ||
					got.Project != "support" || got.SpanName != "ChatCompletion" || got.Reason != "" {
					t.Errorf("status = %+v", got)
				}
				calls := h.ann.Calls()
				if len(calls) != 1 {
					t.Fatalf("%d calls, want 1", len(calls))
				}
				a := calls[0].ann
				if a.SpanID != "eee19b7ec3c1b101" || a.Name != "user feedback" || a.AnnotatorKind != "HUMAN" || a.Identifier != "user-7" {
					t.Errorf("annotation = %+v", a)
				}
				if labelOf(a) != "thumbs-up" || a.Result.Score == nil || *a.Result.Score != 1 || a.Result.Explanation != nil {
					t.Errorf("result = label %s, score %v, explanation %v", labelOf(a), a.Result.Score, a.Result.Explanation)
				}
				if a.Metadata["response_id"] != "chatcmpl-1" || a.Metadata["app"] != "bot" {
					t.Errorf("metadata = %v, want response_id and the client's keys", a.Metadata)
				}
				if n := h.metric(t, "feedbackproxy_feedback_total", "outcome", "annotated"); n != 1 {
					t.Errorf("annotated count = %v, want 1", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_pending", "", ""); n != 0 {
					t.Errorf("pending gauge = %v, want 0", n)
				}
			},
		},
		{
			name:    "feedback before its span: pending, then annotated once indexed",
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				st := h.submit(t, vote("chatcmpl-2", "down"))
				if st[0].State != feedback.Pending || st[0].SpanID != "" {
					t.Fatalf("Submit status = %+v, want pending without span", st[0])
				}
				time.Sleep(30 * time.Second)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-2"), feedback.Pending)
				if n := len(h.ann.Calls()); n != 0 {
					t.Fatalf("%d calls before the span was indexed", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_pending", "", ""); n != 1 {
					t.Errorf("pending gauge = %v, want 1", n)
				}

				sp := h.indexSpan("chatcmpl-2", 2)
				synctest.Wait()
				got := h.one(t, "chatcmpl-2")
				wantState(t, got, feedback.Annotated)
				calls := h.ann.Calls()
				if len(calls) != 1 || calls[0].ann.SpanID != sp.SpanID.String() || labelOf(calls[0].ann) != "thumbs-down" || *calls[0].ann.Result.Score != 0 {
					t.Fatalf("calls = %+v", calls)
				}
				if lat := got.UpdatedAt.Sub(got.ReceivedAt); lat != 30*time.Second {
					t.Errorf("annotated %s after it was received, want 30s", lat)
				}
			},
		},
		{
			name:    "Phoenix 404, 404, then 200: annotated after backoff",
			answers: []answer{notFound, notFound, accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-3", 3)
				start := time.Now()
				h.submit(t, vote("chatcmpl-3", "up"))
				synctest.Wait()
				got := h.one(t, "chatcmpl-3")
				wantState(t, got, feedback.Pending)
				if got.Attempts != 1 || !strings.Contains(got.Reason, "404") {
					t.Errorf("after one 404: %+v, want attempts 1 and the 404 as reason", got)
				}

				time.Sleep(time.Minute - time.Second)
				synctest.Wait()
				got = h.one(t, "chatcmpl-3")
				wantState(t, got, feedback.Annotated)
				if got.Attempts != 3 || got.AnnotationID != "ann-3" || got.Reason != "" {
					t.Errorf("status = %+v", got)
				}
				wantCallTimes(t, h.ann.Calls(), start, 0, time.Second, 3*time.Second)
				if n := h.metric(t, "feedbackproxy_feedback_annotate_attempts_total", "result", "span_not_found"); n != 2 {
					t.Errorf("span_not_found attempts = %v, want 2", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_annotate_attempts_total", "result", "ok"); n != 1 {
					t.Errorf("ok attempts = %v, want 1", n)
				}
			},
		},
		{
			name: "429 with Retry-After is honoured, 503 backs off",
			answers: []answer{
				{err: &phoenix.APIError{StatusCode: 429, RetryAfter: 10 * time.Second}},
				status(503),
				accept,
			},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-4", 4)
				start := time.Now()
				h.submit(t, vote("chatcmpl-4", "up"))
				time.Sleep(time.Minute - time.Second)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-4"), feedback.Annotated)
				// 10s asked for by Phoenix rather than the 1s backoff; then 2s.
				wantCallTimes(t, h.ann.Calls(), start, 0, 10*time.Second, 12*time.Second)
				if n := h.metric(t, "feedbackproxy_feedback_annotate_attempts_total", "result", "retryable"); n != 2 {
					t.Errorf("retryable attempts = %v, want 2", n)
				}
			},
		},
		{
			name:    "Retry-After beyond the deadline: expired without waiting",
			answers: []answer{{err: &phoenix.APIError{StatusCode: 503, RetryAfter: time.Hour}}},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-4b", 4)
				h.submit(t, vote("chatcmpl-4b", "up"))
				synctest.Wait()
				got := h.one(t, "chatcmpl-4b")
				wantState(t, got, feedback.Expired)
				if !strings.Contains(got.Reason, "503") || len(h.ann.Calls()) != 1 {
					t.Errorf("status = %+v, calls %d", got, len(h.ann.Calls()))
				}
			},
		},
		{
			name:    "span never arrives: expired after MaxAge, logged and counted",
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				h.submit(t, vote("chatcmpl-6", "up"))
				time.Sleep(time.Minute - time.Nanosecond)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-6"), feedback.Pending)

				time.Sleep(time.Nanosecond)
				synctest.Wait()
				got := h.one(t, "chatcmpl-6")
				wantState(t, got, feedback.Expired)
				if !strings.Contains(got.Reason, `no span with response id "chatcmpl-6"`) || !strings.Contains(got.Reason, "1m0s") {
					t.Errorf("reason = %q", got.Reason)
				}
				if d := got.UpdatedAt.Sub(got.ReceivedAt); d != time.Minute {
					t.Errorf("expired after %s, want 1m", d)
				}
				logs := h.logs.String()
				for _, want := range []string{`level=WARN msg="feedback not annotated"`, "response_id=chatcmpl-6", "state=expired"} {
					if !strings.Contains(logs, want) {
						t.Errorf("log lacks %q:\n%s", want, logs)
					}
				}
				const want = `
# HELP feedbackproxy_feedback_total Feedbacks that ended, by outcome: annotated, failed, expired or superseded (a newer vote for the same key, taken by another replica, is written instead).
# TYPE feedbackproxy_feedback_total counter
feedbackproxy_feedback_total{outcome="annotated"} 0
feedbackproxy_feedback_total{outcome="expired"} 1
feedbackproxy_feedback_total{outcome="failed"} 0
feedbackproxy_feedback_total{outcome="superseded"} 0
`
				if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "feedbackproxy_feedback_total"); err != nil {
					t.Error(err)
				}
				if h.svc.Pending() != 0 {
					t.Errorf("Pending() = %d, want 0", h.svc.Pending())
				}

				// The span coming late changes nothing.
				h.indexSpan("chatcmpl-6", 6)
				synctest.Wait()
				if n := len(h.ann.Calls()); n != 0 {
					t.Errorf("%d calls for an expired feedback", n)
				}
			},
		},
		{
			name:    "Phoenix 404 forever: last attempt and expiry at the deadline",
			answers: []answer{notFound},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-7", 7)
				start := time.Now()
				h.submit(t, vote("chatcmpl-7", "up"))
				time.Sleep(time.Minute - time.Nanosecond)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-7"), feedback.Pending)

				time.Sleep(time.Hour)
				synctest.Wait()
				got := h.one(t, "chatcmpl-7")
				wantState(t, got, feedback.Expired)
				if !strings.Contains(got.Reason, "did not accept the annotation within 1m0s") || !strings.Contains(got.Reason, "404") {
					t.Errorf("reason = %q", got.Reason)
				}
				if got.UpdatedAt.Sub(start) != time.Minute {
					t.Errorf("expired %s after it was received, want 1m", got.UpdatedAt.Sub(start))
				}
				s := time.Second
				wantCallTimes(t, h.ann.Calls(), start, 0, s, 3*s, 7*s, 15*s, 23*s, 31*s, 39*s, 47*s, 55*s, 60*s)
				if got.Attempts != 11 {
					t.Errorf("attempts = %d, want 11", got.Attempts)
				}
				if n := h.metric(t, "feedbackproxy_feedback_total", "outcome", "expired"); n != 1 {
					t.Errorf("expired count = %v, want 1", n)
				}
			},
		},
		{
			name:    "second vote while waiting for the span: only the latest is written",
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				h.submit(t, vote("chatcmpl-8", "up"))
				time.Sleep(time.Second)
				h.submit(t, vote("chatcmpl-8", "down"))
				if h.svc.Pending() != 1 {
					t.Errorf("Pending() = %d, want 1: the second vote replaces the first", h.svc.Pending())
				}
				h.indexSpan("chatcmpl-8", 8)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-8"), feedback.Annotated)
				calls := h.ann.Calls()
				if len(calls) != 1 || labelOf(calls[0].ann) != "thumbs-down" {
					t.Fatalf("calls = %+v, want one with thumbs-down", calls)
				}
			},
		},
		{
			name:    "second vote while the first is in flight: the latest is written last",
			answers: []answer{gated, accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-9", 9)
				h.submit(t, vote("chatcmpl-9", "up"))
				synctest.Wait() // the first write waits at the gate
				h.submit(t, vote("chatcmpl-9", "down"))
				h.ann.release(1)
				synctest.Wait()
				got := h.one(t, "chatcmpl-9")
				wantState(t, got, feedback.Annotated)
				calls := h.ann.Calls()
				if len(calls) != 2 || labelOf(calls[1].ann) != "thumbs-down" || got.Attempts != 2 || got.AnnotationID != "ann-2" {
					t.Fatalf("status %+v, calls %+v", got, calls)
				}
			},
		},
		{
			name:    "a refusal of a superseded vote does not fail the newer one",
			answers: []answer{{gated: true, err: &phoenix.APIError{StatusCode: 422}}, accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-9b", 9)
				h.submit(t, vote("chatcmpl-9b", "up"))
				synctest.Wait()
				h.submit(t, vote("chatcmpl-9b", "down"))
				h.ann.release(1)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-9b"), feedback.Annotated)
				if calls := h.ann.Calls(); len(calls) != 2 || labelOf(calls[1].ann) != "thumbs-down" {
					t.Fatalf("calls = %+v", calls)
				}
			},
		},
		{
			name:    "Phoenix 200 with an unreadable answer: annotated without an id, not retried",
			answers: []answer{{err: unreadableAnswer}, accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-9c", 9)
				h.submit(t, vote("chatcmpl-9c", "up"))
				time.Sleep(time.Hour)
				synctest.Wait()
				got := h.one(t, "chatcmpl-9c")
				wantState(t, got, feedback.Annotated)
				if got.AnnotationID != "" || got.Attempts != 1 || !strings.Contains(got.Reason, "its answer could not be read") ||
					!strings.Contains(got.Reason, "invalid character '<'") {
					t.Errorf("status = %+v", got)
				}
				if n := len(h.ann.Calls()); n != 1 {
					t.Errorf("%d calls, want 1", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_annotate_attempts_total", "result", "unreadable_answer"); n != 1 {
					t.Errorf("unreadable_answer attempts = %v, want 1", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_total", "outcome", "annotated"); n != 1 {
					t.Errorf("annotated count = %v, want 1", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_total", "outcome", "failed"); n != 0 {
					t.Errorf("failed count = %v, want 0", n)
				}
				if !strings.Contains(h.logs.String(), `level=WARN msg="feedback annotated, but Phoenix's answer could not be read" response_id=chatcmpl-9c`) {
					t.Errorf("log:\n%s", h.logs.String())
				}
			},
		},
		{
			name:    "an unreadable answer for a superseded vote: the newer one is written",
			answers: []answer{{gated: true, err: unreadableAnswer}, accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-9d", 9)
				h.submit(t, vote("chatcmpl-9d", "up"))
				synctest.Wait()
				h.submit(t, vote("chatcmpl-9d", "down"))
				h.ann.release(1)
				synctest.Wait()
				got := h.one(t, "chatcmpl-9d")
				wantState(t, got, feedback.Annotated)
				if calls := h.ann.Calls(); len(calls) != 2 || labelOf(calls[1].ann) != "thumbs-down" || got.AnnotationID != "ann-2" || got.Reason != "" {
					t.Fatalf("status %+v, calls %+v", got, calls)
				}
			},
		},
		{
			name:    "a new vote after the annotation is written again",
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-10", 10)
				h.submit(t, vote("chatcmpl-10", "up"))
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-10"), feedback.Annotated)

				st := h.submit(t, vote("chatcmpl-10", "down"))
				if st[0].State != feedback.Pending || st[0].Attempts != 0 {
					t.Errorf("new vote: %+v, want a fresh pending record", st[0])
				}
				synctest.Wait()
				got := h.one(t, "chatcmpl-10")
				wantState(t, got, feedback.Annotated)
				calls := h.ann.Calls()
				if len(calls) != 2 || labelOf(calls[1].ann) != "thumbs-down" || got.AnnotationID != "ann-2" || got.Attempts != 1 {
					t.Fatalf("status %+v, calls %+v", got, calls)
				}
			},
		},
		{
			name:    "two identifiers: two annotations",
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-11", 11)
				h.submit(t, vote("chatcmpl-11", "up", identifier("user-b")), vote("chatcmpl-11", "down", identifier("user-a")))
				synctest.Wait()
				st := h.svc.Lookup("chatcmpl-11")
				if len(st) != 2 || st[0].Identifier != "user-a" || st[1].Identifier != "user-b" {
					t.Fatalf("Lookup = %+v, want user-a and user-b", st)
				}
				for _, s := range st {
					wantState(t, s, feedback.Annotated)
				}
				seen := map[string]string{}
				for _, c := range h.ann.Calls() {
					seen[c.ann.Identifier] = labelOf(c.ann)
				}
				if len(seen) != 2 || seen["user-a"] != "thumbs-down" || seen["user-b"] != "thumbs-up" {
					t.Errorf("written: %v", seen)
				}
			},
		},
		{
			name: "MaxPending reached: ErrFull and nothing of the batch accepted",
			cfg:  func(c *feedback.Config) { c.MaxPending = 2 },
			run: func(t *testing.T, h *harness) {
				// A batch that could never fit is told apart from a full service.
				_, err := h.svc.Submit([]feedback.Feedback{vote("a", "up"), vote("b", "up"), vote("c", "up")})
				if !errors.Is(err, feedback.ErrBatchTooLarge) || errors.Is(err, feedback.ErrFull) {
					t.Fatalf("Submit of 3 = %v, want ErrBatchTooLarge", err)
				}
				if h.svc.Pending() != 0 || h.svc.Lookup("a") != nil {
					t.Fatalf("a refused batch left %d pending", h.svc.Pending())
				}
				h.submit(t, vote("a", "up"), vote("b", "up"))
				if _, err := h.svc.Submit([]feedback.Feedback{vote("c", "up")}); !errors.Is(err, feedback.ErrFull) {
					t.Fatalf("Submit of a third = %v, want ErrFull", err)
				}
				// A new vote on a pending key takes no new slot.
				h.submit(t, vote("a", "down"))
				if h.svc.Pending() != 2 || h.svc.Lookup("c") != nil {
					t.Errorf("Pending() = %d, want 2", h.svc.Pending())
				}
				if n := h.metric(t, "feedbackproxy_feedback_received_total", "", ""); n != 3 {
					t.Errorf("received = %v, want 3", n)
				}
			},
		},
		{
			name: "one key twice in a batch takes one slot",
			cfg:  func(c *feedback.Config) { c.MaxPending = 1 },
			run: func(t *testing.T, h *harness) {
				h.submit(t, vote("a", "up"), vote("a", "down"))
				if h.svc.Pending() != 1 {
					t.Errorf("Pending() = %d, want 1", h.svc.Pending())
				}
			},
		},
		{
			name:    "Concurrency bounds the requests in flight",
			cfg:     func(c *feedback.Config) { c.Concurrency = 2 },
			answers: []answer{gated},
			run: func(t *testing.T, h *harness) {
				var items []feedback.Feedback
				for i := range 6 {
					id := fmt.Sprintf("chatcmpl-c%d", i)
					h.indexSpan(id, byte(20+i))
					items = append(items, vote(id, "up"))
				}
				h.submit(t, items...)
				for range 3 {
					synctest.Wait()
					if now, _ := h.ann.InFlight(); now != 2 {
						t.Fatalf("%d requests in flight, want 2", now)
					}
					h.ann.release(2)
				}
				synctest.Wait()
				if _, most := h.ann.InFlight(); most != 2 {
					t.Errorf("at most %d in flight, want 2", most)
				}
				for _, f := range items {
					wantState(t, h.one(t, f.ResponseID), feedback.Annotated)
				}
			},
		},
		{
			// Changed with graceful shutdown: the attempt in flight is no
			// longer cancelled at once but given until ctx ends.
			name: "Shutdown with pending feedback returns at its deadline and logs the count",
			run: func(t *testing.T, h *harness) {
				h.ann.script = func(_ int, a phoenix.SpanAnnotation) answer {
					if a.Metadata["response_id"] == "in-flight" {
						return gated
					}
					return notFound
				}
				h.indexSpan("in-flight", 1)
				h.indexSpan("backing-off", 2)
				h.submit(t, vote("waiting", "up"), vote("in-flight", "up"), vote("backing-off", "up"))
				synctest.Wait()
				if h.svc.Pending() != 3 {
					t.Fatalf("Pending() = %d, want 3", h.svc.Pending())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				start := time.Now()
				if err := h.svc.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown = %v, want DeadlineExceeded: the gated attempt never answers", err)
				}
				if d := time.Since(start); d != 5*time.Second {
					t.Errorf("Shutdown took %s, want the 5s of its context", d)
				}
				if !strings.Contains(h.logs.String(), `level=ERROR msg="feedback still pending at shutdown was not written to Phoenix" count=3`) {
					t.Errorf("log:\n%s", h.logs.String())
				}
				if _, err := h.svc.Submit([]feedback.Feedback{vote("late", "up")}); err == nil {
					t.Error("Submit after Shutdown succeeded")
				}
				// Nothing runs any more: no expiry, no retry.
				time.Sleep(time.Hour)
				synctest.Wait()
				wantState(t, h.one(t, "waiting"), feedback.Pending)
				wantState(t, h.one(t, "backing-off"), feedback.Pending)
			},
		},
		{
			name:    "SubmitAndWait: annotated when Phoenix answers within SyncWait",
			cfg:     func(c *feedback.Config) { c.SyncWait = 2 * time.Second },
			answers: []answer{{delay: time.Second}},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-12", 12)
				start := time.Now()
				st, err := h.svc.SubmitAndWait(context.Background(), []feedback.Feedback{vote("chatcmpl-12", "up")})
				if err != nil {
					t.Fatal(err)
				}
				wantState(t, st[0], feedback.Annotated)
				if d := time.Since(start); d != time.Second {
					t.Errorf("waited %s, want 1s", d)
				}
			},
		},
		{
			name:    "SubmitAndWait: pending when Phoenix is slower than SyncWait",
			cfg:     func(c *feedback.Config) { c.SyncWait = 2 * time.Second },
			answers: []answer{{delay: 3 * time.Second}},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-13", 13)
				start := time.Now()
				st, err := h.svc.SubmitAndWait(context.Background(), []feedback.Feedback{vote("chatcmpl-13", "up"), vote("no-span-yet", "up")})
				if err != nil {
					t.Fatal(err)
				}
				wantState(t, st[0], feedback.Pending)
				wantState(t, st[1], feedback.Pending)
				if d := time.Since(start); d != 2*time.Second {
					t.Errorf("waited %s, want SyncWait", d)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-13"), feedback.Annotated)
			},
		},
		{
			name:    "SubmitAndWait: no wait for a feedback without its span",
			cfg:     func(c *feedback.Config) { c.SyncWait = 2 * time.Second },
			answers: []answer{accept},
			run: func(t *testing.T, h *harness) {
				start := time.Now()
				st, err := h.svc.SubmitAndWait(context.Background(), []feedback.Feedback{vote("no-span-yet", "up")})
				if err != nil {
					t.Fatal(err)
				}
				wantState(t, st[0], feedback.Pending)
				if d := time.Since(start); d != 0 {
					t.Errorf("waited %s for a feedback that cannot be written yet", d)
				}
			},
		},
		{
			name: "Lookup lists every feedback of a response with its state",
			run: func(t *testing.T, h *harness) {
				h.ann.script = func(_ int, a phoenix.SpanAnnotation) answer {
					switch a.Identifier {
					case "refused":
						return status(401)
					case "retrying":
						return notFound
					}
					return accept
				}
				h.indexSpan("chatcmpl-14", 14)
				h.submit(t, vote("chatcmpl-14", "up", identifier("written")), vote("chatcmpl-14", "up", identifier("refused")),
					vote("chatcmpl-14", "up", identifier("retrying")))
				synctest.Wait()
				st := h.svc.Lookup("chatcmpl-14")
				got := map[string]feedback.State{}
				for _, s := range st {
					got[s.Identifier] = s.State
				}
				want := map[string]feedback.State{"written": feedback.Annotated, "refused": feedback.Failed, "retrying": feedback.Pending}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("states = %v, want %v", got, want)
				}
				if st[0].Identifier != "refused" || st[2].Identifier != "written" {
					t.Errorf("Lookup not sorted by identifier: %+v", st)
				}
				if h.svc.Lookup("unknown") != nil {
					t.Error("Lookup of an unknown response is not empty")
				}
			},
		},
		{
			name: "MaxFinished forgets the oldest ended feedback, never a pending one",
			cfg:  func(c *feedback.Config) { c.MaxFinished = 2 },
			run: func(t *testing.T, h *harness) {
				h.ann.script = func(n int, a phoenix.SpanAnnotation) answer {
					if a.Metadata["response_id"] == "r1" && n > 0 {
						return notFound // r1's second vote stays pending
					}
					return accept
				}
				for i, id := range []string{"r1", "r2", "r3", "r4"} {
					h.indexSpan(id, byte(40+i))
				}
				h.submit(t, vote("r1", "up"))
				synctest.Wait()
				wantState(t, h.one(t, "r1"), feedback.Annotated)
				h.submit(t, vote("r1", "down"), vote("waiting", "up"))
				for _, id := range []string{"r2", "r3", "r4"} {
					h.submit(t, vote(id, "up"))
					synctest.Wait()
				}
				if st := h.svc.Lookup("r2"); st != nil {
					t.Errorf("r2 kept: %+v", st)
				}
				wantState(t, h.one(t, "r3"), feedback.Annotated)
				wantState(t, h.one(t, "r4"), feedback.Annotated)
				wantState(t, h.one(t, "r1"), feedback.Pending)
				wantState(t, h.one(t, "waiting"), feedback.Pending)
			},
		},
		{
			name: "an invalid feedback refuses the batch",
			run: func(t *testing.T, h *harness) {
				_, err := h.svc.Submit([]feedback.Feedback{vote("a", "up"), {ResponseID: "b", Name: "note", Thumbs: "up"}})
				var ferr *feedback.FieldError
				if !errors.As(err, &ferr) || ferr.Field != "name" {
					t.Fatalf("Submit = %v, want a FieldError on name", err)
				}
				if h.svc.Pending() != 0 {
					t.Errorf("Pending() = %d, want 0", h.svc.Pending())
				}
			},
		},
	}
	for _, code := range []int{400, 401, 403, 422} {
		tests = append(tests, testCase{
			name:    fmt.Sprintf("Phoenix %d: failed, not retried", code),
			answers: []answer{status(code), accept},
			run: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-5", 5)
				h.submit(t, vote("chatcmpl-5", "up"))
				time.Sleep(time.Hour)
				synctest.Wait()
				got := h.one(t, "chatcmpl-5")
				wantState(t, got, feedback.Failed)
				if !strings.Contains(got.Reason, "Phoenix refused the annotation") || !strings.Contains(got.Reason, fmt.Sprint(code)) {
					t.Errorf("reason = %q", got.Reason)
				}
				if n := len(h.ann.Calls()); n != 1 {
					t.Errorf("%d calls, want 1", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_annotate_attempts_total", "result", "permanent"); n != 1 {
					t.Errorf("permanent attempts = %v, want 1", n)
				}
				if n := h.metric(t, "feedbackproxy_feedback_total", "outcome", "failed"); n != 1 {
					t.Errorf("failed count = %v, want 1", n)
				}
			},
		})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			inBubble(t, cfg, tc.answers, tc.run)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   feedback.Config
		check func(t *testing.T, err error)
	}{
		{"zero is valid", feedback.Config{}, func(t *testing.T, err error) {
			if err != nil {
				t.Error(err)
			}
		}},
		{"negatives named in order", feedback.Config{MaxPending: -1, MaxAge: -time.Second}, func(t *testing.T, err error) {
			want := "feedback: MaxPending must be positive, got -1\nfeedback: MaxAge must be positive, got -1s"
			if err == nil || err.Error() != want {
				t.Errorf("err = %v, want %q", err, want)
			}
		}},
		{"MaxBytes below one request's worth", feedback.Config{MaxBytes: 64 << 10}, func(t *testing.T, err error) {
			if err == nil || err.Error() != "feedback: MaxBytes must be at least 1048576 (MaxBodyBytes), got 65536" {
				t.Errorf("err = %v", err)
			}
		}},
		{"negative MaxBytes", feedback.Config{MaxBytes: -1}, func(t *testing.T, err error) {
			if err == nil || err.Error() != "feedback: MaxBytes must be positive, got -1" {
				t.Errorf("err = %v", err)
			}
		}},
		{"MinBackoff above MaxBackoff", feedback.Config{MinBackoff: time.Minute, MaxBackoff: time.Second}, func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "MinBackoff 1m0s is above MaxBackoff 1s") {
				t.Errorf("err = %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, tc.cfg.Validate())
			if _, err := feedback.New(tc.cfg, nil, nil, nil, nil); err == nil {
				t.Error("New without resolver and annotator succeeded")
			}
		})
	}
}
