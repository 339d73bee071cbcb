package extract

import (
	"fmt"
	"strings"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var (
	traceA = pcommon.TraceID{0xa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	traceB = pcommon.TraceID{0xb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
)

func sid(b byte) pcommon.SpanID { return pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, b} }

type testSpan struct {
	trace  pcommon.TraceID
	id     byte
	parent byte
	start  int
	attrs  map[string]any
}

func traces(project string, spans ...testSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	if project != "" {
		rs.Resource().Attributes().PutStr(AttrProjectName, project)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	for _, ts := range spans {
		s := ss.Spans().AppendEmpty()
		tr := ts.trace
		if tr.IsEmpty() {
			tr = traceA
		}
		s.SetTraceID(tr)
		s.SetSpanID(sid(ts.id))
		if ts.parent != 0 {
			s.SetParentSpanID(sid(ts.parent))
		}
		s.SetName("span")
		s.SetStartTimestamp(pcommon.Timestamp(ts.start))
		if err := s.Attributes().FromRaw(ts.attrs); err != nil {
			panic(err)
		}
	}
	return td
}

func llmAttrs(output string) map[string]any {
	return map[string]any{
		AttrOpenInferenceSpanKind: "LLM",
		AttrOutputMimeType:        "application/json",
		AttrOutputValue:           output,
	}
}

// langChainResult is output.value as openinference-instrumentation-langchain
// records a ChatOpenAI run (json.dumps of LangChain's LLMResult, shortened):
// the provider's id in the first generation's response_metadata, the
// message's own id LangChain's run id.
func langChainResult(id string) string {
	return `{"generations": [[{"text": "South Atlantic Ocean", "generation_info": {"finish_reason": "stop"}, ` +
		`"type": "ChatGeneration", "message": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"], ` +
		`"kwargs": {"content": "South Atlantic Ocean", "additional_kwargs": {"refusal": null}, "response_metadata": ` +
		`{"token_usage": {"completion_tokens": 3, "prompt_tokens": 13, "total_tokens": 16}, "model_name": "gpt-4o-mini", ` +
		`"id": "` + id + `", "finish_reason": "stop"}, "type": "ai", "id": "lc_run--019a-0", "tool_calls": []}}}]], ` +
		`"llm_output": {"model_name": "gpt-4o-mini", "id": "` + id + `"}, "run": null, "type": "LLMResult"}`
}

func TestExtract(t *testing.T) {
	tests := []struct {
		name    string
		x       Extractor
		project string
		td      ptrace.Traces
		check   func(t *testing.T, got []index.Entry)
	}{
		{
			name: "gen_ai.response.id",
			td:   traces("", testSpan{id: 1, attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-1"}}),
			check: func(t *testing.T, got []index.Entry) {
				wantIDs(t, got, "chatcmpl-1")
				if got[0].Span.SpanID != sid(1) || got[0].Span.Project != DefaultProject {
					t.Errorf("span = %+v, want span 1 in project default", got[0].Span)
				}
			},
		},
		{
			name: "openinference output.value",
			td:   traces("chatbot", testSpan{id: 2, attrs: llmAttrs(`{"id":"chatcmpl-2","object":"chat.completion"}`)}),
			check: func(t *testing.T, got []index.Entry) {
				wantIDs(t, got, "chatcmpl-2")
				if got[0].Span.Project != "chatbot" {
					t.Errorf("project = %q, want chatbot from the resource", got[0].Span.Project)
				}
			},
		},
		{
			name:    "header project wins over resource",
			project: "from-header",
			td:      traces("chatbot", testSpan{id: 2, attrs: llmAttrs(`{"id":"resp_2"}`)}),
			check: func(t *testing.T, got []index.Entry) {
				if got[0].Span.Project != "from-header" {
					t.Errorf("project = %q, want from-header", got[0].Span.Project)
				}
			},
		},
		{
			name: "id after nested values",
			td: traces("", testSpan{id: 3, attrs: llmAttrs(
				`{"choices":[{"message":{"id":"not-me","content":"[{]}"}}],"usage":{"id":1},"id":"chatcmpl-3"}`)}),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got, "chatcmpl-3") },
		},
		{
			name: "openinference span that is not LLM",
			td: traces("", testSpan{id: 4, attrs: map[string]any{
				AttrOpenInferenceSpanKind: "CHAIN", AttrOutputMimeType: "application/json", AttrOutputValue: `{"id":"x"}`,
			}}),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got) },
		},
		{
			name: "output.value as text",
			td: traces("", testSpan{id: 4, attrs: map[string]any{
				AttrOpenInferenceSpanKind: "LLM", AttrOutputMimeType: "text/plain", AttrOutputValue: `{"id":"x"}`,
			}}),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got) },
		},
		{
			name: "malformed and odd output.value are skipped",
			td: traces("",
				testSpan{id: 5, attrs: llmAttrs(`{"id":`)},
				testSpan{id: 6, attrs: llmAttrs(`[{"id":"a"}]`)},
				testSpan{id: 7, attrs: llmAttrs(`{"id":42}`)},
				testSpan{id: 8, attrs: llmAttrs(``)},
				testSpan{id: 9, attrs: llmAttrs(`{"object":"x"}`)},
				testSpan{id: 10, attrs: llmAttrs(`{"id":"` + strings.Repeat("x", MaxResponseIDLen+1) + `"}`)},
			),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got) },
		},
		{
			name:  "output.value over the size bound is skipped",
			x:     Extractor{MaxOutputValue: 32},
			td:    traces("", testSpan{id: 11, attrs: llmAttrs(`{"id":"chatcmpl-11","content":"` + strings.Repeat("a", 64) + `"}`)}),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got) },
		},
		{
			name: "extra keys, and one id per span however many attributes carry it",
			x:    Extractor{ExtraKeys: []string{"app.feedback_key", "app.same"}},
			td: traces("", testSpan{id: 12, attrs: map[string]any{
				AttrGenAIResponseID: "chatcmpl-12", "app.feedback_key": "order-77", "app.same": "chatcmpl-12",
			}}),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got, "chatcmpl-12", "order-77") },
		},
		{
			name: "every one of MaxExtraKeys extra keys is looked for, the last too",
			x: Extractor{ExtraKeys: func() []string {
				keys := make([]string, MaxExtraKeys)
				for i := range keys {
					keys[i] = fmt.Sprintf("app.key%d", i)
				}
				return keys
			}()},
			td: traces("", testSpan{id: 13, attrs: map[string]any{
				fmt.Sprintf("app.key%d", MaxExtraKeys-1): "order-last", "app.key0": "order-first",
			}}),
			check: func(t *testing.T, got []index.Entry) { wantIDs(t, got, "order-first", "order-last") },
		},
		{
			name: "innermost span wins, whatever the order in the export",
			td: traces("",
				testSpan{id: 22, parent: 21, start: 1, attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-20"}}, // LLM
				testSpan{id: 20, start: 1, attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-20"}},             // handler
				testSpan{id: 21, parent: 20, start: 1, attrs: map[string]any{}},                                   // chain between
			),
			check: func(t *testing.T, got []index.Entry) {
				wantIDs(t, got, "chatcmpl-20")
				if got[0].Span.SpanID != sid(22) {
					t.Errorf("span = %v, want the grandchild %v", got[0].Span.SpanID, sid(22))
				}
			},
		},
		{
			name: "LangChain: the LLM run's id, not its chain's",
			td: traces("",
				testSpan{id: 40, start: 1, attrs: map[string]any{ // RunnableSequence
					AttrOpenInferenceSpanKind: "CHAIN", AttrOutputMimeType: "application/json",
					AttrOutputValue: `{"type": "ai", "data": {"response_metadata": {"id": "chatcmpl-40"}, "id": "lc_run--1"}}`,
				}},
				testSpan{id: 41, parent: 40, start: 2, attrs: llmAttrs(langChainResult("chatcmpl-40"))}, // ChatOpenAI
			),
			check: func(t *testing.T, got []index.Entry) {
				wantIDs(t, got, "chatcmpl-40")
				if got[0].Span.SpanID != sid(41) {
					t.Errorf("span = %v, want the LLM run %v", got[0].Span.SpanID, sid(41))
				}
			},
		},
		{
			name: "LangChain: innermost LLM run wins",
			td: traces("",
				testSpan{id: 51, parent: 50, start: 2, attrs: llmAttrs(langChainResult("resp_50"))},
				testSpan{id: 50, start: 1, attrs: llmAttrs(langChainResult("resp_50"))},
			),
			check: func(t *testing.T, got []index.Entry) {
				wantIDs(t, got, "resp_50")
				if got[0].Span.SpanID != sid(51) {
					t.Errorf("span = %v, want the inner run %v", got[0].Span.SpanID, sid(51))
				}
			},
		},
		{
			name: "unknown ancestry: the later start is the inner span",
			td: traces("",
				testSpan{id: 31, start: 5, attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-31"}},
				testSpan{id: 30, start: 2, attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-31"}},
			),
			check: func(t *testing.T, got []index.Entry) {
				wantIDs(t, got, "chatcmpl-31")
				if got[0].Span.SpanID != sid(31) {
					t.Errorf("span = %v, want %v", got[0].Span.SpanID, sid(31))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, tt.x.Extract(tt.td, tt.project))
		})
	}
}

func wantIDs(t *testing.T, got []index.Entry, want ...string) {
	t.Helper()
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ResponseID)
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("response ids = %q, want %q", ids, want)
	}
}

func TestTopLevelID(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"id":"chatcmpl-1"}`, "chatcmpl-1", true},
		{` {"object":"response","output":[{"id":"msg_1"}],"id":"resp_1"}`, "resp_1", true},
		{`{"a":{"id":"inner"}}`, "", false},
		{`{"id":null}`, "", true},
		{`"id"`, "", false},
		{`{"id" "x"}`, "", false},
		{`{`, "", false},
		// The fast path for {"id":"... hands everything unusual to the decoder.
		{` {"id":"chatcmpl-9","object":"chat.completion"}`, "chatcmpl-9", true},
		{`{"id":"chatcmpl-9"}`, "chatcmpl-9", true},
		{`{"id":"\u0041b"}`, "Ab", true},
		{`{"id":"a" "b"}`, "a", true}, // the decoder too stops reading once it has the id
		{"{\"id\":\"\x9f\"}", "\ufffd", true},
		{"{\"id\":\"a\x01\"}", "", false},
		{`{"id":"unterminated`, "", false},
		// Google's GenerateContentResponse, as google-genai serialises it
		// (response_id, after the candidates) and as the API sends it.
		{`{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"model_version":"gemini-2.5-flash","response_id":"AAAAAGstPfXrwOz7PiSREgv"}`, "AAAAAGstPfXrwOz7PiSREgv", true},
		{`{"candidates":[],"responseId":"r1"}`, "r1", true},
		{`{"candidates":[],"response_id":"\u0072"}`, "r", true},
		// LangChain's LLMResult: generations[0][0].message.kwargs.response_metadata.id.
		{langChainResult("chatcmpl-7"), "chatcmpl-7", true},
		{`{"generations":[[{"message":{"kwargs":{"response_metadata":{"id":"resp_\u0031"}}}}]]}`, "resp_1", true},
		// Streamed chat completions: langchain-openai records no provider id.
		{`{"generations": [[{"message": {"kwargs": {"response_metadata": {"model_provider": "openai"}, "id": "lc_run--2"}}}]], "llm_output": null}`, "", false},
		{`{"generations":[[],[{"message":{"kwargs":{"response_metadata":{"id":"not-first"}}}}]]}`, "", false},
		{`{"generations":[[{"message":{"kwargs":{"response_metadata":{"id":7}}}}]],"id":"after"}`, "after", true},
		{`{"generations":{"message":1},"response_id":"r2"}`, "r2", true},
		{`{"id":"first","generations":[[{"message":{"kwargs":{"response_metadata":{"id":"second"}}}}]]}`, "first", true},
		{`{"generations":[[{"message":{"kwargs":{"response_metadata":{"id":"x","id":"dup"}}}}]]}`, "x", true},
		// A chain's output (an AIMessage) is not an LLMResult.
		{`{"type":"ai","data":{"response_metadata":{"id":"chatcmpl-8"}}}`, "", false},
	}
	for _, tt := range tests {
		got, err := TopLevelID(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("TopLevelID(%s) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestExtractManyIDs: past 32 ids in one export, a repeated id is still
// told, and resolved to the inner span.
func TestExtractManyIDs(t *testing.T) {
	var spans []testSpan
	for i := range 40 {
		spans = append(spans, testSpan{trace: pcommon.TraceID{byte(i + 1)}, id: byte(i + 1), start: 10,
			attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-" + string(rune('A'+i))}})
	}
	// The LLM call under the handler span 40, which copied its id.
	spans = append(spans, testSpan{trace: pcommon.TraceID{40}, id: 200, parent: 40, start: 11,
		attrs: map[string]any{AttrGenAIResponseID: "chatcmpl-" + string(rune('A'+39))}})
	got := Extractor{}.Extract(traces("", spans...), "")
	if len(got) != 40 {
		t.Fatalf("%d entries; want 40", len(got))
	}
	if last := got[39]; last.ResponseID != "chatcmpl-"+string(rune('A'+39)) || last.Span.SpanID != sid(200) {
		t.Fatalf("entry 39 = %s on %v; want the inner span %v", last.ResponseID, last.Span.SpanID, sid(200))
	}
}
