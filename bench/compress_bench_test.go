package bench_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
)

// BenchmarkCompress is what gzip costs the proxy where it compresses an
// export itself (OTLP/gRPC in, an uncompressed client), at the level it
// uses by default (1) and at gzip's default (6), on the LLM-shaped 128 KB
// export; the ratio metric is the bytes in over the bytes out.
func BenchmarkCompress(b *testing.B) {
	tpl, err := workload.NewTemplate(workload.Config{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	body := tpl.Fill(nil, 1)
	for _, level := range []int{gzip.BestSpeed, 6} {
		b.Run(fmt.Sprintf("level=%d", level), func(b *testing.B) {
			var buf bytes.Buffer
			zw, err := gzip.NewWriterLevel(&buf, level)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				zw.Reset(&buf)
				if _, err := zw.Write(body); err != nil {
					b.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(body))/float64(buf.Len()), "ratio")
		})
	}
}
