package proxy

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
)

var (
	testTraceID = pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x01}
	testSpanID  = pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x01}
)

// chatTraces is one OpenInference ChatCompletion span, as the Python
// instrumentation exports it: the response id only in output.value.
// responseID "" gives a span without one.
func chatTraces(responseID string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "support-bot")
	rs.Resource().Attributes().PutStr(extract.AttrProjectName, "support")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("openinference.instrumentation.openai")
	s := ss.Spans().AppendEmpty()
	s.SetTraceID(testTraceID)
	s.SetSpanID(testSpanID)
	s.SetName("ChatCompletion")
	s.SetKind(ptrace.SpanKindInternal)
	s.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000))
	s.SetEndTimestamp(pcommon.Timestamp(1_700_000_001_000_000_000))
	a := s.Attributes()
	a.PutStr(extract.AttrOpenInferenceSpanKind, "LLM")
	a.PutStr("llm.system", "openai")
	a.PutStr("llm.model_name", "gpt-4o-mini")
	a.PutStr(extract.AttrOutputMimeType, "application/json")
	if responseID != "" {
		a.PutStr(extract.AttrOutputValue, `{"id":"`+responseID+`","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"42"}}]}`)
	} else {
		a.PutStr(extract.AttrOutputValue, `{"object":"chat.completion"}`)
	}
	return td
}

func exportOf(td ptrace.Traces) *otlp.Export {
	e, err := otlp.NewExport(ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		panic(err)
	}
	e.Transport = "http"
	return e
}

// fakeForwarder answers err and records what the index held when it was
// called.
type fakeForwarder struct {
	err      error
	ix       *index.Index
	calls    int
	indexed  bool // the response id resolved while forwarding
	notified bool // indexed had been called while forwarding
	notes    *[][]index.Entry
}

func (f *fakeForwarder) Export(_ context.Context, _ *otlp.Export) error {
	f.calls++
	_, f.indexed = f.ix.Lookup("chatcmpl-x")
	f.notified = len(*f.notes) > 0
	return f.err
}

func TestSpanPath(t *testing.T) {
	refused := otlp.Errorf(codes.Unavailable, "upstream down")
	tests := []struct {
		name    string
		err     error
		exports []ptrace.Traces
		check   func(t *testing.T, fw *fakeForwarder, ix *index.Index, errs []error, notes [][]index.Entry)
	}{
		{
			name:    "forwarded, then indexed and told",
			exports: []ptrace.Traces{chatTraces("chatcmpl-x")},
			check: func(t *testing.T, fw *fakeForwarder, ix *index.Index, errs []error, notes [][]index.Entry) {
				if errs[0] != nil {
					t.Fatalf("ConsumeTraces: %v", errs[0])
				}
				if fw.indexed || fw.notified {
					t.Error("the span was indexed before the forwarder succeeded")
				}
				sp, ok := ix.Lookup("chatcmpl-x")
				if !ok || sp.SpanID != testSpanID || sp.TraceID != testTraceID || sp.Project != "support" || sp.Name != "ChatCompletion" {
					t.Errorf("Lookup = %+v, %v", sp, ok)
				}
				if len(notes) != 1 || len(notes[0]) != 1 || notes[0][0].ResponseID != "chatcmpl-x" || notes[0][0].Span.SpanID != testSpanID {
					t.Errorf("indexed called with %+v", notes)
				}
			},
		},
		{
			name:    "forwarder error: returned as it is, nothing indexed",
			err:     refused,
			exports: []ptrace.Traces{chatTraces("chatcmpl-x")},
			check: func(t *testing.T, fw *fakeForwarder, ix *index.Index, errs []error, notes [][]index.Entry) {
				if errs[0] != refused {
					t.Errorf("ConsumeTraces = %v, want the forwarder's error itself", errs[0])
				}
				if _, ok := ix.Lookup("chatcmpl-x"); ok || ix.Len() != 0 || len(notes) != 0 {
					t.Errorf("indexed after a refused export: %d entries, told %+v", ix.Len(), notes)
				}
			},
		},
		{
			name:    "no LLM span: forwarded, nobody told",
			exports: []ptrace.Traces{chatTraces("")},
			check: func(t *testing.T, fw *fakeForwarder, ix *index.Index, errs []error, notes [][]index.Entry) {
				if errs[0] != nil || fw.calls != 1 || ix.Len() != 0 || len(notes) != 0 {
					t.Errorf("err %v, %d calls, %d entries, told %+v", errs[0], fw.calls, ix.Len(), notes)
				}
			},
		},
		{
			name:    "the same span again: told once",
			exports: []ptrace.Traces{chatTraces("chatcmpl-x"), chatTraces("chatcmpl-x")},
			check: func(t *testing.T, fw *fakeForwarder, ix *index.Index, errs []error, notes [][]index.Entry) {
				if errs[0] != nil || errs[1] != nil || fw.calls != 2 || len(notes) != 1 {
					t.Errorf("errs %v, %d calls, told %d times", errs, fw.calls, len(notes))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := index.New(index.Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var notes [][]index.Entry
			fw := &fakeForwarder{err: tc.err, ix: ix, notes: &notes}
			x := &indexer{index: ix, indexed: func(e []index.Entry) { notes = append(notes, e) }}
			p := direct{upstream: fw, delivered: x.delivered}
			var errs []error
			for _, td := range tc.exports {
				errs = append(errs, p.ConsumeTraces(context.Background(), exportOf(td)))
			}
			tc.check(t, fw, ix, errs, notes)
		})
	}
}
