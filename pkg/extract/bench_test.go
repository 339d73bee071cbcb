package extract_test

import (
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
)

// Run the extractor's benchmarks with
//
//	go test -run '^$' -bench . -benchmem ./pkg/extract/

// benchOutput is an OpenAI chat completion of about size bytes, as
// OpenInference records it in output.value: the id first, then the answer.
func benchOutput(id string, size int) string {
	head := `{"id":"` + id + `","choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"`
	tail := `","refusal":null,"role":"assistant","annotations":[]}}],"created":1767225600,"model":"gpt-4o-mini-2024-07-18",` +
		`"object":"chat.completion","service_tier":"default","system_fingerprint":"fp_0aa8d3e20b",` +
		`"usage":{"completion_tokens":187,"prompt_tokens":412,"total_tokens":599}}`
	n := max(size-len(head)-len(tail), 0)
	answer := strings.Repeat("Bouvet Island lies in the South Atlantic Ocean. ", n/48+1)[:n]
	return head + answer + tail
}

// benchOutputIDLast puts the id after the answer, the worst case of the
// extractor, which must then skip the whole completion.
func benchOutputIDLast(id string, size int) string {
	s := benchOutput(id, size)
	s = strings.Replace(s, `"id":"`+id+`",`, "", 1)
	return s[:len(s)-1] + `,"id":"` + id + `"}`
}

// benchLangChainOutput is LangChain's LLMResult for a chat completion of
// about size bytes, as openinference-instrumentation-langchain records it
// (json.dumps): the id deep in the first generation's message, after the
// answer, which is there twice.
func benchLangChainOutput(id string, size int) string {
	head := `{"generations": [[{"text": "`
	mid := `", "generation_info": {"finish_reason": "stop", "logprobs": null}, "type": "ChatGeneration", "message": ` +
		`{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"], "kwargs": {"content": "`
	tail := `", "additional_kwargs": {"refusal": null}, "response_metadata": {"token_usage": {"completion_tokens": 187, ` +
		`"prompt_tokens": 412, "total_tokens": 599}, "model_provider": "openai", "model_name": "gpt-4o-mini-2024-07-18", ` +
		`"system_fingerprint": "fp_0aa8d3e20b", "id": "` + id + `", "service_tier": "default", "finish_reason": "stop", ` +
		`"logprobs": null}, "type": "ai", "id": "lc_run--019a35a4-5255-74e2-b39e-606f33b7c9c8-0", "tool_calls": [], ` +
		`"invalid_tool_calls": []}}}]], "llm_output": {"model_name": "gpt-4o-mini-2024-07-18", "id": "` + id + `"}, ` +
		`"run": null, "type": "LLMResult"}`
	n := max((size-len(head)-len(mid)-len(tail))/2, 0)
	answer := strings.Repeat("Bouvet Island lies in the South Atlantic Ocean. ", n/48+1)[:n]
	return head + answer + mid + answer + tail
}

// benchTrace is one trace of an LLM app: a request span, the LLM span with
// attrs, and three ordinary children.
func benchTrace(attrs map[string]any) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "support-chatbot")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	tid := pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x01}
	for i := range 5 {
		s := spans.AppendEmpty()
		s.SetTraceID(tid)
		s.SetSpanID(pcommon.SpanID{0xee, byte(i + 1)})
		s.SetStartTimestamp(pcommon.Timestamp(1767225600_000_000_000 + i))
		switch i {
		case 0:
			s.SetName("POST /chat")
			s.Attributes().PutStr("http.request.method", "POST")
			s.Attributes().PutInt("http.response.status_code", 200)
		case 1:
			s.SetName("ChatCompletion")
			s.SetParentSpanID(pcommon.SpanID{0xee, 1})
			if err := s.Attributes().FromRaw(attrs); err != nil {
				panic(err)
			}
		default:
			s.SetName(fmt.Sprintf("step-%d", i))
			s.SetParentSpanID(pcommon.SpanID{0xee, 1})
			s.Attributes().PutStr("app.step", "retrieve_documents")
			s.Attributes().PutInt("app.documents", 4)
		}
	}
	return td
}

func openInferenceAttrs(output string) map[string]any {
	return map[string]any{
		"llm.system":                 "openai",
		"input.value":                `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "In which ocean is Bouvet Island?"}]}`,
		"input.mime_type":            "application/json",
		"output.value":               output,
		"output.mime_type":           "application/json",
		"llm.model_name":             "gpt-4o-mini-2024-07-18",
		"llm.token_count.prompt":     412,
		"llm.token_count.completion": 187,
		"llm.token_count.total":      599,
		"openinference.span.kind":    "LLM",
	}
}

// BenchmarkExtract is the extractor's cost per trace of five spans, one of
// them an LLM span, for each way a response id is recorded, read from the
// export in protobuf as the proxy reads it.
func BenchmarkExtract(b *testing.B) {
	const id = "chatcmpl-B9MHDbslfQmhd8j9bXb8ZzWHNpEYp"
	cases := []struct {
		name  string
		attrs map[string]any
	}{
		{"genai", map[string]any{
			"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
			"gen_ai.response.id": id, "gen_ai.usage.input_tokens": 412, "gen_ai.usage.output_tokens": 187,
		}},
		{"openinference-2KB", openInferenceAttrs(benchOutput(id, 2<<10))},
		{"openinference-50KB", openInferenceAttrs(benchOutput(id, 50<<10))},
		{"openinference-2KB-id-last", openInferenceAttrs(benchOutputIDLast(id, 2<<10))},
		{"openinference-50KB-id-last", openInferenceAttrs(benchOutputIDLast(id, 50<<10))},
		{"langchain-2KB", openInferenceAttrs(benchLangChainOutput(id, 2<<10))},
		{"langchain-50KB", openInferenceAttrs(benchLangChainOutput(id, 50<<10))},
		{"no-llm-span", map[string]any{"app.step": "render_prompt"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(benchTrace(c.attrs))
			if err != nil {
				b.Fatal(err)
			}
			var x extract.Extractor
			want := 1
			if c.name == "no-llm-span" {
				want = 0
			}
			if got := len(x.ExtractProto(body, "")); got != want {
				b.Fatalf("extracted %d ids, want %d", got, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				x.ExtractProto(body, "")
			}
		})
	}
}
