package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
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

// grpcHarness is a receiver with gRPC only, and a client connection to it.
func grpcHarness(t *testing.T, readTimeout, minHold time.Duration) (*Receiver, *recorder, *grpc.ClientConn, context.Context) {
	t.Helper()
	rec := &recorder{}
	// More streams on the one connection than a client would open.
	cfg := ReceiverConfig{HTTPAddr: "-", MaxConcurrentStreams: 64, Limits: listener.Limits{ReadTimeout: readTimeout}}
	r := startReceiver(t, cfg, rec, nil)
	r.receptions.minHold = minHold
	cc, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return r, rec, cc, ctx
}

// stallCalls opens n calls that send nothing; their outcomes come on the
// channel.
func stallCalls(t *testing.T, ctx context.Context, cc *grpc.ClientConn, n int) chan error {
	t.Helper()
	ended := make(chan error, n)
	for range n {
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, exportMethod)
		if err != nil {
			t.Fatal(err)
		}
		go func() { ended <- s.RecvMsg(new(ptraceotlp.ExportResponse)) }()
	}
	return ended
}

func waitBusy(t *testing.T, r *Receiver, slots, waiting int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s, w := r.receptions.busy()
		if s >= slots && w >= waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("busy slots %d, waiting %d; want %d and %d", s, w, slots, waiting)
		}
	}
}

func code(err error) codes.Code {
	st, _ := status.FromError(err)
	return st.Code()
}

// A gRPC call whose message does not come within ReadTimeout ends with
// DeadlineExceeded, and what it held is freed.
func TestGRPCStalledCallTimesOut(t *testing.T) {
	r, _, cc, ctx := grpcHarness(t, 300*time.Millisecond, time.Hour)
	ended := stallCalls(t, ctx, cc, 1)
	if c := code(<-ended); c != codes.DeadlineExceeded {
		t.Fatalf("a stalled call alone ended with %v, want DeadlineExceeded", c)
	}
	if s, _ := r.receptions.busy(); s != 0 {
		t.Errorf("%d slots still taken", s)
	}
}

// Calls that send nothing hold every reception slot: an export that comes
// then waits, the call that held a slot longest gives it up (Unavailable,
// retryable) once it has held it for the minimum, and the export is taken.
func TestGRPCStalledCallsGiveWay(t *testing.T) {
	r, rec, cc, ctx := grpcHarness(t, 10*time.Second, 200*time.Millisecond)
	slots := cap(r.receptions.slots)
	ended := stallCalls(t, ctx, cc, slots)
	waitBusy(t, r, slots, 0)
	start := time.Now()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3)); err != nil {
		t.Fatalf("an export while %d stalled calls hold every slot: %v, want it taken", slots, err)
	}
	if rec.calls() != 1 {
		t.Errorf("consumer called %d times, want 1", rec.calls())
	}
	if c := code(<-ended); c != codes.Unavailable {
		t.Errorf("the stalled call that gave way ended with %v, want Unavailable", c)
	}
	t.Logf("taken after %s", time.Since(start).Round(time.Millisecond))
}

// Past the slots and the waiting places, a call is refused at once with
// ResourceExhausted; the waiting ones time out as the clock says.
func TestGRPCReceptionsFull(t *testing.T) {
	r, _, cc, ctx := grpcHarness(t, 500*time.Millisecond, time.Hour)
	slots, waiters := cap(r.receptions.slots), cap(r.receptions.waiting)
	ended := stallCalls(t, ctx, cc, slots+waiters)
	waitBusy(t, r, slots, waiters)
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3)); code(err) != codes.ResourceExhausted {
		t.Fatalf("an export past %d slots and %d waiting places: %v, want ResourceExhausted", slots, waiters, err)
	}
	for range slots + waiters {
		if c := code(<-ended); c != codes.DeadlineExceeded && c != codes.ResourceExhausted {
			t.Errorf("a stalled call ended with %v, want DeadlineExceeded or ResourceExhausted", c)
		}
	}
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3)); err != nil {
		t.Fatalf("an export once the stalled calls ended: %v", err)
	}
}

// Clients that send part of a body and stop fill the budget; an export
// that needs room then cuts off the one that stalled longest (503, retry)
// and is taken: a client must keep sending to keep what it holds.
func TestStalledBodiesGiveWay(t *testing.T) {
	body := marshalProto(t, sampleRequest(200))
	rec := &recorder{}
	r := startReceiver(t, ReceiverConfig{MaxInflightBytes: int64(len(body)) * 3 / 2, MaxRequestBytes: 20 << 20,
		Limits: listener.Limits{ReadTimeout: 20 * time.Second}}, rec, nil)
	r.budget.MinStall = 100 * time.Millisecond
	// Each sends 60 % of a body and stops: two hold more than the budget
	// leaves for a third.
	part := body[:len(body)*6/10]
	var stalled []net.Conn
	for range 2 {
		stalled = append(stalled, postHeaderOnly(t, r.HTTPAddr().String(), len(body), part))
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); r.budget.Used() < int64(len(part)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled bodies hold %d bytes, want at least %d", r.budget.Used(), len(part))
		}
	}
	time.Sleep(150 * time.Millisecond) // past MinStall
	resp, err := http.Post("http://"+r.HTTPAddr().String()+TracesPath, contentTypeProto, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rec.calls() != 1 {
		t.Fatalf("an export beside stalled bodies filling the budget: %d (%d handed on), want 200", resp.StatusCode, rec.calls())
	}
	// The first to stall was cut off with a retryable answer.
	_ = stalled[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 12)
	if _, err := io.ReadFull(stalled[0], line); err != nil || string(line) != "HTTP/1.1 503" {
		t.Errorf("the stalled request cut off: %q, %v; want HTTP/1.1 503", line, err)
	}
}

// fakeConn is a connection's read clock, set by the test.
type fakeConn struct {
	mu   sync.Mutex
	last time.Time
}

func (c *fakeConn) LastRead() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *fakeConn) set(t time.Time) {
	c.mu.Lock()
	c.last = t
	c.mu.Unlock()
}

func aborted(h *reception) bool {
	select {
	case <-h.abort:
		return true
	default:
		return false
	}
}

// The holder evicted is the one whose connection has read nothing for
// longest, not the one that has held its slot longest; its silence counts
// from when it took the slot at the earliest, and a holder on an unknown
// connection is judged by its holding time.
func TestReceptionsEvictTheQuietest(t *testing.T) {
	const minHold = time.Second
	rs := newReceptions(4, 1, minHold)
	now := time.Now()
	busy, quiet, longQuiet := &fakeConn{last: now}, &fakeConn{last: now.Add(-2 * time.Second)}, &fakeConn{last: now.Add(-time.Hour)}
	take := func(conn lastReader, since time.Time) *reception {
		h := rs.acquire(context.Background(), 0, conn)
		if h == nil {
			t.Fatal("refused with slots free")
		}
		h.since = since
		return h
	}
	steady := take(busy, now.Add(-10*time.Second))        // held longest, still reading
	stalled := take(quiet, now.Add(-5*time.Second))       // quiet for 2 s
	unknown := take(nil, now.Add(-1500*time.Millisecond)) // held for 1.5 s
	fresh := take(longQuiet, now)                         // quiet for long, but just took its slot

	check := func(step string, want ...*reception) {
		t.Helper()
		for _, h := range []*reception{steady, stalled, unknown, fresh} {
			w := false
			for _, x := range want {
				w = w || x == h
			}
			if aborted(h) != w {
				t.Errorf("%s: holder since %s, quiet since %s: aborted %v, want %v",
					step, now.Sub(h.since), now.Sub(h.quietSince()), aborted(h), w)
			}
		}
	}
	rs.evictStalled()
	check("first", stalled)
	rs.evictStalled()
	check("second", stalled, unknown)
	rs.evictStalled()
	check("third: the steady one and the fresh one keep their slots", stalled, unknown)
	busy.set(now.Add(-3 * time.Second)) // stops reading
	rs.evictStalled()
	check("fourth", stalled, unknown, steady)
	for _, h := range []*reception{steady, stalled, unknown, fresh} {
		rs.release(h)
	}
	if s, _ := rs.busy(); s != 0 {
		t.Errorf("%d slots taken after all released", s)
	}
}

// throttledConn writes at most chunk bytes at a time, pausing after each:
// a slow but steady link.
type throttledConn struct {
	net.Conn
	chunk int
	pause time.Duration
}

func (c *throttledConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), c.chunk)
		m, err := c.Conn.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
		time.Sleep(c.pause)
	}
	return n, nil
}

// An export whose message arrives slowly but steadily, for many times
// minHold, keeps its slot and is received while calls that send nothing
// take and lose the other slots, and another exporter waiting is served
// meanwhile. (Judged by holding time, it would be cut off as soon as
// another call waited, on every retry.)
func TestGRPCSlowSteadyExportKeepsItsSlot(t *testing.T) {
	const minHold = 200 * time.Millisecond
	r, rec, cc, ctx := grpcHarness(t, 20*time.Second, minHold)
	slots := cap(r.receptions.slots)

	// 8 KiB every 20 ms, far shorter pauses than minHold: 400 KiB/s.
	slow, err := grpc.NewClient("passthrough:///"+r.GRPCAddr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &throttledConn{Conn: c, chunk: 8 << 10, pause: 20 * time.Millisecond}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	big := sampleRequest(500)
	size := len(marshalProto(t, big))
	slowDone := make(chan error, 1)
	var slowTook time.Duration
	start := time.Now()
	go func() {
		_, err := ptraceotlp.NewGRPCClient(slow).Export(ctx, big)
		slowTook = time.Since(start)
		slowDone <- err
	}()
	waitBusy(t, r, 1, 0)

	// The other slots taken by calls that send nothing, one more such
	// call waiting, and an exporter waiting behind it.
	ended := stallCalls(t, ctx, cc, slots)
	waitBusy(t, r, slots, 1)
	fastDone := make(chan error, 1)
	go func() {
		_, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, sampleRequest(3))
		fastDone <- err
	}()

	select {
	case err := <-fastDone:
		if err != nil {
			t.Fatalf("an export waiting beside the slow one: %v, want it taken", err)
		}
	case err := <-slowDone:
		t.Fatalf("the slow export ended (%v, after %s) before the waiting one was served", err, slowTook)
	}
	if err := <-slowDone; err != nil {
		t.Fatalf("an export of %d bytes arriving steadily over %s while others waited: %v, want it received", size, slowTook, err)
	}
	if slowTook < 4*minHold {
		t.Fatalf("the slow export took %s only; the test needs it to take many times minHold (%s)", slowTook, minHold)
	}
	if rec.calls() != 2 {
		t.Errorf("consumer called %d times, want 2", rec.calls())
	}
	spans := 0
	rec.mu.Lock()
	for _, e := range rec.exports {
		spans = max(spans, e.Spans)
	}
	rec.mu.Unlock()
	if spans != 500 {
		t.Errorf("the largest export received has %d spans, want 500", spans)
	}
	// The calls that sent nothing gave way meanwhile.
	evicted := 0
	for more := true; more; {
		select {
		case err := <-ended:
			if c := code(err); c != codes.Unavailable {
				t.Errorf("a stalled call ended with %v, want Unavailable", c)
			}
			evicted++
		default:
			more = false
		}
	}
	if evicted == 0 {
		t.Error("no stalled call was evicted while the slow export was received")
	}
	t.Logf("%d bytes received in %s; %d stalled calls evicted meanwhile", size, slowTook.Round(time.Millisecond), evicted)
}
