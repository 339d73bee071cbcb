package index

import (
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TestExtractCaptured runs the extractor on what the real Python
// instrumentations, and the Vercel AI SDK, exported (testdata/capture, made by `go run ./e2e/capture`;
// its README says how and with which versions). The ids and span ids below
// are those the capture printed; a re-capture changes them.
func TestExtractCaptured(t *testing.T) {
	tests := []struct {
		file, responseID, spanID, spanName string
	}{
		{"openinference-chat.binpb", "chatcmpl-00000001a7818d74cbba32bff0c7a", "dc7bc68202b9a324", "ChatCompletion"},
		{"openinference-chat-stream.binpb", "chatcmpl-00000002b48cf3939c6f376414f2f", "9345ab68356040c0", "ChatCompletion"},
		{"openinference-responses.binpb", "resp_0000000369314a78c37cf5d7eaa2685363a2987ad7ccfbce02", "d1baf678a4cd8998", "Response"},
		{"openinference-responses-stream.binpb", "resp_00000005669e9a7195b2065fd6745aca7b94b38f27a402c997", "2a495f2aa9ed101f", "Response"},
		{"openai-v2-chat.binpb", "chatcmpl-00000007a1daf63072a3e8138f02c", "34b19a6b1605aa23", "chat gpt-4o-mini"},
		{"openai-v2-chat-stream.binpb", "chatcmpl-00000008084ac9833cc3f1de07f15", "75a289bff6613dd6", "chat gpt-4o-mini"},
		// openai-v2 2.4b0 does not instrument the Responses API: no LLM span, no id.
		{"openai-v2-responses.binpb", "", "", ""},
		{"openai-v2-responses-stream.binpb", "", "", ""},
		// Anthropic through OpenInference: the Message JSON in output.value, "id" first.
		{"anthropic-openinference-chat.binpb", "msg_0100000DpOPYSSGwnQrsS4Z3", "5533b40a98e483dc", "messages.create"},
		{"anthropic-openinference-chat-stream.binpb", "msg_0100000E2HAfiA6eA9fcslYz", "0c853ef988aa4fff", "messages.create"},
		// Through OpenLLMetry (opentelemetry-instrumentation-anthropic): gen_ai.response.id, the HTTP span beside it.
		{"anthropic-openllmetry-chat.binpb", "msg_0100000FJ5l624qJuiU7YM9Y", "0d6f45e1429cda67", "anthropic.chat"},
		{"anthropic-openllmetry-chat-stream.binpb", "msg_0100000GN6qOh1QVQ7Udj8Lz", "44ea45deb517ab00", "anthropic.chat"},
		// The anthropic SDK's own tracing: gen_ai.response.id.
		{"anthropic-sdk-chat.binpb", "msg_0100000H2nMFUNdC277vneAO", "e790c51bd005ebfe", "anthropic.messages.create"},
		{"anthropic-sdk-chat-stream.binpb", "msg_0100000I4tqDiKnXFDN9jk6A", "3e8d7066d6250f09", "anthropic.messages.create"},
		// google-genai through OpenInference: "response_id" at the top level of
		// output.value, not first: after sdk_http_response, candidates and
		// model_version (plain), next to last (streamed).
		{"google-openinference-chat.binpb", "AAAAATSFo-g7h0y5ClDey-s", "8cfece2322efc793", "GenerateContent"},
		{"google-openinference-chat-stream.binpb", "AAAAAU3Go_2EZ7PIvMrdtRg", "78c7a81b8ee32b95", "GenerateContentStream"},
		// The Vercel AI SDK (TypeScript app, OpenTelemetry JS SDK): gen_ai.response.id
		// (and ai.response.id) on the inner span of the provider call only; the
		// outer ai.generateText / ai.streamText span has neither (for the Responses
		// API the id is in its ai.response.providerMetadata JSON, which is not read).
		{"vercel-ai-sdk-chat.binpb", "chatcmpl-000000155c31474c3a4960ac19b0c", "1e5e53a98be68a08", "ai.generateText.doGenerate"},
		{"vercel-ai-sdk-chat-stream.binpb", "chatcmpl-0000001604109742975a4d584c661", "30e3af67e85a94a0", "ai.streamText.doStream"},
		{"vercel-ai-sdk-responses.binpb", "resp_00000017414b11b7d373e7e453c62ac9c1bde55b84e525f38c", "abc07db071e7e03b", "ai.generateText.doGenerate"},
		{"vercel-ai-sdk-responses-stream.binpb", "resp_0000001901ed4a6a74fe84986b6e9ffa6eb99744cf8eb06059", "4e2b26eae0843941", "ai.streamText.doStream"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", "capture", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			req := ptraceotlp.NewExportRequest()
			if err := req.UnmarshalProto(body); err != nil {
				t.Fatal(err)
			}
			got := Extractor{}.Extract(req.Traces(), "")
			if tt.responseID == "" {
				if len(got) != 0 {
					t.Fatalf("found %+v in an export without an LLM span", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("found %d response ids, want 1: %+v", len(got), got)
			}
			e := got[0]
			if e.ResponseID != tt.responseID || e.Span.SpanID.String() != tt.spanID || e.Span.Name != tt.spanName || e.Span.Project != DefaultProject {
				t.Errorf("got %s -> span %s %q in %q; want %s -> span %s %q in default",
					e.ResponseID, e.Span.SpanID, e.Span.Name, e.Span.Project, tt.responseID, tt.spanID, tt.spanName)
			}
		})
	}
}
