//go:build e2e

package e2e

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// The app's batch processor holds its spans this long (the SDK's default),
// and the app stays up a little longer so that the processor's own timer,
// not the exit, sends them.
const (
	heldScheduleDelayMS = 5000
	heldLingerMS        = 6000
)

// TestFeedbackBeforeExport sends feedback the moment the app has its
// response, while the LLM span still waits in the app's BatchSpanProcessor:
// the feedback must wait and land when the span does. It logs, per case and
// over all, how long after the feedback the annotation became visible in
// Phoenix (E2E_LATENCY lines).
func TestFeedbackBeforeExport(t *testing.T) {
	t.Parallel()
	cases := []appOptions{
		{Instrumentation: "openinference", Call: "chat", Exporter: "http"},
		{Instrumentation: "openinference", Call: "chat-stream", Exporter: "grpc"},
		{Instrumentation: "openinference", Call: "responses", Exporter: "grpc"},
		{Instrumentation: "openinference", Call: "responses-stream", Exporter: "http"},
		{Instrumentation: "openai-v2", Call: "chat", Exporter: "grpc"},
		{Instrumentation: "openai-v2", Call: "chat-stream", Exporter: "http"},
	}
	var (
		mu                     sync.Mutex
		toVisible, spanVisible []time.Duration
	)
	runCases(t, cases, appOptions.String, func(t *testing.T, opts appOptions) {
		p := startProxy(t, nil)
		_, llmURL := startLLM(t)
		v := vote{identifier: "user-early", up: true}
		var sent time.Time
		a, res := whileHeld(t, p, llmURL, opts, func(res appResult) bool {
			sent = time.Now()
			fst := sendVote(t, p, res.ResponseID, v)
			return fst.State == feedback.Pending && fst.SpanID == ""
		})
		c := phoenixClient(t)
		indexed, visible, llmID := waitVisible(t, p, c, res.ResponseID)
		held, toVis, spanVis := indexed.Sub(sent), visible.Sub(sent), visible.Sub(indexed)
		t.Logf("E2E_LATENCY case=%s feedback_to_visible=%s span_to_visible=%s span_held_after_feedback=%s",
			opts, ms(toVis), ms(spanVis), ms(held))

		tr := shapeOf(waitTrace(t, c, "default", res.TraceID, 3), llmID)
		checkLLMShape(t, tr, res.ResponseID)
		waitVotes(t, c, "default", tr, []vote{v})
		waitState(t, p, res.ResponseID, string(feedback.Annotated), 10*time.Second)
		a.wait(t)
		mu.Lock()
		toVisible, spanVisible = append(toVisible, toVis), append(spanVisible, spanVis)
		mu.Unlock()
	})
	if len(toVisible) > 0 {
		t.Logf("E2E_LATENCY_SUMMARY cases=%d feedback_to_visible_median=%s feedback_to_visible_worst=%s "+
			"span_to_visible_median=%s span_to_visible_worst=%s",
			len(toVisible), ms(median(toVisible)), ms(slices.Max(toVisible)), ms(median(spanVisible)), ms(slices.Max(spanVisible)))
	}
}

// heldAttempts is how many times a case whose feedback must arrive before
// the span runs the app: on a loaded machine the batch processor's timer may
// fire during the call, before the feedback is sent.
const heldAttempts = 3

// whileHeld starts the app with its spans held in its batch processor and
// calls send with the result at once. send reports whether its feedback
// still found the span unexported (pending, no span); when it did not, the
// case runs again with a new app. It returns the app of the good attempt.
func whileHeld(t *testing.T, p *proxy.Proxy, llmURL string, opts appOptions, send func(appResult) bool) (*app, appResult) {
	t.Helper()
	opts.ScheduleDelayMS, opts.PrintEarly, opts.LingerMS = heldScheduleDelayMS, true, heldLingerMS
	for attempt := 1; ; attempt++ {
		a := startApp(t, p, llmURL, opts)
		res := a.result(t)
		if send(res) {
			return a, res
		}
		if attempt == heldAttempts {
			t.Fatalf("in %d attempts, the app's batch processor always exported the span before the feedback was sent", attempt)
		}
		t.Logf("attempt %d: the span of %s left the app before the feedback; running the app again", attempt, res.ResponseID)
	}
}

// waitVisible polls, more finely than eventually, until the proxy has
// indexed the response id and Phoenix shows an annotation on its span. It
// returns when each was first seen, and the span.
func waitVisible(t *testing.T, p *proxy.Proxy, c *phoenix.Client, responseID string) (indexed, visible time.Time, spanID string) {
	t.Helper()
	deadline := time.Now().Add(heldScheduleDelayMS*time.Millisecond + phoenixWait)
	for time.Now().Before(deadline) {
		if spanID == "" {
			if st := getFeedback(t, p, responseID); st.Indexed {
				indexed, spanID = time.Now(), st.Span.SpanID
			}
		}
		if spanID != "" && len(annotationsOn(t, c, "default", spanID)) > 0 {
			return indexed, time.Now(), spanID
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no annotation for %s in Phoenix in time (span indexed: %q)", responseID, spanID)
	return
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestFeedbackExpires sends feedback for a response id that no span ever
// carries: it must end expired, and say so in GET /feedback and the metric.
func TestFeedbackExpires(t *testing.T) {
	t.Parallel()
	const maxAge = 2 * time.Second
	p := startProxy(t, func(cfg *proxy.Config) { cfg.Feedback.MaxAge = maxAge })
	id := "chatcmpl-never" + randomSuffix()
	if got := metric(t, p, `feedbackproxy_feedback_total{outcome="expired"}`); got != "0" {
		t.Fatalf(`before: feedbackproxy_feedback_total{outcome="expired"} = %q, want 0`, got)
	}
	fst := sendVote(t, p, id, vote{identifier: "user-1", up: false})
	if fst.State != feedback.Pending {
		t.Fatalf("POST /feedback = %+v, want pending", fst)
	}
	start := time.Now()
	st := waitState(t, p, id, string(feedback.Expired), maxAge+10*time.Second)
	t.Logf("expired %s after the feedback: %s", time.Since(start).Round(100*time.Millisecond), st.Feedback[0].Reason)
	if st.Indexed || len(st.Feedback) != 1 || st.Feedback[0].Reason == "" || st.Feedback[0].Identifier != "user-1" {
		t.Errorf("GET /feedback/%s = %+v, want one expired feedback of user-1 with a reason, not indexed", id, st)
	}
	if code, _ := getFeedbackCode(t, p, id); code != http.StatusOK {
		t.Errorf("GET /feedback/%s answered %d, want 200 while the expired feedback is kept", id, code)
	}
	for outcome, want := range map[string]string{"expired": "1", "annotated": "0", "failed": "0"} {
		if got := metric(t, p, `feedbackproxy_feedback_total{outcome="`+outcome+`"}`); got != want {
			t.Errorf(`feedbackproxy_feedback_total{outcome=%q} = %q, want %s`, outcome, got, want)
		}
	}
	if got := metric(t, p, "feedbackproxy_feedback_pending"); got != "0" {
		t.Errorf("feedbackproxy_feedback_pending = %q, want 0", got)
	}
}

// TestVotes: two users voting on one response give two annotations; one
// user voting twice gives one, with the second vote. Each with the votes
// sent after the span reached Phoenix (Phoenix upserts) and before it left
// the app (the proxy keeps the latest pending vote).
func TestVotes(t *testing.T) {
	t.Parallel()
	type votesCase struct {
		name        string
		opts        appOptions
		beforeSpan  bool
		votes, want []vote
	}
	cases := []votesCase{
		{
			name:  "two-users/after-span",
			opts:  appOptions{Instrumentation: "openinference", Call: "chat", Exporter: "http"},
			votes: []vote{{"alice", true}, {"bob", false}},
			want:  []vote{{"alice", true}, {"bob", false}},
		},
		{
			name:  "same-user-twice/after-span",
			opts:  appOptions{Instrumentation: "openai-v2", Call: "chat", Exporter: "grpc"},
			votes: []vote{{"alice", true}, {"alice", false}},
			want:  []vote{{"alice", false}},
		},
		{
			name:       "two-users/before-span",
			opts:       appOptions{Instrumentation: "openai-v2", Call: "chat-stream", Exporter: "http"},
			beforeSpan: true,
			votes:      []vote{{"alice", false}, {"bob", true}},
			want:       []vote{{"alice", false}, {"bob", true}},
		},
		{
			name:       "same-user-twice/before-span",
			opts:       appOptions{Instrumentation: "openinference", Call: "responses", Exporter: "grpc"},
			beforeSpan: true,
			votes:      []vote{{"alice", false}, {"alice", true}},
			want:       []vote{{"alice", true}},
		},
	}
	runCases(t, cases, func(tc votesCase) string { return tc.name }, func(t *testing.T, tc votesCase) {
		p := startProxy(t, nil)
		_, llmURL := startLLM(t)
		c := phoenixClient(t)
		var (
			a   *app
			res appResult
			tr  traceShape
		)
		if tc.beforeSpan {
			a, res = whileHeld(t, p, llmURL, tc.opts, func(res appResult) bool {
				held := true
				for _, v := range tc.votes {
					st := sendVote(t, p, res.ResponseID, v)
					held = held && st.State == feedback.Pending && st.SpanID == ""
				}
				return held
			})
			st := waitState(t, p, res.ResponseID, string(feedback.Annotated), heldScheduleDelayMS*time.Millisecond+phoenixWait)
			tr = shapeOf(waitTrace(t, c, "default", res.TraceID, 3), st.Span.SpanID)
		} else {
			a = startApp(t, p, llmURL, tc.opts)
			a.wait(t)
			res = a.result(t)
			st := waitIndexed(t, p, res.ResponseID)
			tr = shapeOf(waitTrace(t, c, "default", res.TraceID, 3), st.Span.SpanID)
			// One vote at a time, each visible before the next: the
			// second must replace or join the first in Phoenix.
			for i, v := range tc.votes {
				sendVote(t, p, res.ResponseID, v)
				var sofar []vote
				for _, w := range tc.votes[:i+1] {
					sofar = slices.DeleteFunc(sofar, func(x vote) bool { return x.identifier == w.identifier })
					sofar = append(sofar, w)
				}
				waitVotes(t, c, "default", tr, sofar)
			}
		}
		checkLLMShape(t, tr, res.ResponseID)
		waitVotes(t, c, "default", tr, tc.want)
		st := waitState(t, p, res.ResponseID, string(feedback.Annotated), 10*time.Second)
		var ids []string
		for _, f := range st.Feedback {
			ids = append(ids, f.Identifier)
		}
		if got, want := strings.Join(ids, ","), identifiers(tc.want); got != want {
			t.Errorf("GET /feedback lists feedback of %s, want %s", got, want)
		}
		a.wait(t)
	})
}

func identifiers(votes []vote) string {
	var ids []string
	for _, v := range votes {
		ids = append(ids, v.identifier)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// TestProjectRouting runs apps whose resource says
// openinference.project.name=chatbot: Phoenix must show their spans in
// project chatbot, not default, and the annotation must be there too.
func TestProjectRouting(t *testing.T) {
	t.Parallel()
	const project = "chatbot"
	cases := []appOptions{
		{Instrumentation: "openinference", Call: "chat", Exporter: "grpc", Project: project},
		{Instrumentation: "openai-v2", Call: "chat-stream", Exporter: "http", Project: project},
	}
	runCases(t, cases, appOptions.String, func(t *testing.T, opts appOptions) {
		p := startProxy(t, nil)
		_, llmURL := startLLM(t)
		res := runApp(t, p, llmURL, opts)
		st := waitIndexed(t, p, res.ResponseID)
		if st.Span.Project != project {
			t.Fatalf("GET /feedback/%s = %+v, want indexed in project %s", res.ResponseID, st, project)
		}
		v := vote{identifier: "user-chatbot", up: true}
		if fst := sendVote(t, p, res.ResponseID, v); fst.Project != project {
			t.Errorf("POST /feedback = %+v, want project %s", fst, project)
		}
		c := phoenixClient(t)
		tr := shapeOf(waitTrace(t, c, project, res.TraceID, 3), st.Span.SpanID)
		checkLLMShape(t, tr, res.ResponseID)
		waitVotes(t, c, project, tr, []vote{v})
		if spans := spansOfTrace(t, c, "default", res.TraceID); len(spans) != 0 {
			t.Errorf("Phoenix shows spans of the trace in project default too: %s", describeSpans(spans))
		}
		if anns := annotationsOn(t, c, "default", tr.llm.Context.SpanID); len(anns) != 0 {
			t.Errorf("Phoenix shows the annotation in project default: %s", describeAnnotations(anns))
		}
	})
}
