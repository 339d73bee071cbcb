package otlp

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// blocking is a consumer that holds every export until released, as an
// upstream slower than the apps would.
type blocking struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocking) ConsumeTraces(ctx context.Context, _ *Export) error {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// While the in-flight budget is spent, further exports are refused with the
// OTLP throttling answer, on both transports, and taken again once it frees.
func TestInflightLimit(t *testing.T) {
	body := marshalProto(t, sampleRequest(50))
	cons := &blocking{entered: make(chan struct{}, 4), release: make(chan struct{})}
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	r := startReceiver(t, ReceiverConfig{MaxInflightBytes: int64(len(body)) + 10}, cons, m)

	// The first export takes the whole budget and waits on the "upstream".
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+r.HTTPAddr().String()+TracesPath, contentTypeProto, bytes.NewReader(body))
		if err != nil {
			first <- -1
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-cons.entered

	// HTTP: 429, Retry-After, a Status naming the limit; the consumer not called.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentTypeProto)
	r.HTTPHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("over budget: HTTP %d, Retry-After %q; want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	if st := decodeStatusBody(t, rec.Header().Get("Content-Type"), rec.Body.Bytes()); !strings.Contains(st.GetMessage(), "in-flight") {
		t.Errorf("status message %q does not say why", st.GetMessage())
	}

	// gRPC: ResourceExhausted with a RetryInfo, which OTLP exporters honour.
	cc, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(50))
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted || !hasRetryInfo(st) {
		t.Fatalf("over budget over gRPC: %v, want ResourceExhausted with RetryInfo", err)
	}
	if n := testutil.ToFloat64(m.overloaded.WithLabelValues("http")) + testutil.ToFloat64(m.overloaded.WithLabelValues("grpc")); n != 2 {
		t.Errorf("overloaded requests counted %v, want 2", n)
	}
	// The body's bytes, and the one byte read to see its end.
	if got := testutil.ToFloat64(m.inflightBytes); got < float64(len(body)) || got > float64(len(body)+1) {
		t.Errorf("in-flight bytes gauge = %v, want %d", got, len(body))
	}

	// Freed: taken again.
	close(cons.release)
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first export answered %d", code)
	}
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(50)); err != nil {
		t.Fatalf("after the budget freed: %v", err)
	}
	<-cons.entered
	if got := testutil.ToFloat64(m.inflightBytes); got != 0 {
		t.Errorf("in-flight bytes after all answered = %v, want 0", got)
	}
}

func hasRetryInfo(st *status.Status) bool {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return true
		}
	}
	return false
}
