package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

// nullUpstream takes every export and counts its spans and requests.
type nullUpstream struct {
	compression     string
	spans, requests atomic.Int64
}

func (u *nullUpstream) Compression() string { return u.compression }

func (u *nullUpstream) Export(_ context.Context, e *otlp.Export) error {
	u.spans.Add(int64(e.Spans))
	u.requests.Add(1)
	return nil
}

// BenchmarkQueuedForwarder is the durable path of an export once it is
// received: written to the disk queue (the app is answered then), read back
// in batches and sent upstream as one export a batch (the upstream here
// takes them at once). One op is one export of LLM-shaped spans (~1.3 KB
// each), received gzip (kept as it came, and its body in memory) or not;
// cpu-ns/span is the process's CPU (getrusage) until everything was
// delivered, per span; exports/request is how many a batch held.
func BenchmarkQueuedForwarder(b *testing.B) {
	for _, spans := range []int{10, 100} {
		for _, compression := range []string{"gzip", "none"} {
			b.Run(fmt.Sprintf("%d-spans/%s", spans, compression), func(b *testing.B) {
				e := benchExport(b, spans, compression == "gzip")
				up := &nullUpstream{compression: compression}
				q, err := queue.Open(queue.Config{Dir: b.TempDir(), MaxBytes: 1 << 30})
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				f := newQueuedForwarder(up, func(*otlp.Export) {}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
				f.attach(q)
				f.batch.linger = 5 * time.Millisecond
				f.start()
				ctx := context.Background()
				cpu0 := processCPU()
				b.SetBytes(int64(len(e.Body)))
				b.ReportAllocs()
				for b.Loop() {
					if err := f.Export(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
				want := int64(b.N) * int64(e.Spans)
				for deadline := time.Now().Add(30 * time.Second); up.spans.Load() < want; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatalf("delivered %d spans of %d", up.spans.Load(), want)
					}
				}
				cpu := processCPU() - cpu0
				f.stop()
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(want), "cpu-ns/span")
				b.ReportMetric(float64(b.N)/float64(up.requests.Load()), "exports/request")
			})
		}
	}
}

// benchExport is an export of n LLM-shaped spans: traces of an LLM span
// with a 2 KB output.value and four others, as bench/internal/workload
// builds them, gzip-compressed as a client would when gz.
func benchExport(b *testing.B, n int, gz bool) *otlp.Export {
	b.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "support-bot")
	ss := rs.ScopeSpans().AppendEmpty()
	output := `{"id":"chatcmpl-x","object":"chat.completion","choices":[{"message":{"content":"` + string(bytes.Repeat([]byte("w"), 2000)) + `"}}]}`
	for i := range n {
		s := ss.Spans().AppendEmpty()
		s.SetName("span")
		s.SetTraceID([16]byte{byte(i), 1})
		s.SetSpanID([8]byte{byte(i), 2})
		if i%5 == 1 {
			s.SetName("ChatCompletion")
			s.Attributes().PutStr("openinference.span.kind", "LLM")
			s.Attributes().PutStr("output.value", output)
		} else {
			s.Attributes().PutStr("http.route", "/chat")
			s.Attributes().PutStr("url.path", "/chat/completions")
		}
	}
	e := exportOf(td)
	if gz {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		_, _ = zw.Write(e.Body)
		_ = zw.Close()
		e.Gzipped = buf.Bytes()
	}
	return e
}
