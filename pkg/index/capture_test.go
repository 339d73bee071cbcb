package index

import (
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TestExtractCaptured runs the extractor on what the real Python
// instrumentations exported (testdata/capture, made by `go run ./e2e/capture`;
// its README says how and with which versions). The ids and span ids below
// are those the capture printed; a re-capture changes them.
func TestExtractCaptured(t *testing.T) {
	tests := []struct {
		file, responseID, spanID, spanName string
	}{
		{"openinference-chat.binpb", "chatcmpl-0000000130811f47a3587ce0fda31", "d4746f2a86f28106", "ChatCompletion"},
		{"openinference-chat-stream.binpb", "chatcmpl-0000000245f49f41936d7397aa873", "8b41bc299408fcc1", "ChatCompletion"},
		{"openinference-responses.binpb", "resp_000000034428f216154e5b657a97528e2ec989f7199b284e87", "54776c5810ce0982", "Response"},
		{"openinference-responses-stream.binpb", "resp_00000005e23150231c806a0add6fee46e2df69b2c2e9555fff", "04a1aba3d99e53f6", "Response"},
		{"openai-v2-chat.binpb", "chatcmpl-0000000749bf625a3b82d71f1b42f", "18a2e045159a88c1", "chat gpt-4o-mini"},
		{"openai-v2-chat-stream.binpb", "chatcmpl-000000086d672db922463a5392caf", "83bf81cfe7afe883", "chat gpt-4o-mini"},
		// openai-v2 2.4b0 does not instrument the Responses API: no LLM span, no id.
		{"openai-v2-responses.binpb", "", "", ""},
		{"openai-v2-responses-stream.binpb", "", "", ""},
		// Anthropic through OpenInference: the Message JSON in output.value, "id" first.
		{"anthropic-openinference-chat.binpb", "msg_0100000DsA3X29rW63mqDHn9", "3f894dc305afee0a", "messages.create"},
		{"anthropic-openinference-chat-stream.binpb", "msg_0100000EJWR82ogGrwdkmJa5", "4bd995d2b0b3a128", "messages.create"},
		// Through OpenLLMetry (opentelemetry-instrumentation-anthropic): gen_ai.response.id, the HTTP span beside it.
		{"anthropic-openllmetry-chat.binpb", "msg_0100000FAJERyjAp87CvrEH3", "e59a8423bd5271bd", "anthropic.chat"},
		{"anthropic-openllmetry-chat-stream.binpb", "msg_0100000GESoZ7kr3eDDbnGBQ", "a6e853b2474c847c", "anthropic.chat"},
		// The anthropic SDK's own tracing: gen_ai.response.id.
		{"anthropic-sdk-chat.binpb", "msg_0100000H5NbUrrD0yA9YQ9l1", "6e42a82319a7b47f", "anthropic.messages.create"},
		{"anthropic-sdk-chat-stream.binpb", "msg_0100000IHsFrSjDMUkkB8sQH", "8eff9930cb0a0a66", "anthropic.messages.create"},
		// google-genai through OpenInference: "response_id" at the top level of
		// output.value, not first: after sdk_http_response, candidates and
		// model_version (plain), next to last (streamed).
		{"google-openinference-chat.binpb", "AAAAAT7GEwQOK4DvjfyZd_8", "a7ee1b42a63fb24f", "GenerateContent"},
		{"google-openinference-chat-stream.binpb", "AAAAAUgnCpoqPNibUj8mZS7", "ebf1a3e758d2d1d8", "GenerateContentStream"},
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
