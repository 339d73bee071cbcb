//go:build e2e

package e2e

import (
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// TestPhoenixLookup: replica B never saw the span and shares no index with
// A (no Redis); it still writes the annotation on the right span, found by
// asking Phoenix: by gen_ai.response.id for openai-v2 spans, inside
// output.value for OpenInference ones.
func TestPhoenixLookup(t *testing.T) {
	for _, inst := range []string{"openinference", "openai-v2"} {
		t.Run(inst, func(t *testing.T) {
			project := "lookup-" + inst + "-" + randomSuffix()
			a := startProxy(t, nil)
			b := startProxy(t, func(cfg *proxy.Config) { cfg.Feedback.SyncWait = -1 })
			_, llmURL := startLLM(t)
			res := runApp(t, a, llmURL, appOptions{Instrumentation: inst, Call: "chat", Exporter: "http", Project: project})
			seen := getFeedback(t, a, res.ResponseID)
			if !seen.Indexed || seen.Span == nil {
				t.Fatalf("A did not index %s: %+v", res.ResponseID, seen)
			}

			v := vote{identifier: "user-lookup-" + inst, up: inst == "openinference"}
			if st := sendVote(t, b, res.ResponseID, v); st.State != feedback.Pending || st.SpanID != "" {
				t.Fatalf("B answered %+v, want pending: it never saw the span", st)
			}
			start := time.Now()
			got := waitState(t, b, res.ResponseID, string(feedback.Annotated), 60*time.Second)
			t.Logf("resolved through Phoenix in %s", time.Since(start).Round(time.Millisecond))
			if got.Span == nil || got.Span.SpanID != seen.Span.SpanID || got.Span.TraceID != seen.Span.TraceID || got.Span.Project != project {
				t.Fatalf("B resolved %s to %+v, A indexed %+v", res.ResponseID, got.Span, seen.Span)
			}
			c := phoenixClient(t)
			tr := shapeOf(waitTrace(t, c, project, res.TraceID, 3), seen.Span.SpanID)
			checkLLMShape(t, tr, res.ResponseID)
			waitVotes(t, c, project, tr, []vote{v})
			if m := metric(t, b, `feedbackproxy_seek_found_total{via="phoenix"}`); m != "1" {
				t.Errorf(`B's feedbackproxy_seek_found_total{via="phoenix"} = %q, want 1`, m)
			}
		})
	}
}
