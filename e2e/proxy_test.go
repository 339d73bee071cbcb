//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// chatTrace is a request handler span, the OpenInference ChatCompletion span
// inside it, and the HTTP client span inside that: the shape of a trace
// from an instrumented app, with the response id only in output.value.
type chatTrace struct {
	td                           ptrace.Traces
	responseID                   string
	traceID                      pcommon.TraceID
	handler, llm, httpClientSpan pcommon.SpanID
}

func newChatTrace(project string) chatTrace {
	ct := chatTrace{
		td:         ptrace.NewTraces(),
		responseID: "chatcmpl-e2e" + randomSuffix(),
		traceID:    randomTraceID(),
		handler:    randomSpanID(), llm: randomSpanID(), httpClientSpan: randomSpanID(),
	}
	rs := ct.td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "e2e-app")
	if project != "" {
		rs.Resource().Attributes().PutStr("openinference.project.name", project)
	}
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	now := time.Now()
	add := func(name string, id, parent pcommon.SpanID, startOffset, endOffset time.Duration) ptrace.Span {
		s := spans.AppendEmpty()
		s.SetName(name)
		s.SetTraceID(ct.traceID)
		s.SetSpanID(id)
		s.SetParentSpanID(parent)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(startOffset)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(endOffset)))
		return s
	}
	add("handle_request", ct.handler, pcommon.SpanID{}, 0, 50*time.Millisecond).Attributes().PutStr("openinference.span.kind", "CHAIN")
	llm := add("ChatCompletion", ct.llm, ct.handler, 5*time.Millisecond, 40*time.Millisecond)
	a := llm.Attributes()
	a.PutStr("openinference.span.kind", "LLM")
	a.PutStr("llm.system", "openai")
	a.PutStr("llm.model_name", "gpt-4o-mini")
	a.PutStr("input.mime_type", "application/json")
	a.PutStr("input.value", `{"messages":[{"role":"user","content":"Which ocean contains Bouvet Island?"}],"model":"gpt-4o-mini"}`)
	a.PutStr("output.mime_type", "application/json")
	a.PutStr("output.value", fmt.Sprintf(`{"id":%q,"object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"South Atlantic Ocean"},"finish_reason":"stop"}]}`, ct.responseID))
	add("POST", ct.httpClientSpan, ct.llm, 6*time.Millisecond, 39*time.Millisecond).Attributes().PutStr("http.request.method", "POST")
	return ct
}

func exportHTTP(t *testing.T, p *proxy.Proxy, td ptrace.Traces) {
	t.Helper()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+p.Addrs().OTLPHTTP+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OTLP/HTTP export answered %d", resp.StatusCode)
	}
}

func exportGRPC(t *testing.T, p *proxy.Proxy, td ptrace.Traces) {
	t.Helper()
	cc, err := grpc.NewClient(p.Addrs().OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatalf("OTLP/gRPC export: %v", err)
	}
}

// checkOnlyOnLLMSpan waits for exactly one annotation, with the given
// identifier and label, on the LLM span, and checks its parent and child
// have none.
func checkOnlyOnLLMSpan(t *testing.T, ct chatTrace, project, identifier, label string, score float64) time.Duration {
	t.Helper()
	c := phoenixClient(t)
	took := eventually(t, 30*time.Second, "annotation on the LLM span in Phoenix", func() (bool, string) {
		anns := annotationsOn(t, c, project, ct.llm.String())
		return len(anns) > 0, fmt.Sprintf("%+v", anns)
	})
	anns := annotationsOn(t, c, project, ct.llm.String())
	if len(anns) != 1 {
		t.Fatalf("LLM span has %d annotations, want 1: %+v", len(anns), anns)
	}
	a := anns[0]
	if a.Name != "user feedback" || a.AnnotatorKind != "HUMAN" || a.Identifier != identifier ||
		a.Result.Label == nil || *a.Result.Label != label || a.Result.Score == nil || *a.Result.Score != score {
		t.Errorf("annotation = %+v (result %s), want user feedback/HUMAN/%q label %q score %v", a, describe(a.Result.Label, a.Result.Score), identifier, label, score)
	}
	for name, id := range map[string]pcommon.SpanID{"parent": ct.handler, "child": ct.httpClientSpan} {
		if anns := annotationsOn(t, c, project, id.String()); len(anns) != 0 {
			t.Errorf("the %s span has annotations: %+v", name, anns)
		}
	}
	return took
}

func describe(label *string, score *float64) string {
	s := "label=<nil>"
	if label != nil {
		s = "label=" + *label
	}
	if score != nil {
		s += fmt.Sprintf(" score=%v", *score)
	}
	return s
}

// The span arrives first; the feedback later, by response id only.
func TestFeedbackAfterSpan(t *testing.T) {
	p := startProxy(t, nil)
	ct := newChatTrace("")
	exportHTTP(t, p, ct.td)

	st := waitIndexed(t, p, ct.responseID)
	if st.Span.SpanID != ct.llm.String() {
		t.Fatalf("after the export, GET /feedback/%s = %+v, want indexed on the LLM span %s", ct.responseID, st, ct.llm)
	}
	code, fst := postFeedback(t, p, map[string]any{"response_id": ct.responseID, "thumbs": "up", "identifier": "user-1"})
	if code != http.StatusAccepted || fst.SpanID != ct.llm.String() {
		t.Fatalf("POST /feedback = %d %+v, want 202 on span %s", code, fst, ct.llm)
	}
	took := checkOnlyOnLLMSpan(t, ct, "default", "user-1", "thumbs-up", 1)
	t.Logf("annotation visible in Phoenix %s after the feedback (state at POST: %s)", took, fst.State)
}

// The feedback arrives before the span (the app's exporter still holds it):
// it waits, and lands when the span comes through, here over gRPC into a
// project of its own.
func TestFeedbackBeforeSpan(t *testing.T) {
	p := startProxy(t, nil)
	ct := newChatTrace("e2e-before")
	code, fst := postFeedback(t, p, map[string]any{"response_id": ct.responseID, "thumbs": "down", "identifier": "user-2", "explanation": "wrong ocean"})
	if code != http.StatusAccepted || fst.State != "pending" {
		t.Fatalf("POST /feedback before the span = %d %+v, want 202 pending", code, fst)
	}
	exportGRPC(t, p, ct.td)
	checkOnlyOnLLMSpan(t, ct, "e2e-before", "user-2", "thumbs-down", 0)
	eventually(t, 10*time.Second, "state annotated", func() (bool, string) {
		st := getFeedback(t, p, ct.responseID)
		ok := len(st.Feedback) == 1 && st.Feedback[0].State == "annotated" && st.Feedback[0].AnnotationID != ""
		return ok, fmt.Sprintf("%+v", st)
	})
}
