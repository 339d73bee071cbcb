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
		{"openinference-chat.binpb", "chatcmpl-00000001baeee94f85ec137829843", "8d32b80ff82f27b7", "ChatCompletion"},
		{"openinference-chat-stream.binpb", "chatcmpl-000000027c2e5f5809c3614c4d8ba", "6e7358dd5fd7e7d9", "ChatCompletion"},
		{"openinference-responses.binpb", "resp_00000003d90cc4cbfb2d4bba34487b5f3f91f921314646a67d", "6cfee336008ec05e", "Response"},
		{"openinference-responses-stream.binpb", "resp_000000057bafa46e26f57ca30db8bcb4fa6ec90831ca1b01cb", "1d381db49d9205c9", "Response"},
		{"openai-v2-chat.binpb", "chatcmpl-00000007ce9c1083698cb975e8ba3", "663575092c9a4337", "chat gpt-4o-mini"},
		{"openai-v2-chat-stream.binpb", "chatcmpl-000000080601718af2fc1fa810662", "755007f0021830be", "chat gpt-4o-mini"},
		// openai-v2 2.4b0 does not instrument the Responses API: no LLM span, no id.
		{"openai-v2-responses.binpb", "", "", ""},
		{"openai-v2-responses-stream.binpb", "", "", ""},
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
