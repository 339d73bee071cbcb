package index_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// The benchmarks here measure the index's share of the span path (extract,
// then Add) and of the feedback path (Lookup). Run them with
//
//	go test -run '^$' -bench . -benchmem ./pkg/index/
//
// BenchmarkIndexMemory reports the live heap of a full index of a million
// responses as B/entry and MB/1M (the goal: well under 300 MB).

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
// them an LLM span, for each way a response id is recorded.
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
		{"no-llm-span", map[string]any{"app.step": "render_prompt"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			td := benchTrace(c.attrs)
			var x index.Extractor
			want := 1
			if c.name == "no-llm-span" {
				want = 0
			}
			if got := len(x.Extract(td, "")); got != want {
				b.Fatalf("extracted %d ids, want %d", got, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				x.Extract(td, "")
			}
		})
	}
}

// BenchmarkTopLevelID is the JSON scan alone.
func BenchmarkTopLevelID(b *testing.B) {
	const id = "chatcmpl-B9MHDbslfQmhd8j9bXb8ZzWHNpEYp"
	for _, c := range []struct {
		name string
		s    string
	}{
		{"2KB", benchOutput(id, 2<<10)},
		{"50KB", benchOutput(id, 50<<10)},
		{"50KB-id-last", benchOutputIDLast(id, 50<<10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			if got, err := index.TopLevelID(c.s); err != nil || got != id {
				b.Fatalf("TopLevelID = %q, %v", got, err)
			}
			b.SetBytes(int64(len(c.s)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = index.TopLevelID(c.s)
			}
		})
	}
}

// responseID returns the i-th response id, shaped like OpenAI's (38 bytes)
// and freshly allocated, as an id decoded from an export is.
func responseID(i int) string {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(i)*0x9e3779b97f4a7c15)
	return fmt.Sprintf("chatcmpl-%x%013d", buf, i)
}

// entry returns the i-th entry as the extractor makes it: a fresh id and
// span name for every span, the project shared by the export.
func entry(i int) index.Entry {
	var tid pcommon.TraceID
	binary.BigEndian.PutUint64(tid[:8], uint64(i))
	var sid pcommon.SpanID
	binary.BigEndian.PutUint64(sid[:], uint64(i)+1)
	return index.Entry{ResponseID: responseID(i), Span: index.Span{
		TraceID: tid, SpanID: sid, ParentID: pcommon.SpanID{1},
		Project: index.DefaultProject,
		Name:    strings.Clone("ChatCompletion"),
		Start:   pcommon.Timestamp(1767225600_000_000_000 + i),
	}}
}

const million = 1_000_000

// fill returns an index of capacity n holding n entries, added in exports
// of 20 as the span path adds them.
func fill(b *testing.B, n int) *index.Index {
	b.Helper()
	ix, err := index.New(index.Config{MaxEntries: n}, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]index.Entry, 0, 20)
	for i := range n {
		batch = append(batch, entry(i))
		if len(batch) == cap(batch) || i == n-1 {
			ix.Add(batch)
			batch = batch[:0]
		}
	}
	return ix
}

// BenchmarkIndexAdd is the cost of indexing one response id, in exports of
// 20 (ns/op is per entry), into an index that is empty and into one that is
// full at a million entries (every Add then evicts).
func BenchmarkIndexAdd(b *testing.B) {
	const batch = 20
	entries := make([]index.Entry, 1<<16)
	for i := range entries {
		entries[i] = entry(million + i)
	}
	for _, c := range []struct {
		name string
		ix   func() *index.Index
	}{
		{"empty", func() *index.Index {
			ix, _ := index.New(index.Config{MaxEntries: 10 * million}, nil)
			return ix
		}},
		{"full-1M", func() *index.Index { return fill(b, million) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			ix := c.ix()
			next := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if next+batch > len(entries) {
					// New ids for the next round, so that every Add inserts.
					b.StopTimer()
					for i := range entries {
						entries[i] = entry(million + len(entries)*(next/len(entries)+1) + i)
					}
					next = 0
					b.StartTimer()
				}
				ix.Add(entries[next : next+batch])
				next += batch
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
		})
	}
}

// BenchmarkIndexLookup is a feedback's lookup in an index of a million
// responses: a hit, and a miss (an id the proxy never saw).
func BenchmarkIndexLookup(b *testing.B) {
	ix := fill(b, million)
	ids := make([]string, 1<<12)
	for i := range ids {
		ids[i] = responseID(i * 241 % million)
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := ix.Lookup(ids[i&(len(ids)-1)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		missing := responseID(2 * million)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ix.Lookup(missing); ok {
				b.Fatal("hit")
			}
		}
	})
}

// BenchmarkIndexMemory builds a full index of a million responses and
// reports the live heap it holds: B/entry and MB/1M (heap after a GC;
// the process's RSS is this plus the runtime's own and the GC's headroom,
// up to twice as much with GOGC=100).
func BenchmarkIndexMemory(b *testing.B) {
	var perEntry float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ix := fill(b, million)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if ix.Len() != million {
			b.Fatalf("Len = %d", ix.Len())
		}
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / million
		runtime.KeepAlive(ix)
	}
	b.ReportMetric(perEntry, "B/entry")
	b.ReportMetric(perEntry*million/(1<<20), "MB/1M")
}
