//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// rootSpanName is the app's request handler span, the LLM span's parent.
const rootSpanName = "handle_request"

// phoenixWait bounds every wait for Phoenix: ingest takes about a second.
const phoenixWait = 30 * time.Second

// spansOfTrace returns the spans Phoenix has for the trace in the project;
// none when the project does not exist yet.
func spansOfTrace(t *testing.T, c *phoenix.Client, project, traceID string) []phoenix.Span {
	t.Helper()
	spans, err := c.Spans(context.Background(), project, phoenix.SpanQuery{TraceID: traceID, Limit: 100})
	if phoenix.IsSpanNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading the spans of trace %s in project %s: %v", traceID, project, err)
	}
	return spans
}

// waitTrace waits until Phoenix shows the app's whole trace in the project:
// the root span (it ends last, so it leaves the app last) and at least min
// spans, the same number twice in a row.
func waitTrace(t *testing.T, c *phoenix.Client, project, traceID string, min int) []phoenix.Span {
	t.Helper()
	var spans []phoenix.Span
	prev := -1
	eventually(t, phoenixWait, fmt.Sprintf("trace %s in Phoenix project %s", traceID, project), func() (bool, string) {
		spans = spansOfTrace(t, c, project, traceID)
		n := len(spans)
		ok := n >= min && n == prev && slices.ContainsFunc(spans, func(s phoenix.Span) bool { return s.Name == rootSpanName })
		prev = n
		return ok, describeSpans(spans)
	})
	return spans
}

// traceShape is the app's trace as Phoenix shows it, around one LLM span.
type traceShape struct {
	spans            []phoenix.Span
	root, llm, child *phoenix.Span // llm and child are nil when missing
}

// shapeOf finds the root, the span with id llmSpanID and its child.
func shapeOf(spans []phoenix.Span, llmSpanID string) traceShape {
	tr := traceShape{spans: spans}
	for i := range spans {
		s := &spans[i]
		switch {
		case s.Name == rootSpanName && s.ParentID == "":
			tr.root = s
		case llmSpanID != "" && s.Context.SpanID == llmSpanID:
			tr.llm = s
		}
	}
	for i := range spans {
		if llmSpanID != "" && spans[i].ParentID == llmSpanID {
			tr.child = &spans[i]
		}
	}
	return tr
}

func (tr traceShape) spanIDs() []string {
	ids := make([]string, len(tr.spans))
	for i, s := range tr.spans {
		ids[i] = s.Context.SpanID
	}
	return ids
}

// llmKind returns the spans Phoenix classifies as LLM spans.
func llmKind(spans []phoenix.Span) []phoenix.Span {
	var out []phoenix.Span
	for _, s := range spans {
		if s.SpanKind == "LLM" {
			out = append(out, s)
		}
	}
	return out
}

// responseIDIn says which attribute of the span carries the response id:
// gen_ai.response.id, or a top-level key of the JSON in output.value: "id"
// (OpenAI, Anthropic) gives "output.value", "response_id" or "responseId"
// (Google) "output.value (response_id)". Phoenix fills output.value from
// gen_ai.* at ingest, so the GenAI attribute is looked at first. "" when
// none does.
func responseIDIn(s phoenix.Span, responseID string) string {
	if v, _ := s.Attributes["gen_ai.response.id"].(string); v == responseID {
		return "gen_ai.response.id"
	}
	if v, ok := s.Attributes["output.value"].(string); ok {
		var out map[string]any
		if json.Unmarshal([]byte(v), &out) == nil {
			for _, key := range []string{"id", "response_id", "responseId"} {
				if id, _ := out[key].(string); id == responseID {
					if key == "id" {
						return "output.value"
					}
					return "output.value (" + key + ")"
				}
			}
		}
	}
	return ""
}

// carriesID reports whether any attribute of any span mentions the id.
func carriesID(spans []phoenix.Span, responseID string) []string {
	var where []string
	for _, s := range spans {
		for k, v := range s.Attributes {
			if strings.Contains(fmt.Sprint(v), responseID) {
				where = append(where, s.Name+"."+k)
			}
		}
	}
	slices.Sort(where)
	return where
}

// treeOf renders the span tree: "handle_request > POST".
func treeOf(spans []phoenix.Span) string {
	var b strings.Builder
	var walk func(parent string)
	walk = func(parent string) {
		var kids []phoenix.Span
		for _, s := range spans {
			if s.ParentID == parent {
				kids = append(kids, s)
			}
		}
		slices.SortFunc(kids, func(a, b phoenix.Span) int { return strings.Compare(a.Name, b.Name) })
		for i, s := range kids {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "`%s`", s.Name)
			if s.SpanKind == "LLM" {
				b.WriteString(" (LLM)")
			}
			if hasChildren(spans, s.Context.SpanID) {
				b.WriteString(" > ")
				walk(s.Context.SpanID)
			}
		}
	}
	walk("")
	return b.String()
}

func hasChildren(spans []phoenix.Span, id string) bool {
	return slices.ContainsFunc(spans, func(s phoenix.Span) bool { return s.ParentID == id })
}

func describeSpans(spans []phoenix.Span) string {
	parts := make([]string, len(spans))
	for i, s := range spans {
		parts[i] = fmt.Sprintf("%s(%s kind=%s parent=%s)", s.Name, s.Context.SpanID, s.SpanKind, s.ParentID)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// checkLLMShape checks that Phoenix shows the span the proxy indexed as the
// only LLM span of the trace, a child of the app's handler and the parent of
// the HTTP client span, carrying the response id. It returns the attribute
// the id is in.
func checkLLMShape(t *testing.T, tr traceShape, responseID string) string {
	t.Helper()
	if tr.root == nil || tr.llm == nil || tr.child == nil {
		t.Fatalf("want %s > LLM span > HTTP client span in Phoenix, got %s", rootSpanName, describeSpans(tr.spans))
	}
	return checkLLMSpan(t, tr, responseID)
}

// checkLLMShapeSibling is checkLLMShape for the instrumentations whose LLM
// span is not the current span while the SDK sends its request: the HTTP
// client span is then the LLM span's sibling, another child of the
// handler, and the LLM span has no child.
func checkLLMShapeSibling(t *testing.T, tr traceShape, responseID string) string {
	t.Helper()
	if tr.root == nil || tr.llm == nil {
		t.Fatalf("want %s > LLM span, HTTP client span in Phoenix, got %s", rootSpanName, describeSpans(tr.spans))
	}
	if tr.child != nil {
		t.Fatalf("the LLM span %s has a child %s: the HTTP client span is not its sibling any more; "+
			"move the cell out of httpSibling in e2e/matrix_test.go: %s", tr.llm.Name, tr.child.Name, describeSpans(tr.spans))
	}
	var sibling *phoenix.Span
	for i := range tr.spans {
		s := &tr.spans[i]
		if s.ParentID == tr.root.Context.SpanID && s.Context.SpanID != tr.llm.Context.SpanID {
			if _, ok := s.Attributes["http.method"]; ok {
				sibling = s
			}
		}
	}
	if sibling == nil {
		t.Fatalf("no HTTP client span beside the LLM span %s under %s: %s", tr.llm.Name, rootSpanName, describeSpans(tr.spans))
	}
	return checkLLMSpan(t, tr, responseID)
}

func checkLLMSpan(t *testing.T, tr traceShape, responseID string) string {
	t.Helper()
	if tr.llm.ParentID != tr.root.Context.SpanID {
		t.Errorf("the indexed span %s is not a child of %s: %s", tr.llm.Name, rootSpanName, describeSpans(tr.spans))
	}
	if llms := llmKind(tr.spans); len(llms) != 1 || llms[0].Context.SpanID != tr.llm.Context.SpanID {
		t.Errorf("Phoenix's LLM spans are %s, want only the indexed one %s", describeSpans(llms), tr.llm.Context.SpanID)
	}
	if tr.child != nil {
		if _, ok := tr.child.Attributes["http.method"]; !ok {
			t.Errorf("the LLM span's child %s is not the HTTP client span: %v", tr.child.Name, tr.child.Attributes)
		}
	}
	in := responseIDIn(*tr.llm, responseID)
	if in == "" {
		t.Errorf("the LLM span in Phoenix does not carry the response id %s", responseID)
	}
	return in
}

// vote is an annotation we expect from one feedback.
type vote struct {
	identifier string
	up         bool
}

func (v vote) label() string {
	if v.up {
		return "thumbs-up"
	}
	return "thumbs-down"
}

func (v vote) score() float64 {
	if v.up {
		return 1
	}
	return 0
}

func (v vote) thumbs() string {
	if v.up {
		return "up"
	}
	return "down"
}

// matches reports whether the annotations are exactly the votes, on span.
func matches(anns []phoenix.StoredSpanAnnotation, spanID string, votes []vote) bool {
	if len(anns) != len(votes) {
		return false
	}
	for _, v := range votes {
		if !slices.ContainsFunc(anns, func(a phoenix.StoredSpanAnnotation) bool {
			return a.SpanID == spanID && a.Name == "user feedback" && a.AnnotatorKind == "HUMAN" &&
				a.Identifier == v.identifier && a.Result.Label != nil && *a.Result.Label == v.label() &&
				a.Result.Score != nil && *a.Result.Score == v.score()
		}) {
			return false
		}
	}
	return true
}

func describeAnnotations(anns []phoenix.StoredSpanAnnotation) string {
	parts := make([]string, len(anns))
	for i, a := range anns {
		parts[i] = fmt.Sprintf("{span %s %q %s identifier=%q %s}", a.SpanID, a.Name, a.AnnotatorKind, a.Identifier, describe(a.Result.Label, a.Result.Score))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// waitVotes waits until the annotations on the trace's spans are exactly the
// votes ("user feedback", HUMAN, label, score, identifier), all on the LLM
// span: none on its parent or its child. It returns how long that took.
func waitVotes(t *testing.T, c *phoenix.Client, project string, tr traceShape, votes []vote) time.Duration {
	t.Helper()
	return eventually(t, phoenixWait, "the votes on the LLM span, and only there", func() (bool, string) {
		anns := annotationsOfTrace(t, c, project, tr)
		return matches(anns, tr.llm.Context.SpanID, votes), describeAnnotations(anns)
	})
}

// annotationsOfTrace returns every annotation on the trace's spans.
func annotationsOfTrace(t *testing.T, c *phoenix.Client, project string, tr traceShape) []phoenix.StoredSpanAnnotation {
	t.Helper()
	anns, err := c.SpanAnnotations(context.Background(), project, tr.spanIDs())
	if phoenix.IsSpanNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading the annotations of trace: %v", err)
	}
	return anns
}

// waitState waits until GET /feedback/{id} shows every feedback for the
// response in the state.
func waitState(t *testing.T, p *proxy.Proxy, responseID string, want string, timeout time.Duration) feedback.ResponseState {
	t.Helper()
	var st feedback.ResponseState
	eventually(t, timeout, "feedback for "+responseID+" "+want, func() (bool, string) {
		st = getFeedback(t, p, responseID)
		ok := len(st.Feedback) > 0
		for _, f := range st.Feedback {
			ok = ok && string(f.State) == want
		}
		return ok, fmt.Sprintf("%+v", st)
	})
	return st
}

// metric returns the value of one sample, e.g.
// `feedbackproxy_feedback_total{outcome="expired"}`, from the proxy's admin
// listener; "" when it is not there.
func metric(t *testing.T, p *proxy.Proxy, sample string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.Addrs().Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// sendVote posts one thumbs feedback and returns the answer.
func sendVote(t *testing.T, p *proxy.Proxy, responseID string, v vote) feedback.Status {
	t.Helper()
	code, st := postFeedback(t, p, map[string]any{"response_id": responseID, "thumbs": v.thumbs(), "identifier": v.identifier})
	if code != http.StatusAccepted {
		t.Fatalf("POST /feedback for %s = %d %+v, want 202", responseID, code, st)
	}
	return st
}
