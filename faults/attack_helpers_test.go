//go:build e2e

package faults

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// What the attack suite (attack_test.go) is made of: the well-behaved client
// that keeps working through each attack, the RSS monitor, raw connections
// that trickle or stall, a minimal HTTP/2 client for the gRPC streams a real
// client would never send, decompression bombs, and a gate in front of
// Phoenix that can play "down".

// The proxy's defaults the attacks are measured against (cmd/proxy --help).
const (
	defReadHeaderTimeout = 10 * time.Second
	defReadTimeout       = 30 * time.Second
	defMaxConnections    = 512
	defMaxRequestBytes   = 20 << 20
	defMaxInflightBytes  = 64 << 20
)

// attackRSSLimitMiB is the bound on the proxy's peak RSS in every attack:
// the README's worst case for the defaults (proxy.MemoryBound, 399 MiB,
// which the proxy also sets as Go's soft memory limit) with room for what
// the runtime holds outside the heap. ATTACK_RSS_LIMIT_MIB overrides it.
var attackRSSLimitMiB = func() int64 {
	if v, err := strconv.ParseInt(os.Getenv("ATTACK_RSS_LIMIT_MIB"), 10, 64); err == nil && v > 0 {
		return v
	}
	return 450
}()

// goodRetryWindow is how long the well-behaved client keeps retrying one
// export or feedback that is answered with a retryable refusal (429, 503,
// ResourceExhausted, Unavailable, a closed connection), honouring the
// Retry-After it is given, as OTLP exporters do. An operation still refused
// after it has failed.
const goodRetryWindow = 12 * time.Second

// attack is one case: the proxy, its well-behaved client, the RSS monitor.
type attack struct {
	t     *testing.T
	name  string
	p     *proxyProc
	good  *goodClient
	rss   *rssMonitor
	begin time.Time
}

// startAttack starts a proxy with no flags but its addresses and the real
// Phoenix, lets the well-behaved client make one export (HTTP, and gRPC
// when withGRPC) and one feedback before the attack, then starts the RSS
// monitor and the client's loop: the attack may begin.
func startAttack(t *testing.T, name string, withGRPC bool) *attack {
	t.Helper()
	p := newProxy(t, phoenixURL)
	return startAttackOn(t, name, p, withGRPC)
}

func startAttackOn(t *testing.T, name string, p *proxyProc, withGRPC bool) *attack {
	t.Helper()
	a := &attack{t: t, name: name, p: p}
	a.good = newGoodClient(t, p, name, withGRPC)
	a.good.warm()
	a.rss = monitorRSS(p)
	a.good.start(time.Second)
	a.begin = time.Now()
	return a
}

// finish ends the attack: it stops the client's loop and the RSS monitor,
// checks that every export and feedback the client made during the attack
// got through and ended in Phoenix, that the proxy is up and ready, and
// that its peak RSS stayed under the bound; then logs the case's ATTACK
// line with what the proxy did.
func (a *attack) finish(what string) {
	t := a.t
	t.Helper()
	a.good.stop()
	peak := a.rss.stop()
	alive := a.p.pid() != 0 && !processExited(a.p.pid())
	ready, readyBody := a.p.readyz()
	goodSummary := a.good.verify(60 * time.Second)
	t.Logf("ATTACK %s: %s; %s peak_rss_mib=%d", a.name, what, goodSummary, peak)
	if !alive {
		t.Errorf("%s: the proxy is no longer running", a.name)
	} else if ready != http.StatusOK {
		t.Errorf("%s: /readyz after the attack: %d %q", a.name, ready, readyBody)
	}
	if peak > attackRSSLimitMiB {
		t.Errorf("%s: peak RSS %d MiB, over the bound of %d MiB", a.name, peak, attackRSSLimitMiB)
	}
}

// readyz returns /readyz's status and body; 0 when it cannot be reached.
func (p *proxyProc) readyz() (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// ---- the well-behaved client ----

// goodOp is one export of one LLM trace by the well-behaved client, and
// the feedback for its LLM span.
type goodOp struct {
	transport  string // "http" or "grpc"
	during     bool   // made while the attack ran
	responseID string
	identifier string
	traceID    pcommon.TraceID
	llmSpanID  string
	spanIDs    []string
	ok         bool
	tries      int
	last       string // the last answer: "200", "429", "ResourceExhausted", an error
	took       time.Duration
	// The feedback is for target's LLM span: op's own, or, when op's
	// export was refused, the last one the proxy took (a second vote on
	// it), so that the feedback path is tried whatever befell the export.
	target  *goodOp
	fbOK    bool
	fbTries int
	fbLast  string
	fbState string
}

type goodClient struct {
	t       *testing.T
	p       *proxyProc
	project string
	grpc    bool

	httpClient, fbClient *http.Client
	grpcConn             *grpc.ClientConn
	grpcClient           ptraceotlp.GRPCClient

	mu    sync.Mutex
	ops   []*goodOp
	n     int
	stopc chan struct{}
	done  chan struct{}
}

func newGoodClient(t *testing.T, p *proxyProc, name string, withGRPC bool) *goodClient {
	t.Helper()
	g := &goodClient{t: t, p: p, project: "attack-" + name + "-" + runTag(), grpc: withGRPC}
	// Each client keeps its connections alive, as exporters do: the
	// attacks that fill a listener's connections leave these alone.
	newClient := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 5 * time.Minute, DisableCompression: true,
		}}
	}
	g.httpClient, g.fbClient = newClient(), newClient()
	if withGRPC {
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		g.grpcConn, g.grpcClient = conn, ptraceotlp.NewGRPCClient(conn)
	}
	t.Cleanup(func() {
		g.httpClient.CloseIdleConnections()
		g.fbClient.CloseIdleConnections()
		if g.grpcConn != nil {
			g.grpcConn.Close()
		}
	})
	return g
}

// newOp builds the next trace: a request span, an LLM span carrying the
// GenAI response id, an HTTP client span under it.
func (g *goodClient) newOp(transport string, during bool) (*goodOp, ptrace.Traces) {
	g.mu.Lock()
	g.n++
	n := g.n
	g.mu.Unlock()
	op := &goodOp{transport: transport, during: during,
		responseID: fmt.Sprintf("chatcmpl-%s-%d", g.project, n), identifier: fmt.Sprintf("good-%d", n)}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "attack-good")
	rs.Resource().Attributes().PutStr("openinference.project.name", g.project)
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	_, _ = rand.Read(op.traceID[:])
	now := time.Now()
	var parent pcommon.SpanID
	for i, name := range []string{"handle_request", "chat gpt-4o-mini", "POST"} {
		var sid pcommon.SpanID
		_, _ = rand.Read(sid[:])
		s := spans.AppendEmpty()
		s.SetName(name)
		s.SetTraceID(op.traceID)
		s.SetSpanID(sid)
		s.SetParentSpanID(parent)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i) * time.Millisecond)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(50-i) * time.Millisecond)))
		switch i {
		case 0:
			s.SetKind(ptrace.SpanKindServer)
		case 1:
			s.SetKind(ptrace.SpanKindClient)
			s.Attributes().PutStr("gen_ai.operation.name", "chat")
			s.Attributes().PutStr("gen_ai.provider.name", "openai")
			s.Attributes().PutStr("gen_ai.request.model", "gpt-4o-mini")
			s.Attributes().PutStr("gen_ai.response.id", op.responseID)
			s.Attributes().PutInt("gen_ai.usage.input_tokens", 12)
			op.llmSpanID = hex.EncodeToString(sid[:])
		case 2:
			s.SetKind(ptrace.SpanKindClient)
			s.Attributes().PutStr("http.request.method", "POST")
		}
		op.spanIDs = append(op.spanIDs, hex.EncodeToString(sid[:]))
		parent = sid
	}
	return op, td
}

// exportBody is the protobuf of td, as an exporter sends it.
func exportBody(td ptrace.Traces) []byte {
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		panic(err)
	}
	return b
}

// retry runs attempt until it succeeds, fails for good, or goodRetryWindow
// has passed; attempt returns its answer, whether it may be retried and
// after how long.
func retry(attempt func() (answer string, ok, retryable bool, after time.Duration)) (tries int, last string, ok bool) {
	deadline := time.Now().Add(goodRetryWindow)
	for {
		tries++
		answer, ok, retryable, after := attempt()
		if ok || !retryable {
			return tries, answer, ok
		}
		wait := min(max(after, 250*time.Millisecond), 5*time.Second)
		if time.Now().Add(wait).After(deadline) {
			return tries, answer, false
		}
		time.Sleep(wait)
	}
}

func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil {
		return time.Duration(s) * time.Second
	}
	return time.Second
}

// export sends op's trace over its transport, retrying as an exporter
// does.
func (g *goodClient) export(op *goodOp, td ptrace.Traces) bool {
	start := time.Now()
	body := exportBody(td)
	switch op.transport {
	case "http":
		op.tries, op.last, op.ok = retry(func() (string, bool, bool, time.Duration) {
			resp, err := g.httpClient.Post("http://"+g.p.httpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
			if err != nil {
				return err.Error(), false, true, time.Second
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return "200", true, false, 0
			case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				return strconv.Itoa(resp.StatusCode), false, true, retryAfter(resp.Header)
			}
			return strconv.Itoa(resp.StatusCode), false, false, 0
		})
	case "grpc":
		req := ptraceotlp.NewExportRequestFromTraces(td)
		op.tries, op.last, op.ok = retry(func() (string, bool, bool, time.Duration) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := g.grpcClient.Export(ctx, req)
			if err == nil {
				return "OK", true, false, 0
			}
			st := status.Convert(err)
			switch st.Code() {
			case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Canceled:
				return st.Code().String(), false, true, time.Second
			}
			return st.Code().String() + ": " + st.Message(), false, false, 0
		})
	}
	op.took = time.Since(start)
	return op.ok
}

// feedback sends a thumbs up for op's response id.
func (g *goodClient) feedback(op *goodOp) bool {
	return g.feedbackFor(op, op)
}

// feedbackFor sends op's thumbs up for target's response id.
func (g *goodClient) feedbackFor(op, target *goodOp) bool {
	op.target = target
	body, _ := json.Marshal(map[string]any{"response_id": target.responseID, "thumbs": "up", "identifier": op.identifier})
	op.fbTries, op.fbLast, op.fbOK = retry(func() (string, bool, bool, time.Duration) {
		resp, err := g.fbClient.Post("http://"+g.p.feedback+"/feedback", "application/json", bytes.NewReader(body))
		if err != nil {
			return err.Error(), false, true, time.Second
		}
		defer resp.Body.Close()
		var st struct {
			State string `json:"state"`
		}
		b, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusAccepted:
			_ = json.Unmarshal(b, &st)
			op.fbState = st.State
			return "202", true, false, 0
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)), false, true, retryAfter(resp.Header)
		}
		return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)), false, false, 0
	})
	return op.fbOK
}

// do makes one export over transport and, once it is taken, the feedback
// for its LLM span.
func (g *goodClient) do(transport string, during bool) *goodOp {
	op, td := g.newOp(transport, during)
	if g.export(op, td) {
		g.feedback(op)
	} else if last := g.lastTaken(); last != nil {
		g.feedbackFor(op, last)
	}
	g.mu.Lock()
	g.ops = append(g.ops, op)
	g.mu.Unlock()
	return op
}

// lastTaken returns the last operation whose export the proxy took.
func (g *goodClient) lastTaken() *goodOp {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.ops) - 1; i >= 0; i-- {
		if g.ops[i].ok {
			return g.ops[i]
		}
	}
	return nil
}

// warm makes an export (and a feedback) on each transport before the
// attack: it opens the connections the client keeps.
func (g *goodClient) warm() {
	g.t.Helper()
	for _, tr := range g.transports() {
		if op := g.do(tr, false); !op.ok || !op.fbOK {
			g.t.Fatalf("before the attack: %s export %s (%d tries), feedback %s", tr, op.last, op.tries, op.fbLast)
		}
	}
}

func (g *goodClient) transports() []string {
	if g.grpc {
		return []string{"http", "grpc"}
	}
	return []string{"http"}
}

// start makes an export (and its feedback) on each transport every
// interval until stop.
func (g *goodClient) start(interval time.Duration) {
	g.stopc, g.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(g.done)
		for {
			next := time.Now().Add(interval)
			for _, tr := range g.transports() {
				g.do(tr, true)
			}
			select {
			case <-g.stopc:
				return
			case <-time.After(time.Until(next)):
			}
		}
	}()
}

func (g *goodClient) stop() {
	if g.stopc != nil {
		close(g.stopc)
		<-g.done
		g.stopc = nil
	}
}

// verify checks every operation made during the attack: the export was
// answered 200/OK, its spans are in Phoenix, the feedback was accepted and
// its annotation is in Phoenix (waiting up to timeout for Phoenix). It
// returns a summary for the ATTACK line.
func (g *goodClient) verify(timeout time.Duration) string {
	t := g.t
	t.Helper()
	g.mu.Lock()
	ops := append([]*goodOp(nil), g.ops...)
	g.mu.Unlock()
	type count struct{ made, ok, retried, fb int }
	per := map[string]*count{}
	var worst time.Duration
	var failed []string
	for _, op := range ops {
		if !op.during {
			continue
		}
		c := per[op.transport]
		if c == nil {
			c = &count{}
			per[op.transport] = c
		}
		c.made++
		worst = max(worst, op.took)
		if op.ok {
			c.ok++
		} else if len(failed) < 5 {
			failed = append(failed, fmt.Sprintf("%s export %s after %d tries in %s", op.transport, op.last, op.tries, op.took.Round(time.Millisecond)))
		}
		if op.tries > 1 {
			c.retried++
		}
		if op.fbOK {
			c.fb++
		} else if len(failed) < 5 {
			failed = append(failed, fmt.Sprintf("feedback for a %s export: %s after %d tries", op.transport, op.fbLast, op.fbTries))
		}
	}
	var parts []string
	for _, tr := range g.transports() {
		c := per[tr]
		if c == nil || c.made == 0 {
			t.Errorf("the well-behaved client made no %s export during the attack", tr)
			continue
		}
		if c.ok < c.made || c.fb < c.made {
			t.Errorf("well-behaved client over %s: %d of %d exports answered OK, %d of %d feedbacks accepted", tr, c.ok, c.made, c.fb, c.made)
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d ok (%d retried), feedback %d/%d accepted", tr, c.ok, c.made, c.retried, c.fb, c.made))
	}
	for _, f := range failed {
		t.Logf("well-behaved client: %s", f)
	}

	// The truth is in Phoenix: spans, then annotations.
	want := map[string]bool{}
	for _, op := range ops {
		if op.ok {
			for _, id := range op.spanIDs {
				want[id] = true
			}
		}
	}
	deadline := time.Now().Add(timeout)
	missing := len(want)
	for {
		got := phoenixSpanIDs(t, g.project)
		missing = 0
		for id := range want {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if missing > 0 {
		t.Errorf("%d of %d spans the proxy accepted from the well-behaved client are not in Phoenix after %s", missing, len(want), timeout)
	}
	annotated, wantAnn := 0, 0
	for _, op := range ops {
		if !op.fbOK {
			continue
		}
		wantAnn++
		for {
			if hasAnnotation(t, g.project, op.target.llmSpanID, op.identifier) {
				annotated++
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("feedback %s for %s (accepted as %q) is not annotated in Phoenix after %s", op.identifier, op.target.responseID, op.fbState, timeout)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return fmt.Sprintf("good client: %s, worst export %s, spans in Phoenix %d/%d, annotated %d/%d",
		strings.Join(parts, ", "), worst.Round(time.Millisecond), len(want)-missing, len(want), annotated, wantAnn)
}

// ---- RSS ----

// rssMonitor samples the proxy's VmRSS and VmHWM every 100 ms.
type rssMonitor struct {
	p          *proxyProc
	stopc      chan struct{}
	done       chan struct{}
	peakKB     atomic.Int64
	sampledMax atomic.Int64
}

func monitorRSS(p *proxyProc) *rssMonitor {
	m := &rssMonitor{p: p, stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			m.sample()
			select {
			case <-m.stopc:
				m.sample()
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return m
}

func (m *rssMonitor) sample() {
	pid := m.p.pid()
	if pid == 0 {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, key := range []string{"VmHWM:", "VmRSS:"} {
			if v, ok := strings.CutPrefix(line, key); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if kb > m.peakKB.Load() {
					m.peakKB.Store(kb)
				}
				if key == "VmRSS:" && kb > m.sampledMax.Load() {
					m.sampledMax.Store(kb)
				}
			}
		}
	}
}

// stop returns the peak: the larger of VmHWM and the sampled VmRSS, in MiB
// (rounded up).
func (m *rssMonitor) stop() int64 {
	close(m.stopc)
	<-m.done
	return (m.peakKB.Load() + 1023) / 1024
}

// ---- raw connections ----

// rawConn is a TCP connection the test writes by hand. A goroutine reads
// what the proxy answers and notes when it closes the connection.
type rawConn struct {
	label  string
	c      net.Conn
	opened time.Time
	mu     sync.Mutex
	ended  time.Duration // since opened; 0 while open
	status string        // the status code of the first answer, "" if none
	done   chan struct{}
}

// dialRaw connects to addr and writes initial (giving up after 10 s: the
// proxy may refuse the request and close before it has read it all).
func dialRaw(addr, label string, initial []byte) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{label: label, c: c, opened: time.Now(), done: make(chan struct{})}
	go rc.read()
	if len(initial) > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(initial)
	}
	return rc, nil
}

func (rc *rawConn) read() {
	defer close(rc.done)
	br := bufio.NewReader(rc.c)
	line, err := br.ReadString('\n')
	if err == nil && strings.HasPrefix(line, "HTTP/") {
		if f := strings.Fields(line); len(f) >= 2 {
			rc.mu.Lock()
			rc.status = f[1]
			rc.mu.Unlock()
		}
	}
	if err == nil {
		_, _ = io.Copy(io.Discard, br)
	}
	rc.mu.Lock()
	rc.ended = max(time.Since(rc.opened), time.Nanosecond)
	rc.mu.Unlock()
}

// write writes b, giving up after a second.
func (rc *rawConn) write(b []byte) bool {
	_ = rc.c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := rc.c.Write(b)
	return err == nil
}

// state returns how long the connection lived (0: still open) and the
// status of the proxy's answer.
func (rc *rawConn) state() (time.Duration, string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.ended, rc.status
}

func (rc *rawConn) close() { rc.c.Close() }

// dialMany opens n connections to addr, 64 at a time.
func dialMany(addr, label string, n int, initial func(i int) []byte) ([]*rawConn, int) {
	conns := make([]*rawConn, n)
	var failed atomic.Int64
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var b []byte
			if initial != nil {
				b = initial(i)
			}
			rc, err := dialRaw(addr, label, b)
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i] = rc
		})
	}
	wg.Wait()
	var out []*rawConn
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, int(failed.Load())
}

// trickle writes next(rc, i) to every connection rc still open, once a
// second, until until; i counts the ticks.
func trickle(conns []*rawConn, until time.Time, next func(rc *rawConn, i int) []byte) {
	for i := 0; time.Now().Before(until); i++ {
		tick := time.Now()
		sem := make(chan struct{}, 128)
		var wg sync.WaitGroup
		for _, rc := range conns {
			b := next(rc, i)
			if ended, _ := rc.state(); ended != 0 || len(b) == 0 {
				continue
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				rc.write(b)
			})
		}
		wg.Wait()
		time.Sleep(time.Until(tick.Add(time.Second)))
	}
}

// connOutcome sums up what became of connections: how many the proxy
// closed, when (seconds after they opened), and its answers.
type connOutcome struct {
	n, closed        int
	first, last      time.Duration
	statuses         map[string]int
	openAtEnd        int
	dialFailed       int
	immediateRefusal int // closed within 200 ms, without an answer
}

func outcome(conns []*rawConn, dialFailed int) connOutcome {
	o := connOutcome{n: len(conns), statuses: map[string]int{}, dialFailed: dialFailed}
	for _, rc := range conns {
		ended, st := rc.state()
		if ended == 0 {
			o.openAtEnd++
			continue
		}
		o.closed++
		if st == "" {
			st = "none"
			if ended < 200*time.Millisecond {
				o.immediateRefusal++
			}
		}
		o.statuses[st]++
		if o.first == 0 || ended < o.first {
			o.first = ended
		}
		o.last = max(o.last, ended)
	}
	return o
}

// String is e.g. "closed 200/200 after 10.0-10.2s (answers: none=200)".
func (o connOutcome) String() string {
	var st []string
	for k, v := range o.statuses {
		st = append(st, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(st)
	s := fmt.Sprintf("closed %d/%d after %.1f-%.1fs (answers: %s)", o.closed, o.n, o.first.Seconds(), o.last.Seconds(), strings.Join(st, " "))
	if o.dialFailed > 0 {
		s += fmt.Sprintf(", %d dials failed", o.dialFailed)
	}
	return s
}

func closeAll(conns []*rawConn) {
	for _, rc := range conns {
		rc.close()
	}
}

// ---- a minimal HTTP/2 client, for gRPC streams ----

// h2Conn speaks just enough HTTP/2 to open gRPC streams and send what a
// real client would not (headers and then nothing, a message prefix that
// promises 20 MiB, a gzip bomb). It honours flow control.
type h2Conn struct {
	c         net.Conn
	fr        *http2.Framer
	authority string

	wmu  sync.Mutex // framer writes and the header encoder
	hbuf bytes.Buffer
	henc *hpack.Encoder

	mu           sync.Mutex
	cond         *sync.Cond
	window       int64 // connection send window
	streamWindow int64 // the peer's initial stream window
	nextID       uint32
	streams      map[uint32]*h2Stream
	closed       bool
	goaway       string // the peer's GOAWAY, if it sent one
}

// h2Stream is one gRPC call; done is closed when it ends (trailers, reset,
// or the connection closing).
type h2Stream struct {
	id      uint32
	opened  time.Time
	done    chan struct{}
	window  int64
	status  string // grpc-status, or "rst:<code>", or "closed"
	message string
	took    time.Duration
}

func dialH2(addr string) (*h2Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	h := &h2Conn{c: c, authority: addr, window: 65535, streamWindow: 65535, nextID: 1, streams: map[uint32]*h2Stream{}}
	h.cond = sync.NewCond(&h.mu)
	h.henc = hpack.NewEncoder(&h.hbuf)
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(64<<10, nil)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		c.Close()
		return nil, err
	}
	if err := h.fr.WriteSettings(); err != nil {
		c.Close()
		return nil, err
	}
	go h.readLoop()
	return h, nil
}

func (h *h2Conn) readLoop() {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.mu.Lock()
			h.closed = true
			for _, s := range h.streams {
				h.endLocked(s, "closed", strings.TrimSpace(h.goaway+" "+err.Error()))
			}
			h.cond.Broadcast()
			h.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			_ = f.ForeachSetting(func(s http2.Setting) error {
				if s.ID == http2.SettingInitialWindowSize {
					h.mu.Lock()
					h.streamWindow = int64(s.Val)
					h.mu.Unlock()
				}
				return nil
			})
			h.wmu.Lock()
			_ = h.fr.WriteSettingsAck()
			h.wmu.Unlock()
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				h.wmu.Lock()
				_ = h.fr.WritePing(true, data)
				h.wmu.Unlock()
			}
		case *http2.WindowUpdateFrame:
			h.mu.Lock()
			if f.StreamID == 0 {
				h.window += int64(f.Increment)
			} else if s := h.streams[f.StreamID]; s != nil {
				s.window += int64(f.Increment)
			}
			h.cond.Broadcast()
			h.mu.Unlock()
		case *http2.MetaHeadersFrame:
			h.mu.Lock()
			if s := h.streams[f.StreamID]; s != nil {
				for _, hf := range f.Fields {
					switch hf.Name {
					case "grpc-status":
						s.status = hf.Value
					case "grpc-message":
						s.message, _ = url.PathUnescape(hf.Value)
					}
				}
				if f.StreamEnded() {
					h.endLocked(s, s.status, s.message)
				}
			}
			h.mu.Unlock()
		case *http2.DataFrame:
			h.mu.Lock()
			if s := h.streams[f.StreamID]; s != nil && f.StreamEnded() {
				h.endLocked(s, s.status, s.message)
			}
			h.mu.Unlock()
		case *http2.GoAwayFrame:
			h.mu.Lock()
			h.goaway = fmt.Sprintf("GOAWAY %v %q", f.ErrCode, f.DebugData())
			h.mu.Unlock()
		case *http2.RSTStreamFrame:
			h.mu.Lock()
			if s := h.streams[f.StreamID]; s != nil {
				h.endLocked(s, "rst:"+f.ErrCode.String(), "")
			}
			h.mu.Unlock()
		}
	}
}

func (h *h2Conn) endLocked(s *h2Stream, st, msg string) {
	select {
	case <-s.done:
		return
	default:
	}
	if st == "" {
		st = "closed"
	}
	s.status, s.message, s.took = st, msg, time.Since(s.opened)
	delete(h.streams, s.id)
	close(s.done)
	h.cond.Broadcast()
}

// open starts a call of the OTLP Export method; extra headers follow the
// usual ones.
func (h *h2Conn) open(extra ...string) (*h2Stream, error) {
	// Stream ids must reach the peer in increasing order: the id is taken
	// under the write lock.
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errors.New("connection closed")
	}
	s := &h2Stream{id: h.nextID, opened: time.Now(), done: make(chan struct{}), window: h.streamWindow}
	h.nextID += 2
	h.streams[s.id] = s
	h.mu.Unlock()
	h.hbuf.Reset()
	fields := []string{":method", "POST", ":scheme", "http", ":path", "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
		":authority", h.authority, "content-type", "application/grpc", "te", "trailers"}
	fields = append(fields, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = h.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return nil, err
	}
	return s, nil
}

// send writes data on s in frames of at most 16 KiB, waiting for flow
// control credit (up to 10 s); end closes the stream's sending side.
func (h *h2Conn) send(s *h2Stream, data []byte, end bool) error {
	for {
		n := min(len(data), 16<<10)
		h.mu.Lock()
		deadline := time.Now().Add(10 * time.Second)
		for n > 0 && (h.window < int64(n) || s.window < int64(n)) {
			select {
			case <-s.done:
				h.mu.Unlock()
				return errors.New("stream ended")
			default:
			}
			if h.closed || time.Now().After(deadline) {
				h.mu.Unlock()
				return errors.New("no flow control credit")
			}
			wake := time.AfterFunc(200*time.Millisecond, h.cond.Broadcast)
			h.cond.Wait()
			wake.Stop()
		}
		h.window -= int64(n)
		s.window -= int64(n)
		h.mu.Unlock()
		h.wmu.Lock()
		err := h.fr.WriteData(s.id, end && n == len(data), data[:n])
		h.wmu.Unlock()
		if err != nil {
			return err
		}
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

func (h *h2Conn) close() { h.c.Close() }

func (h *h2Conn) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// grpcFrame is a gRPC length-prefixed message; length is what the prefix
// announces.
func grpcFrame(compressed bool, length int, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	if compressed {
		b[0] = 1
	}
	binary.BigEndian.PutUint32(b[1:], uint32(length))
	return append(b, payload...)
}

// grpcCodeName is the name of a grpc-status value ("8" is
// ResourceExhausted).
func grpcCodeName(s string) string {
	if n, err := strconv.Atoi(s); err == nil {
		return codes.Code(n).String()
	}
	return s
}

// ---- decompression bombs ----

// bomb returns size zero bytes compressed with enc: gzip, deflate (zlib),
// zstd (8 MiB window), or zstd-window (a frame that asks for a 64 MiB
// window).
func bomb(enc string, size int) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch enc {
	case "gzip":
		w, err = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	case "deflate":
		w, err = zlib.NewWriterLevel(&buf, zlib.BestCompression)
	case "zstd":
		w, err = zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
	case "zstd-window":
		w, err = zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(64<<20))
	default:
		panic(enc)
	}
	if err != nil {
		panic(err)
	}
	zeros := make([]byte, 1<<20)
	for written := 0; written < size; written += len(zeros) {
		if _, err := w.Write(zeros); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// ---- a gate in front of Phoenix ----

// phoenixGate passes requests to the test Phoenix, or, while down, answers
// every one with 503 as an unavailable Phoenix (or a proxy in front of it)
// does. With dropLarge, exports of the project fatProject are read and
// answered 200 without reaching Phoenix (the fat-body attack's, which
// Phoenix need not store).
type phoenixGate struct {
	URL       string
	down      atomic.Bool
	dropLarge atomic.Bool
	refused   atomic.Int64
	dropped   atomic.Int64
}

func newPhoenixGate(t *testing.T) *phoenixGate {
	t.Helper()
	target, _ := url.Parse(phoenixURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	g := &phoenixGate{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.down.Load() {
			g.refused.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Phoenix is down", http.StatusServiceUnavailable)
			return
		}
		if g.dropLarge.Load() && r.URL.Path == "/v1/traces" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			plain := body
			if r.Header.Get("Content-Encoding") == "gzip" {
				if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
					plain, _ = io.ReadAll(zr)
				}
			}
			if bytes.Contains(plain, []byte(fatProject)) {
				g.dropped.Add(1)
				w.Header().Set("Content-Type", "application/x-protobuf")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// ---- limits of the test process ----

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard one: the idle
// connection attack holds thousands of sockets. It returns the limit.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}

// maxSampled polls a metric every 100 ms until stop is closed and returns
// the largest value seen.
func (p *proxyProc) maxSampled(name, labels string, stop <-chan struct{}) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		m := 0.0
		for {
			m = max(m, p.metric(name, labels))
			select {
			case <-stop:
				out <- m
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return out
}
