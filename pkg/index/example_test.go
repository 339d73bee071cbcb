package index_test

import (
	"fmt"
	"os"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
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
	ix.Add(extract.Extractor{}.Extract(td, ""))

	s, ok := ix.Lookup("chatcmpl-abc")
	fmt.Println(ok, s.Name, s.Project, s.TraceID, s.SpanID)
	// Output: true ChatCompletion default 01000000000000000000000000000000 0200000000000000
}

func ExampleIndex_Restore() {
	dir, _ := os.MkdirTemp("", "feedback-proxy-data")
	defer os.RemoveAll(dir)
	span := index.Span{TraceID: [16]byte{1}, SpanID: [8]byte{2}, Project: "support", Name: "ChatCompletion"}

	// Before the restart: every Add is written to the data directory.
	st, _ := store.Open(dir, store.Options{})
	ix, _ := index.New(index.Config{}, nil)
	ix.Restore(st)
	ix.Add([]index.Entry{{ResponseID: "chatcmpl-abc", Span: span}})
	st.Close()

	// After it: the entry resolves again.
	st, _ = store.Open(dir, store.Options{})
	defer st.Close()
	ix, _ = index.New(index.Config{}, nil)
	n, _ := ix.Restore(st)
	s, ok := ix.Lookup("chatcmpl-abc")
	fmt.Println(n, ok, s.Name, s.SpanID)
	// Output: 1 true ChatCompletion 0200000000000000
}
