package feedback_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// The benchmarks here measure one feedback from its arrival to the
// annotation call, with Phoenix replaced by an annotator that answers at
// once, so what is left is the proxy's own cost. Run them with
//
//	go test -run '^$' -bench . -benchmem ./pkg/feedback/

// benchAnnotator accepts every annotation at once and, when done is set,
// says so on it.
type benchAnnotator struct {
	done chan struct{}
}

func (a *benchAnnotator) AnnotateSpans(_ context.Context, anns []phoenix.SpanAnnotation) ([]string, error) {
	if a.done != nil {
		a.done <- struct{}{}
	}
	return []string{"U3BhbkFubm90YXRpb246MQ=="}, nil
}

const benchIndexed = 100_000

func benchResponseID(i int) string { return fmt.Sprintf("chatcmpl-%029d", i) }

func benchSpan(i int) index.Span {
	var tid pcommon.TraceID
	binary.BigEndian.PutUint64(tid[8:], uint64(i)+1)
	var sid pcommon.SpanID
	binary.BigEndian.PutUint64(sid[:], uint64(i)+1)
	return index.Span{TraceID: tid, SpanID: sid, Project: "default", Name: "ChatCompletion"}
}

// benchService returns a service over an index that holds benchIndexed
// responses, with metrics on as in the proxy. The service is shut down at
// the end of the benchmark.
func benchService(b *testing.B, cfg feedback.Config, ann *benchAnnotator) (*feedback.Service, *index.Index) {
	b.Helper()
	reg := prometheus.NewRegistry()
	ix, err := index.New(index.Config{}, index.NewMetrics(reg))
	if err != nil {
		b.Fatal(err)
	}
	entries := make([]index.Entry, benchIndexed)
	for i := range entries {
		entries[i] = index.Entry{ResponseID: benchResponseID(i), Span: benchSpan(i)}
	}
	ix.Add(entries)
	svc, err := feedback.New(cfg, ix, ann, feedback.NewMetrics(reg), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
	})
	return svc, ix
}

// BenchmarkSubmit is one thumbs-up for a response whose span is indexed:
// checked, resolved through the index, written by the annotator and ended,
// as POST /feedback waits for it (SubmitAndWait).
func BenchmarkSubmit(b *testing.B) {
	svc, _ := benchService(b, feedback.Config{SyncWait: 10 * time.Second}, &benchAnnotator{})
	benchSubmitLoop(b, svc)
}

// benchSubmitLoop submits thumbs-ups for indexed responses, one per
// iteration, and waits for each to be annotated.
func benchSubmitLoop(b *testing.B, svc *feedback.Service) {
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		st, err := svc.SubmitAndWait(ctx, []feedback.Feedback{{ResponseID: benchResponseID(i % benchIndexed), Thumbs: "up"}})
		if err != nil || st[0].State != feedback.Annotated {
			b.Fatalf("SubmitAndWait = %+v, %v", st, err)
		}
		i++
	}
}

// BenchmarkSubmitBeforeSpan is a feedback that arrives before its span:
// it waits, the span is indexed, and the service writes the annotation.
func BenchmarkSubmitBeforeSpan(b *testing.B) {
	ann := &benchAnnotator{done: make(chan struct{}, 1)}
	svc, ix := benchService(b, feedback.Config{SyncWait: -1}, ann)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		id := benchResponseID(benchIndexed + i)
		if _, err := svc.Submit([]feedback.Feedback{{ResponseID: id, Thumbs: "down"}}); err != nil {
			b.Fatal(err)
		}
		svc.Indexed(ix.Add([]index.Entry{{ResponseID: id, Span: benchSpan(benchIndexed + i)}}))
		<-ann.done
		i++
	}
}

// BenchmarkHTTP is the feedback API as a client calls it: POST /feedback
// with one JSON object (answered once annotated), and GET of a response's
// feedback.
func BenchmarkHTTP(b *testing.B) {
	svc, _ := benchService(b, feedback.Config{SyncWait: 10 * time.Second}, &benchAnnotator{})
	h := svc.Handler()
	b.Run("post", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			body := `{"response_id":"` + benchResponseID(i%benchIndexed) + `","thumbs":"up","identifier":"user-42","metadata":{"app":"chatbot"}}`
			req := httptest.NewRequest(http.MethodPost, "/feedback", strings.NewReader(body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"annotated"`) {
				b.Fatalf("POST /feedback = %d %s", rec.Code, rec.Body)
			}
			i++
		}
	})
	b.Run("get", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, "/feedback/"+benchResponseID(i%benchIndexed), nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("GET = %d %s", rec.Code, rec.Body)
			}
			i++
		}
	})
}
