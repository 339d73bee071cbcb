package workload_test

import (
	"slices"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
)

func TestTemplate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   workload.Config
		check func(t *testing.T, tpl *workload.Template, td ptrace.Traces)
	}{
		{
			name: "openinference defaults",
			cfg:  workload.Config{},
			check: func(t *testing.T, tpl *workload.Template, td ptrace.Traces) {
				if got, want := td.SpanCount(), 100; got != want {
					t.Errorf("spans = %d, want %d", got, want)
				}
				llm := td.ResourceSpans().At(0).ScopeSpans().At(1).Spans().At(0)
				out, _ := llm.Attributes().Get("output.value")
				if n := len(out.Str()); n != workload.DefaultOutputBytes {
					t.Errorf("output.value is %d bytes, want %d", n, workload.DefaultOutputBytes)
				}
			},
		},
		{
			name: "genai, no children, project",
			cfg:  workload.Config{Shape: workload.GenAI, TracesPerExport: 3, ChildSpans: -1, Project: "chatbot"},
			check: func(t *testing.T, tpl *workload.Template, td ptrace.Traces) {
				if got := td.SpanCount(); got != 6 {
					t.Errorf("spans = %d, want 6", got)
				}
				if v, _ := td.ResourceSpans().At(0).Resource().Attributes().Get(extract.AttrProjectName); v.Str() != "chatbot" {
					t.Errorf("project = %q", v.Str())
				}
			},
		},
		{
			name: "50 KB output",
			cfg:  workload.Config{TracesPerExport: 1, OutputBytes: 50 << 10},
			check: func(t *testing.T, tpl *workload.Template, td ptrace.Traces) {
				if tpl.Size() < 100<<10 {
					t.Errorf("export is %d bytes; output.value and the output message should make it over 100 KB", tpl.Size())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := workload.NewTemplate(tt.cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			var seen []string
			for seq := range uint64(3) {
				req, err := tpl.Request(seq)
				if err != nil {
					t.Fatalf("seq %d does not decode: %v", seq, err)
				}
				td := req.Traces()
				if td.SpanCount() != tpl.Spans() {
					t.Fatalf("seq %d: %d spans, template says %d", seq, td.SpanCount(), tpl.Spans())
				}
				// The extractor finds every response id, and they are new in
				// each export.
				var got []string
				for _, e := range (extract.Extractor{}).Extract(td, "") {
					got = append(got, e.ResponseID)
				}
				want := tpl.ResponseIDs(seq)
				if !slices.Equal(got, want) || len(want) != tt.cfg.SpansPerExport()/tt.cfg.SpansPerTrace() {
					t.Fatalf("seq %d: extracted %v, want %v", seq, got, want)
				}
				for _, id := range got {
					if slices.Contains(seen, id) {
						t.Fatalf("response id %s repeats across exports", id)
					}
				}
				seen = append(seen, got...)
				checkIDs(t, td)
				if seq == 0 {
					tt.check(t, tpl, td)
				}
			}
		})
	}
}

// checkIDs checks that every parent id names a span of the same trace.
func checkIDs(t *testing.T, td ptrace.Traces) {
	t.Helper()
	type key struct{ trace, span string }
	spans := map[key]bool{}
	var all []ptrace.Span
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j).Spans()
			for k := range ss.Len() {
				s := ss.At(k)
				spans[key{s.TraceID().String(), s.SpanID().String()}] = true
				all = append(all, s)
			}
		}
	}
	if len(spans) != len(all) {
		t.Fatalf("%d spans but %d distinct (trace, span) ids", len(all), len(spans))
	}
	for _, s := range all {
		if p := s.ParentSpanID(); !p.IsEmpty() && !spans[key{s.TraceID().String(), p.String()}] {
			t.Fatalf("span %s has parent %s, not in its trace", s.SpanID(), p)
		}
	}
}
