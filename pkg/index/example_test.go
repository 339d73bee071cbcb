package index_test

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

func Example() {
	// An OpenInference ChatCompletion span, as the Python instrumentation
	// exports it: the response id is only inside output.value.
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetName("ChatCompletion")
	span.SetTraceID([16]byte{1})
	span.SetSpanID([8]byte{2})
	span.Attributes().PutStr("openinference.span.kind", "LLM")
	span.Attributes().PutStr("output.mime_type", "application/json")
	span.Attributes().PutStr("output.value", `{"id":"chatcmpl-abc","object":"chat.completion","choices":[]}`)

	ix, _ := index.New(index.Config{}, nil)
	ix.Add(index.Extractor{}.Extract(td, ""))

	s, ok := ix.Lookup("chatcmpl-abc")
	fmt.Println(ok, s.Name, s.Project, s.TraceID, s.SpanID)
	// Output: true ChatCompletion default 01000000000000000000000000000000 0200000000000000
}
