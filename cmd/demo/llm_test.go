package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
)

// startLLM serves llmserver for one test.
func startLLM(t *testing.T, cfg llmserver.Config) (*llmserver.Server, string) {
	t.Helper()
	srv, base, stop, err := llmserver.Start("", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	return srv, base
}

// spansByName indexes the recorded spans; names are unique in these tests.
func spansByName(t *testing.T, exp *tracetest.InMemoryExporter) map[string]tracetest.SpanStub {
	t.Helper()
	m := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if _, dup := m[s.Name]; dup {
			t.Fatalf("two spans named %q", s.Name)
		}
		m[s.Name] = s
	}
	return m
}

func attrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestAskSpans(t *testing.T) {
	srv, base := startLLM(t, llmserver.Config{})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	d := &demo{o: &options{model: "gpt-4o-mini", question: question}}
	tracer := tp.Tracer(tracerName)
	r, err := d.ask(context.Background(), tracer, newLLM(tracer, base, option.WithAPIKey("k")))
	if err != nil {
		t.Fatal(err)
	}
	if r.Answer != llmserver.BouvetAnswer {
		t.Errorf("answer %q, want %q", r.Answer, llmserver.BouvetAnswer)
	}
	id := srv.LastID()
	if r.ResponseID != id || !strings.HasPrefix(id, "chatcmpl-") {
		t.Errorf("response id %q, the server issued %q", r.ResponseID, id)
	}

	spans := spansByName(t, exp)
	parent, llmSpan, httpSpan := spans["answer question"], spans["chat gpt-4o-mini"], spans["POST"]
	if len(spans) != 3 || parent.Name == "" || llmSpan.Name == "" || httpSpan.Name == "" {
		t.Fatalf("spans %v, want answer question > chat gpt-4o-mini > POST", exp.GetSpans())
	}
	if llmSpan.Parent.SpanID() != parent.SpanContext.SpanID() || httpSpan.Parent.SpanID() != llmSpan.SpanContext.SpanID() {
		t.Error("want answer question > chat gpt-4o-mini > POST")
	}
	if parent.Parent.IsValid() {
		t.Error("the app's span should be the root")
	}
	if r.SpanID != llmSpan.SpanContext.SpanID().String() || r.TraceID != llmSpan.SpanContext.TraceID().String() {
		t.Errorf("reply names span %s/%s, the LLM span is %s", r.TraceID, r.SpanID, llmSpan.SpanContext.SpanID())
	}
	if llmSpan.SpanKind != trace.SpanKindClient || httpSpan.SpanKind != trace.SpanKindClient {
		t.Errorf("kinds %v %v, want client", llmSpan.SpanKind, httpSpan.SpanKind)
	}

	got := attrMap(llmSpan.Attributes)
	want := map[string]any{
		// OpenTelemetry GenAI.
		"gen_ai.operation.name":          "chat",
		"gen_ai.provider.name":           "openai",
		"gen_ai.system":                  "openai",
		"gen_ai.request.model":           "gpt-4o-mini",
		"gen_ai.response.id":             id,
		"gen_ai.response.model":          "gpt-4o-mini",
		"gen_ai.response.finish_reasons": []string{"stop"},
		"server.address":                 "127.0.0.1",
		// OpenInference.
		"openinference.span.kind":               "LLM",
		"llm.model_name":                        "gpt-4o-mini",
		"llm.system":                            "openai",
		"llm.provider":                          "openai",
		"llm.invocation_parameters":             `{"model":"gpt-4o-mini"}`,
		"input.mime_type":                       "application/json",
		"output.mime_type":                      "application/json",
		"llm.input_messages.0.message.role":     "user",
		"llm.input_messages.0.message.content":  question,
		"llm.output_messages.0.message.role":    "assistant",
		"llm.output_messages.0.message.content": llmserver.BouvetAnswer,
	}
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("LLM span has no %s", k)
			continue
		}
		if a, b := jsonOf(t, v.AsInterface()), jsonOf(t, w); a != b {
			t.Errorf("%s = %s, want %s", k, a, b)
		}
	}
	// Token counts: the server's usage, under both conventions.
	in, outTok, total := got["llm.token_count.prompt"].AsInt64(), got["llm.token_count.completion"].AsInt64(), got["llm.token_count.total"].AsInt64()
	if in <= 0 || outTok <= 0 || in+outTok != total ||
		got["gen_ai.usage.input_tokens"].AsInt64() != in || got["gen_ai.usage.output_tokens"].AsInt64() != outTok {
		t.Errorf("token counts: prompt %d completion %d total %d, gen_ai input %v output %v", in, outTok, total,
			got["gen_ai.usage.input_tokens"].AsInterface(), got["gen_ai.usage.output_tokens"].AsInterface())
	}
	// The id is also where OpenInference keeps it: "id" in output.value.
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(got["output.value"].AsString()), &out); err != nil || out.ID != id {
		t.Errorf("output.value %q: want the response JSON with id %s (%v)", got["output.value"].AsString(), id, err)
	}
	var req struct {
		Model    string
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal([]byte(got["input.value"].AsString()), &req); err != nil || req.Model != "gpt-4o-mini" || len(req.Messages) != 1 || req.Messages[0].Content != question {
		t.Errorf("input.value %q: want the request JSON (%v)", got["input.value"].AsString(), err)
	}

	// Only the LLM span carries the response id: the proxy must not find it
	// on the parent or the child.
	for _, s := range []tracetest.SpanStub{parent, httpSpan} {
		if _, ok := attrMap(s.Attributes)["gen_ai.response.id"]; ok {
			t.Errorf("span %q carries gen_ai.response.id", s.Name)
		}
	}
	pa := attrMap(parent.Attributes)
	if pa["openinference.span.kind"].AsString() != "CHAIN" || pa["output.value"].AsString() != llmserver.BouvetAnswer || pa["output.mime_type"].AsString() != "text/plain" {
		t.Errorf("parent attributes %v", parent.Attributes)
	}
	ha := attrMap(httpSpan.Attributes)
	if ha["http.request.method"].AsString() != "POST" || ha["http.response.status_code"].AsInt64() != 200 || !strings.HasSuffix(ha["url.full"].AsString(), "/v1/chat/completions") {
		t.Errorf("HTTP span attributes %v", httpSpan.Attributes)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAskErrorMarksSpans(t *testing.T) {
	_, base := startLLM(t, llmserver.Config{APIKey: "right"})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	d := &demo{o: &options{model: "gpt-4o-mini", question: question}}
	tracer := tp.Tracer(tracerName)
	_, err := d.ask(context.Background(), tracer, newLLM(tracer, base, option.WithAPIKey("wrong")))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err %v, want a 401", err)
	}
	spans := spansByName(t, exp)
	for name, s := range spans {
		if s.Status.Code != codes.Error {
			t.Errorf("span %q status %v, want error", name, s.Status)
		}
	}
	llmSpan := spans["chat gpt-4o-mini"]
	a := attrMap(llmSpan.Attributes)
	if a["error.type"].AsString() != "401" {
		t.Errorf("error.type %q, want 401", a["error.type"].AsString())
	}
	if _, ok := a["gen_ai.response.id"]; ok {
		t.Error("a failed call has no response id")
	}
}

func TestServerAttrs(t *testing.T) {
	tests := []struct {
		base string
		want string
	}{
		{"https://api.openai.com/v1", `[{"Key":"server.address","Value":{"Type":"STRING","Value":"api.openai.com"}},{"Key":"server.port","Value":{"Type":"INT64","Value":443}}]`},
		{"http://127.0.0.1:8000/v1", `[{"Key":"server.address","Value":{"Type":"STRING","Value":"127.0.0.1"}},{"Key":"server.port","Value":{"Type":"INT64","Value":8000}}]`},
		{"::", `null`},
	}
	for _, tt := range tests {
		if got := jsonOf(t, serverAttrs(tt.base)); got != tt.want {
			t.Errorf("serverAttrs(%q) = %s, want %s", tt.base, got, tt.want)
		}
	}
}
