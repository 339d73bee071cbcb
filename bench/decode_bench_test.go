package bench_test

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
)

// BenchmarkDecode is what the proxy does to the body of an LLM-shaped
// export of 100 spans (2 KB output.value, 128 KB of protobuf) before and
// after it forwards it, each way it could:
//
//   - pdata: decode it into pdata (what the proxy did before package wire,
//     and what the Collector does), then count its spans;
//   - wire: check it where it lies and count its spans (the receiver);
//   - wire+extract: that, then find the response ids (the receiver, then
//     the indexer once the upstream took the export).
//
// One op is one export; ns/span divides by its spans.
func BenchmarkDecode(b *testing.B) {
	tpl, err := workload.NewTemplate(workload.Config{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	body := tpl.Fill(nil, 1)
	spans := tpl.Spans()
	var x extract.Extractor
	run := func(name string, fn func() int) {
		b.Run(name, func(b *testing.B) {
			if got := fn(); got != spans && got != spans/5 {
				b.Fatalf("%d; want %d spans or %d ids", got, spans, spans/5)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				fn()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spans), "ns/span")
		})
	}
	run("pdata", func() int {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
		return req.Traces().SpanCount()
	})
	run("wire", func() int {
		n, err := wire.Scan(body, nil)
		if err != nil {
			b.Fatal(err)
		}
		return n
	})
	run("wire+extract", func() int {
		if _, err := wire.Scan(body, nil); err != nil {
			b.Fatal(err)
		}
		return len(x.ExtractProto(body, ""))
	})
}
