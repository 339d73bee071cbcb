package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
)

// postHeaderOnly opens a connection and sends the header of a POST that
// declares a body of declared bytes, and then only the first sent bytes.
func postHeaderOnly(t *testing.T, addr string, declared int, sent []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", TracesPath, contentTypeProto, declared)
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	return c
}

// A body announced but not sent costs the budget nothing: clients that
// declare 20 MiB and stall no longer lock everyone else out, and the read
// timeout ends them.
func TestStalledBodiesHoldNoBudget(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	rec := &recorder{}
	r := startReceiver(t, ReceiverConfig{MaxInflightBytes: 1 << 20, MaxRequestBytes: 20 << 20,
		Limits: listener.Limits{ReadTimeout: 500 * time.Millisecond}}, rec, m)
	var stalled []net.Conn
	for range 8 {
		stalled = append(stalled, postHeaderOnly(t, r.HTTPAddr().String(), 20<<20, []byte{0x0a}))
	}
	time.Sleep(100 * time.Millisecond) // let the server read what they sent
	if got := testutil.ToFloat64(m.inflightBytes); got > 8*readChunk {
		t.Errorf("8 stalled bodies hold %v bytes of the budget; want at most a chunk each", got)
	}
	body := marshalProto(t, sampleRequest(20))
	resp, err := http.Post("http://"+r.HTTPAddr().String()+TracesPath, contentTypeProto, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a well-behaved export beside 8 stalled ones: %d, want 200", resp.StatusCode)
	}
	// The read timeout ends each stalled request; the budget is whole again.
	for _, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("a stalled connection was not closed by the read timeout: %v", err)
		}
	}
	if got := testutil.ToFloat64(m.inflightBytes); got != 0 {
		t.Errorf("in-flight bytes after the stalled requests ended = %v, want 0", got)
	}
}

// The budget is charged for a body as it arrives, whatever its framing:
// chunked bodies (no Content-Length) and decompressed ones included.
func TestBudgetChargedAsRead(t *testing.T) {
	pb := marshalProto(t, sampleRequest(200))
	for _, tc := range []struct {
		name, encoding string
		body           []byte
	}{
		{"chunked", "", pb},
		{"gzip", "gzip", compress(t, "gzip", pb)},
		{"deflate", "deflate", compress(t, "deflate", pb)},
		{"zstd", "zstd", compress(t, "zstd", pb)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A budget smaller than the decompressed body, with another
			// request holding part of it: refused, whatever the framing.
			r := newHandler(t, 20<<20, &recorder{})
			r.budget = budget.New(int64(len(pb))/2, nil)
			other := r.budget.Reserve()
			if !other.Grow(1) {
				t.Fatal("cannot reserve")
			}
			defer other.Release()
			req, _ := http.NewRequest(http.MethodPost, TracesPath, io.MultiReader(bytes.NewReader(tc.body))) // no length: chunked
			req.Header.Set("Content-Type", contentTypeProto)
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			w := newRecorderWriter()
			r.HTTPHandler().ServeHTTP(w, req)
			if w.code != http.StatusTooManyRequests {
				t.Fatalf("%s body of %d bytes decompressed over a budget of %d: %d, want 429", tc.name, len(pb), r.budget.Limit(), w.code)
			}
			if r.budget.Used() != 1 {
				t.Errorf("budget used after the refusal = %d, want 1 (the other request's)", r.budget.Used())
			}
		})
	}
}

type recorderWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorderWriter() *recorderWriter { return &recorderWriter{h: http.Header{}} }

func (w *recorderWriter) Header() http.Header         { return w.h }
func (w *recorderWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *recorderWriter) WriteHeader(code int)        { w.code = code }

// Past MaxConnections a connection is closed at once and counted; the
// connections already open keep working.
func TestMaxConnections(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	r := startReceiver(t, ReceiverConfig{Limits: listener.Limits{MaxConnections: 2}}, &recorder{}, m)
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", r.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	time.Sleep(50 * time.Millisecond) // accepted
	extra, err := net.Dial("tcp", r.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the connection over the limit: read %d, %v; want EOF (closed at once)", n, err)
	}
	if got := testutil.ToFloat64(m.refusedConns.WithLabelValues("http")); got != 1 {
		t.Errorf("refused connections = %v, want 1", got)
	}
	// One of the open ones is served.
	fmt.Fprintf(open[0], "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 0\r\n\r\n", TracesPath, contentTypeProto)
	_ = open[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 12)
	if _, err := io.ReadFull(open[0], line); err != nil || string(line) != "HTTP/1.1 200" {
		t.Fatalf("an open connection: %q, %v; want HTTP/1.1 200", line, err)
	}
}

// A gRPC call whose message does not come within ReadTimeout ends with
// DeadlineExceeded. While the reception slots are taken by such calls, a
// few more calls wait for one; past those, a call is refused at once with
// ResourceExhausted. Once the stalled calls end, exports are taken again.
func TestGRPCStalledCalls(t *testing.T) {
	rec := &recorder{}
	// More streams on the one connection than a client would open.
	cfg := ReceiverConfig{HTTPAddr: "-", MaxConcurrentStreams: 64, Limits: listener.Limits{ReadTimeout: 700 * time.Millisecond}}
	r := startReceiver(t, cfg, rec, nil)
	cc, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	slots, waiters := cap(r.receiving), cap(r.waiting)
	ended := make(chan error, slots+waiters)
	for range slots + waiters {
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, exportMethod)
		if err != nil {
			t.Fatal(err)
		}
		go func() { ended <- s.RecvMsg(new(ptraceotlp.ExportResponse)) }() // sends nothing
	}
	deadline := time.Now().Add(5 * time.Second)
	for (len(r.receiving) < slots || len(r.waiting) < waiters) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, err = ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3))
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted {
		t.Fatalf("an export while %d stalled calls hold every slot and %d wait: %v, want ResourceExhausted", slots, waiters, err)
	}
	// Those holding a slot time out; those waiting, timed out too, or
	// refused once they waited as long.
	timedOut := 0
	for range slots + waiters {
		switch st, _ := status.FromError(<-ended); st.Code() {
		case codes.DeadlineExceeded:
			timedOut++
		case codes.ResourceExhausted:
		default:
			t.Errorf("a stalled call ended with %v, want DeadlineExceeded or ResourceExhausted", st)
		}
	}
	if timedOut < slots {
		t.Errorf("%d stalled calls timed out, want at least the %d holding a slot", timedOut, slots)
	}
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3)); err != nil {
		t.Fatalf("an export once the stalled calls ended: %v", err)
	}
	if rec.calls() != 1 {
		t.Errorf("consumer called %d times, want 1", rec.calls())
	}
}

// A call that finds every slot taken waits for one: a short burst of
// exports is received, not refused.
func TestGRPCWaitsForASlot(t *testing.T) {
	rec := &recorder{}
	cfg := ReceiverConfig{HTTPAddr: "-", Limits: listener.Limits{ReadTimeout: 500 * time.Millisecond}}
	r := startReceiver(t, cfg, rec, nil)
	cc, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range cap(r.receiving) {
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, exportMethod)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.RecvMsg(new(ptraceotlp.ExportResponse)) }() // stalls
	}
	for len(r.receiving) < cap(r.receiving) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3)); err != nil {
		t.Fatalf("an export that waited for the stalled calls to end: %v", err)
	}
	if rec.calls() != 1 {
		t.Errorf("consumer called %d times, want 1", rec.calls())
	}
}
