//go:build e2e

package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The attack suite: the proxy binary, started with no flags but its
// addresses and the Phoenix endpoints, under attacks from loopback while a
// well-behaved client keeps exporting and sending feedback. Each case
// asserts that (a) the well-behaved client's exports during the attack are
// answered 200/OK, their spans reach Phoenix and its feedback is accepted
// and annotated there; (b) the proxy's peak RSS stays under
// attackRSSLimitMiB; (c) the proxy is up and /readyz answers 200. Each logs
// one line: ATTACK <case>: <what the proxy did> ... peak_rss_mib=<n>.
//
// The cases that mostly wait for the proxy's timeouts (30 s for a request)
// run in parallel with each other (see TestMain); the ones that load the
// CPU run alone, first. Every attack loop is bounded in count and time.

// ---- slow clients ----

// Hundreds of clients send a request header a byte a second to the OTLP
// HTTP and feedback listeners, and the HTTP/2 connection preface a byte a
// second to the gRPC one: --read-header-timeout (10 s) cuts each off.
func TestAttackSlowHeaders(t *testing.T) {
	t.Parallel()
	a := startAttack(t, "slow-headers", true)
	const n = 200
	heads := map[string][]byte{
		"otlp-http": []byte("POST /v1/traces HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-protobuf\r\nX-Slow: " + strings.Repeat("s", 100)),
		"feedback":  []byte("POST /feedback HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("s", 100)),
		"otlp-grpc": []byte(http2.ClientPreface),
	}
	addrs := map[string]string{"otlp-http": a.p.httpAddr, "feedback": a.p.feedback, "otlp-grpc": a.p.grpcAddr}
	labels := []string{"otlp-http", "feedback", "otlp-grpc"}
	byLabel := map[string][]*rawConn{}
	failed := map[string]int{}
	var all []*rawConn
	for _, l := range labels {
		byLabel[l], failed[l] = dialMany(addrs[l], l, n, nil)
		all = append(all, byLabel[l]...)
	}
	defer closeAll(all)
	trickle(all, time.Now().Add(defReadHeaderTimeout+4*time.Second), func(rc *rawConn, i int) []byte {
		h := heads[rc.label]
		return h[i%len(h) : i%len(h)+1]
	})
	var what []string
	for _, l := range labels {
		o := outcome(byLabel[l], failed[l])
		what = append(what, l+" "+o.String())
		if o.openAtEnd > 0 {
			t.Errorf("%s: %d of %d slow headers still open after %s", l, o.openAtEnd, o.n, defReadHeaderTimeout+4*time.Second)
		}
	}
	a.finish(strings.Join(what, "; "))
}

// Hundreds of clients send a body a byte a second (with a Content-Length,
// and chunked) to the OTLP HTTP and feedback listeners: --read-timeout
// (30 s for the whole request) cuts each off.
func TestAttackSlowBodies(t *testing.T) {
	t.Parallel()
	a := startAttack(t, "slow-bodies", false)
	const n = 100 // of each kind
	kinds := []struct {
		label, addr, head string
		tick              []byte
	}{
		{"otlp-length", a.p.httpAddr, "POST /v1/traces HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4096\r\n\r\n", []byte("x")},
		{"otlp-chunked", a.p.httpAddr, "POST /v1/traces HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n", []byte("1\r\nx\r\n")},
		{"feedback-length", a.p.feedback, "POST /feedback HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n", []byte(" ")},
		{"feedback-chunked", a.p.feedback, "POST /feedback HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", []byte("1\r\n \r\n")},
	}
	ticks := map[string][]byte{}
	byLabel := map[string][]*rawConn{}
	failed := map[string]int{}
	var all []*rawConn
	for _, k := range kinds {
		ticks[k.label] = k.tick
		byLabel[k.label], failed[k.label] = dialMany(k.addr, k.label, n, func(int) []byte { return []byte(k.head) })
		all = append(all, byLabel[k.label]...)
	}
	defer closeAll(all)
	hold := defReadTimeout + 4*time.Second
	trickle(all, time.Now().Add(hold), func(rc *rawConn, i int) []byte { return ticks[rc.label] })
	var what []string
	for _, k := range kinds {
		o := outcome(byLabel[k.label], failed[k.label])
		what = append(what, k.label+" "+o.String())
		if o.openAtEnd > 0 {
			t.Errorf("%s: %d of %d trickling bodies still open after %s", k.label, o.openAtEnd, o.n, hold)
		}
	}
	a.finish(strings.Join(what, "; "))
}

// Clients declare a 20 MiB body and send nothing, or 64 KiB, then hold the
// connection: they cost the proxy what they sent, not what they declared,
// and --read-timeout (30 s) cuts them off.
func TestAttackStalledBodies(t *testing.T) {
	t.Parallel()
	a := startAttack(t, "stalled-bodies", false)
	declared := strconv.Itoa(defMaxRequestBytes)
	otlpHead := "POST /v1/traces HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-protobuf\r\nContent-Length: " + declared + "\r\n\r\n"
	fbHead := "POST /feedback HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: " + declared + "\r\n\r\n"
	some := bytes.Repeat([]byte{'['}, 64<<10)
	kinds := []struct {
		label, addr string
		n           int
		initial     []byte
	}{
		{"otlp-nothing", a.p.httpAddr, 150, []byte(otlpHead)},
		{"otlp-64KiB", a.p.httpAddr, 150, append([]byte(otlpHead), some...)},
		{"feedback-nothing", a.p.feedback, 100, []byte(fbHead)},
		{"feedback-64KiB", a.p.feedback, 100, append([]byte(fbHead), some...)},
	}
	stop := make(chan struct{})
	inflight := a.p.maxSampled("feedbackproxy_receiver_inflight_bytes", "", stop)
	byLabel := map[string][]*rawConn{}
	failed := map[string]int{}
	var all []*rawConn
	for _, k := range kinds {
		byLabel[k.label], failed[k.label] = dialMany(k.addr, k.label, k.n, func(int) []byte { return k.initial })
		all = append(all, byLabel[k.label]...)
	}
	defer closeAll(all)
	hold := defReadTimeout + 4*time.Second
	time.Sleep(time.Until(a.begin.Add(hold)))
	close(stop)
	maxInflight := <-inflight
	what := []string{fmt.Sprintf("in-flight budget peak %.1f MiB", maxInflight/(1<<20))}
	for _, k := range kinds {
		o := outcome(byLabel[k.label], failed[k.label])
		what = append(what, k.label+" "+o.String())
		if o.openAtEnd > 0 {
			t.Errorf("%s: %d of %d stalled bodies still open after %s", k.label, o.openAtEnd, o.n, hold)
		}
	}
	a.finish(strings.Join(what, "; "))
}

// Clients that declare a large body, send part of it and hold, sized to
// fill the in-flight budgets to the brim: on OTLP HTTP (64 MiB) a hundred
// send 1 MiB, then smaller ones fill what is left; on the feedback listener
// (16 MiB for POST /feedback bodies) thirty send 600 KiB of a declared
// 1 MiB, then smaller ones. They hold until --read-timeout (30 s) cuts them
// off. The well-behaved client's small exports and feedbacks must still
// get through.
func TestAttackStalledBudget(t *testing.T) {
	t.Parallel()
	a := startAttack(t, "stalled-budget", false)
	otlpHead := "POST /v1/traces HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-protobuf\r\nContent-Length: " + strconv.Itoa(defMaxRequestBytes) + "\r\n\r\n"
	fbHead := "POST /feedback HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(1<<20) + "\r\n\r\n"
	tiers := []struct {
		label, addr, head string
		n, sent           int
	}{
		{"otlp-1MiB", a.p.httpAddr, otlpHead, 100, 1 << 20},
		{"otlp-16KiB", a.p.httpAddr, otlpHead, 150, 16 << 10},
		{"otlp-512B", a.p.httpAddr, otlpHead, 150, 512},
		{"feedback-600KiB", a.p.feedback, fbHead, 30, 600 << 10},
		{"feedback-1KiB", a.p.feedback, fbHead, 150, 1 << 10},
	}
	stop := make(chan struct{})
	inflight := a.p.maxSampled("feedbackproxy_receiver_inflight_bytes", "", stop)
	byLabel := map[string][]*rawConn{}
	failed := map[string]int{}
	var all []*rawConn
	for _, tr := range tiers {
		initial := append([]byte(tr.head), bytes.Repeat([]byte{' '}, tr.sent)...)
		byLabel[tr.label], failed[tr.label] = dialMany(tr.addr, tr.label, tr.n, func(int) []byte { return initial })
		all = append(all, byLabel[tr.label]...)
		time.Sleep(500 * time.Millisecond) // the larger ones are charged first
	}
	defer closeAll(all)
	hold := defReadTimeout + 4*time.Second
	time.Sleep(time.Until(a.begin.Add(hold)))
	close(stop)
	maxInflight := <-inflight
	what := []string{fmt.Sprintf("OTLP in-flight budget peak %.1f MiB, overloaded (429) %v", maxInflight/(1<<20),
		a.p.metric("feedbackproxy_receiver_overloaded_requests_total", `transport="http"`))}
	for _, tr := range tiers {
		o := outcome(byLabel[tr.label], failed[tr.label])
		what = append(what, tr.label+" "+o.String())
		if o.openAtEnd > 0 {
			t.Errorf("%s: %d of %d stalled bodies still open after %s", tr.label, o.openAtEnd, o.n, hold)
		}
	}
	a.finish(strings.Join(what, "; "))
}

// gRPC calls that open a stream and stall: headers and no message, or a
// message prefix that promises 20 MiB and 16 KiB of it. The proxy receives
// at most a few messages at once, each within --read-timeout; the
// well-behaved gRPC client must still get its exports through.
func TestAttackGRPCStall(t *testing.T) {
	t.Parallel()
	a := startAttack(t, "grpc-stall", true)
	const perConn, maxStreams = 8, 600
	partial := grpcFrame(false, defMaxRequestBytes, make([]byte, 16<<10))
	type attacker struct {
		conn    *h2Conn
		partial bool
		open    []*h2Stream
	}
	attackers := []*attacker{{partial: false}, {partial: true}}
	var streams []*h2Stream
	var dials int
	deadline := a.begin.Add(defReadTimeout + 4*time.Second)
	for time.Now().Before(deadline) && len(streams) < maxStreams {
		for _, at := range attackers {
			if at.conn == nil || at.conn.isClosed() {
				c, err := dialH2(a.p.grpcAddr)
				if err != nil {
					continue
				}
				dials++
				at.conn, at.open = c, nil
			}
			var still []*h2Stream
			for _, s := range at.open {
				select {
				case <-s.done:
				default:
					still = append(still, s)
				}
			}
			at.open = still
			for len(at.open) < perConn && len(streams) < maxStreams {
				s, err := at.conn.open()
				if err != nil {
					break
				}
				if at.partial {
					_ = at.conn.send(s, partial, false)
				}
				at.open = append(at.open, s)
				streams = append(streams, s)
			}
		}
		time.Sleep(time.Second)
	}
	what := fmt.Sprintf("%d stalled streams on %d connections: %s; overloaded (ResourceExhausted) %v",
		len(streams), dials, streamOutcome(streams), a.p.metric("feedbackproxy_receiver_overloaded_requests_total", `transport="grpc"`))
	for _, at := range attackers {
		if at.conn != nil {
			at.conn.close()
		}
	}
	a.finish(what)
}

// streamOutcome sums up how the proxy ended gRPC streams: by status, with
// the range of their durations.
func streamOutcome(streams []*h2Stream) string {
	type agg struct {
		n        int
		min, max time.Duration
	}
	by := map[string]*agg{}
	open := 0
	for _, s := range streams {
		select {
		case <-s.done:
		default:
			open++
			continue
		}
		k := grpcCodeName(s.status)
		if strings.Contains(s.message, "larger than max") {
			k += "(too large)"
		}
		g := by[k]
		if g == nil {
			g = &agg{min: s.took}
			by[k] = g
		}
		g.n++
		g.min, g.max = min(g.min, s.took), max(g.max, s.took)
	}
	var parts []string
	for k, g := range by {
		parts = append(parts, fmt.Sprintf("%s=%d (%.1f-%.1fs)", k, g.n, g.min.Seconds(), g.max.Seconds()))
	}
	sort.Strings(parts)
	if open > 0 {
		parts = append(parts, fmt.Sprintf("still open=%d", open))
	}
	return strings.Join(parts, " ")
}

// ---- idle connections ----

// Thousands of idle connections to the OTLP HTTP and feedback listeners
// (3000 each, reopened as the proxy closes them), then to the gRPC one too:
// past --max-connections (512 a listener) they are closed at once; the
// admin listener (32 of its own) and the listeners not flooded stay
// reachable for new clients, and the well-behaved client's kept-alive
// connections keep working.
func TestAttackIdleConnections(t *testing.T) {
	t.Parallel()
	n := 3000
	// The other parallel cases hold about 2000 sockets.
	if lim := int(raiseFileLimit()); 3*n+4000 > lim {
		n = max(600, (lim-4000)/3)
		t.Logf("RLIMIT_NOFILE is %d: %d idle connections per listener", lim, n)
	}
	a := startAttack(t, "idle-connections", true)
	phaseA := 13 * time.Second // past --read-header-timeout, so the proxy reaps the idle ones it took
	phaseB := 6 * time.Second
	endA := a.begin.Add(phaseA)
	endAll := endA.Add(phaseB)

	httpF := startFlood(a.p.httpAddr, n, endAll)
	fbF := startFlood(a.p.feedback, n, endAll)

	var adminOK, adminN, grpcFreshOK, grpcFreshN, httpFreshOK, httpFreshN, fbFreshOK, fbFreshN int
	var grpcF *flood
	for time.Now().Before(endAll) {
		tick := time.Now()
		if grpcF == nil && !tick.Before(endA) {
			grpcF = startFlood(a.p.grpcAddr, n, endAll)
		}
		adminN++
		if code, _ := freshGet("http://" + a.p.admin + "/readyz"); code == http.StatusOK {
			adminOK++
		}
		if grpcF == nil {
			// The gRPC listener is not flooded yet: a new client gets in.
			grpcFreshN++
			if ok, answer := a.good.freshGRPC(); ok {
				grpcFreshOK++
			} else {
				t.Logf("a new gRPC client during the HTTP flood: %s", answer)
			}
		}
		// New clients of the flooded listeners, served if they get any
		// answer: counted, not required (the connection cap is full by
		// design).
		httpFreshN++
		if code, _ := freshPost("http://"+a.p.httpAddr+"/v1/traces", "application/x-protobuf", exportBody(ptrace.NewTraces())); code != 0 {
			httpFreshOK++
		}
		fbFreshN++
		if code, _ := freshGet("http://" + a.p.feedback + "/feedback/chatcmpl-none"); code != 0 {
			fbFreshOK++
		}
		time.Sleep(time.Until(tick.Add(time.Second)))
	}
	floods := []struct {
		label string
		f     *flood
	}{{"otlp-http", httpF}, {"feedback", fbF}, {"otlp-grpc", grpcF}}
	var what []string
	for _, fl := range floods {
		if fl.f != nil {
			fl.f.wait()
			what = append(what, fl.label+" "+fl.f.String())
		}
	}
	what = append(what,
		fmt.Sprintf("refused_connections_total http=%v grpc=%v", a.p.metric("feedbackproxy_receiver_refused_connections_total", `transport="http"`),
			a.p.metric("feedbackproxy_receiver_refused_connections_total", `transport="grpc"`)),
		fmt.Sprintf("new clients served: admin %d/%d, otlp-grpc before its flood %d/%d, otlp-http %d/%d, feedback %d/%d",
			adminOK, adminN, grpcFreshOK, grpcFreshN, httpFreshOK, httpFreshN, fbFreshOK, fbFreshN))
	if adminOK < adminN {
		t.Errorf("the admin listener answered %d of %d /readyz from new clients during the flood", adminOK, adminN)
	}
	if grpcFreshOK < grpcFreshN {
		t.Errorf("the gRPC listener, not flooded, took %d of %d exports from new clients during the HTTP flood", grpcFreshOK, grpcFreshN)
	}
	a.finish(strings.Join(what, "; "))
}

// flood keeps n connections open to addr that send nothing, each reopened
// a second after the proxy closes it, until until (at most 8 dials a slot).
type flood struct {
	wg                            sync.WaitGroup
	dials, dialErrs, refused      atomic.Int64
	reaped                        atomic.Int64
	reapedMin, reapedMax, maxOpen atomic.Int64
	open, heldToEnd               atomic.Int64
}

func startFlood(addr string, n int, until time.Time) *flood {
	f := &flood{}
	sem := make(chan struct{}, 128) // dials at once
	for range n {
		f.wg.Go(func() {
			for range 8 {
				if !time.Now().Before(until) {
					return
				}
				sem <- struct{}{}
				rc, err := dialRaw(addr, "idle", nil)
				<-sem
				f.dials.Add(1)
				if err != nil {
					f.dialErrs.Add(1)
					time.Sleep(time.Second)
					continue
				}
				o := f.open.Add(1)
				for m := f.maxOpen.Load(); o > m && !f.maxOpen.CompareAndSwap(m, o); m = f.maxOpen.Load() {
				}
				closedByProxy := false
				select {
				case <-rc.done:
					closedByProxy = true
				case <-time.After(time.Until(until)):
				}
				f.open.Add(-1)
				ended, _ := rc.state()
				rc.close()
				if !closedByProxy {
					f.heldToEnd.Add(1)
				} else {
					if ended < time.Second {
						f.refused.Add(1)
					} else {
						f.reaped.Add(1)
						ms := ended.Milliseconds()
						for m := f.reapedMin.Load(); (m == 0 || ms < m) && !f.reapedMin.CompareAndSwap(m, ms); m = f.reapedMin.Load() {
						}
						for m := f.reapedMax.Load(); ms > m && !f.reapedMax.CompareAndSwap(m, ms); m = f.reapedMax.Load() {
						}
					}
				}
				time.Sleep(time.Second)
			}
		})
	}
	return f
}

func (f *flood) wait() { f.wg.Wait() }

func (f *flood) String() string {
	return fmt.Sprintf("%d dials (%d failed): %d closed at once, %d closed after %.1f-%.1fs, %d still open at the end, at most %d open at once",
		f.dials.Load(), f.dialErrs.Load(), f.refused.Load(), f.reaped.Load(),
		float64(f.reapedMin.Load())/1000, float64(f.reapedMax.Load())/1000, f.heldToEnd.Load(), f.maxOpen.Load())
}

// freshGet and freshPost use a connection of their own, closed after.
func freshGet(u string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func freshPost(u, contentType string, body []byte) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Post(u, contentType, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// freshGRPC exports one of the client's traces over a new gRPC connection,
// once, without retrying; the export counts among the client's own (its
// spans must reach Phoenix).
func (g *goodClient) freshGRPC() (bool, string) {
	conn, err := grpc.NewClient(g.p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	op, td := g.newOp("grpc", true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	op.took, op.tries = time.Since(start), 1
	if err != nil {
		op.last = err.Error()
	} else {
		op.ok, op.last = true, "OK"
		g.feedback(op)
	}
	g.mu.Lock()
	g.ops = append(g.ops, op)
	g.mu.Unlock()
	return op.ok, op.last
}

// ---- decompression bombs ----

// Bombs, many at once, one encoding a case: 128 MiB of zeros compressed
// with gzip (~130 KB), deflate (~130 KB) and zstd (4 KB) over HTTP, zstd
// whose frame asks for a 64 MiB window, and gzip over gRPC. The proxy stops
// each at --max-request-bytes (20 MiB) decompressed (413 /
// ResourceExhausted), and decodes a few at once only (429 past the
// in-flight budget, the four zstd decoders, the gRPC reception slots).
func TestAttackBombs(t *testing.T) {
	const size = 128 << 20
	for _, enc := range []string{"gzip", "deflate", "zstd", "zstd-window", "grpc-gzip"} {
		t.Run(enc, func(t *testing.T) {
			if enc == "grpc-gzip" {
				grpcBombs(t, bomb("gzip", size))
			} else {
				httpBombs(t, enc, bomb(enc, size))
			}
		})
	}
}

func httpBombs(t *testing.T, enc string, body []byte) {
	a := startAttack(t, "bomb-"+enc, false)
	until := a.begin.Add(6 * time.Second)
	ce := strings.TrimSuffix(enc, "-window")
	var mu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}
			defer c.CloseIdleConnections()
			for time.Now().Before(until) {
				req, _ := http.NewRequest(http.MethodPost, "http://"+a.p.httpAddr+"/v1/traces", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", ce)
				st := "conn-error"
				resp, err := c.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					st = strconv.Itoa(resp.StatusCode)
				}
				mu.Lock()
				statuses[st]++
				mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	var st []string
	for k, v := range statuses {
		st = append(st, fmt.Sprintf("%s=%d", k, v))
		// 503 is the retryable answer to a body that stalled while the
		// budget was full (a bomb client starved of CPU on a busy
		// machine): a refusal, as 413 and 429 are. A bomb taken (2xx) or
		// any other 5xx is a failure.
		if strings.HasPrefix(k, "2") || (strings.HasPrefix(k, "5") && k != "503") {
			t.Errorf("%s bomb answered %s %d times", enc, k, v)
		}
	}
	sort.Strings(st)
	a.finish(fmt.Sprintf("%d-byte %s bombs of 128 MiB from 32 clients for 6s: %s", len(body), enc, strings.Join(st, " ")))
}

// grpcBombs sends gzip bombs as gRPC messages: two connections, eight
// calls at once on each.
func grpcBombs(t *testing.T, gz []byte) {
	a := startAttack(t, "bomb-grpc-gzip", true)
	until := a.begin.Add(6 * time.Second)
	var mu sync.Mutex
	var streams []*h2Stream
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for time.Now().Before(until) {
				c, err := dialH2(a.p.grpcAddr)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var cw sync.WaitGroup
				for range 8 {
					cw.Go(func() {
						for time.Now().Before(until) && !c.isClosed() {
							s, err := c.open("grpc-encoding", "gzip")
							if err != nil {
								return
							}
							mu.Lock()
							streams = append(streams, s)
							mu.Unlock()
							_ = c.send(s, grpcFrame(true, len(gz), gz), true)
							select {
							case <-s.done:
							case <-time.After(40 * time.Second):
							}
						}
					})
				}
				cw.Wait()
				c.close()
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, s := range streams {
		if s.status == "0" {
			t.Errorf("a gzip bomb over gRPC was answered OK")
			break
		}
	}
	a.finish(fmt.Sprintf("%d-byte gzip bombs of 128 MiB in %d gRPC calls, 16 at once, for 6s: %s", len(gz), len(streams), streamOutcome(streams)))
}

// ---- fat bodies ----

// Many clients at once send chunked bodies near 20 MiB (valid exports,
// garbage, and a few over the limit): the in-flight budget (64 MiB) holds,
// the rest are told 429, and memory stays bounded. The valid fat exports
// go through a gate in front of Phoenix that answers them without storing
// them; everything else, the well-behaved client's exports included,
// reaches the real Phoenix.
func TestAttackFatBodies(t *testing.T) {
	gate := newPhoenixGate(t)
	gate.dropLarge.Store(true)
	valid := fatExport(defMaxRequestBytes - 512<<10)
	garbage := fatGarbage(defMaxRequestBytes - 512<<10)
	over := fatGarbage(defMaxRequestBytes + 1<<20)
	p := newProxy(t, gate.URL)
	a := startAttackOn(t, "fat-bodies", p, false)
	until := a.begin.Add(8 * time.Second)
	kinds := []struct {
		label   string
		body    []byte
		workers int
	}{{"valid-19.5MiB", valid, 16}, {"garbage-19.5MiB", garbage, 12}, {"over-21MiB", over, 4}}
	stop := make(chan struct{})
	inflight := a.p.maxSampled("feedbackproxy_receiver_inflight_bytes", "", stop)
	var mu sync.Mutex
	statuses := map[string]map[string]int{}
	var wg sync.WaitGroup
	for _, k := range kinds {
		statuses[k.label] = map[string]int{}
		for range k.workers {
			wg.Go(func() {
				c := &http.Client{Timeout: 60 * time.Second}
				defer c.CloseIdleConnections()
				for time.Now().Before(until) {
					// A reader of unknown length: the body goes chunked.
					req, _ := http.NewRequest(http.MethodPost, "http://"+a.p.httpAddr+"/v1/traces", io.MultiReader(bytes.NewReader(k.body)))
					req.Header.Set("Content-Type", "application/x-protobuf")
					st := "conn-error"
					resp, err := c.Do(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						st = strconv.Itoa(resp.StatusCode)
					}
					mu.Lock()
					statuses[k.label][st]++
					mu.Unlock()
					if err != nil || st == "429" {
						time.Sleep(100 * time.Millisecond)
					}
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	maxInflight := <-inflight
	what := []string{fmt.Sprintf("in-flight budget peak %.1f MiB", maxInflight/(1<<20))}
	for _, k := range kinds {
		var st []string
		for s, v := range statuses[k.label] {
			st = append(st, fmt.Sprintf("%s=%d", s, v))
		}
		sort.Strings(st)
		what = append(what, k.label+" "+strings.Join(st, " "))
	}
	what = append(what, fmt.Sprintf("fat exports forwarded %d", gate.dropped.Load()))
	if maxInflight > defMaxInflightBytes {
		t.Errorf("the in-flight budget reached %.1f MiB, over its %d MiB", maxInflight/(1<<20), defMaxInflightBytes>>20)
	}
	if n := statuses["over-21MiB"]["200"] + statuses["garbage-19.5MiB"]["200"]; n > 0 {
		t.Errorf("%d over-limit or garbage bodies were answered 200", n)
	}
	a.finish(strings.Join(what, "; "))
}

// fatProject names the fat exports, which the gate keeps from Phoenix.
const fatProject = "attack-fat-dropped"

// fatExport is a valid export of about size bytes: spans with a large
// attribute each.
func fatExport(size int) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "attack-fat")
	rs.Resource().Attributes().PutStr("openinference.project.name", fatProject)
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	// Random hex: it compresses by half only, as real payloads do.
	raw := make([]byte, 8<<10)
	now := pcommon.NewTimestampFromTime(time.Now())
	for i := 0; i < size/(2*len(raw)+64); i++ {
		_, _ = rand.Read(raw)
		s := spans.AppendEmpty()
		s.SetName("fat")
		s.SetTraceID(pcommon.TraceID{1, byte(i >> 8), byte(i)})
		s.SetSpanID(pcommon.SpanID{2, byte(i >> 8), byte(i)})
		s.SetStartTimestamp(now)
		s.SetEndTimestamp(now)
		s.Attributes().PutStr("payload", hex.EncodeToString(raw))
	}
	return exportBody(td)
}

// fatGarbage is size bytes that frame as a protobuf field of the whole
// length but hold no export: the proxy must read them all to know.
func fatGarbage(size int) []byte {
	b := bytes.Repeat([]byte{0xff}, size)
	b[0] = 0x0a // field 1, length-delimited
	n := size - 6
	b[1], b[2], b[3], b[4], b[5] = byte(n)|0x80, byte(n>>7)|0x80, byte(n>>14)|0x80, byte(n>>21)|0x80, byte(n>>28)
	return b
}

// ---- feedback floods ----

// feedbackFlood counts what a flood of POST /feedback was answered.
type feedbackFlood struct {
	requests, items, accepted, s400, s429, other atomic.Int64
	refusal                                      atomic.Value // the first 429's body
}

// post sends one feedback (one item) or a batch; it returns the status.
func (f *feedbackFlood) post(c *http.Client, addr string, items []map[string]any) int {
	var body []byte
	if len(items) == 1 {
		body, _ = json.Marshal(items[0])
	} else {
		body, _ = json.Marshal(items)
	}
	f.requests.Add(1)
	f.items.Add(int64(len(items)))
	resp, err := c.Post("http://"+addr+"/feedback", "application/json", bytes.NewReader(body))
	if err != nil {
		f.other.Add(1)
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusAccepted:
		var ans struct {
			Accepted *int `json:"accepted"`
		}
		if json.Unmarshal(b, &ans) == nil && ans.Accepted != nil {
			f.accepted.Add(int64(*ans.Accepted))
		} else {
			f.accepted.Add(1)
		}
	case http.StatusBadRequest:
		f.s400.Add(1)
	case http.StatusTooManyRequests:
		f.s429.Add(1)
		f.refusal.CompareAndSwap(nil, string(bytes.TrimSpace(b)))
	default:
		f.other.Add(1)
	}
	return resp.StatusCode
}

func (f *feedbackFlood) String() string {
	s := fmt.Sprintf("%d requests (%d items): %d items accepted, %d requests refused 429, %d refused 400, %d other",
		f.requests.Load(), f.items.Load(), f.accepted.Load(), f.s429.Load(), f.s400.Load(), f.other.Load())
	if r, ok := f.refusal.Load().(string); ok {
		s += fmt.Sprintf(" (first 429: %s)", r)
	}
	return s
}

// Thousands of feedbacks for response ids that never come (so they stay
// pending for --feedback-max-age, 1 h), in batches and one by one, kept up
// for 10 s: past --feedback-max-pending (10000) the proxy answers 429. The
// well-behaved client's feedback, for a span the proxy has indexed, must
// still be taken.
func TestAttackFeedbackCount(t *testing.T) {
	a := startAttack(t, "feedback-flood-count", false)
	a.finish(floodMadeUpIDs(a))
}

// The same flood at a replica that shares its index on Redis: each
// made-up id is looked up there (one MGET per request) and scheduled for
// more lookups, yet nothing of it is written to Redis (a vote is claimed
// there only when it is about to be written), and the replica's memory
// stays under the same bound.
func TestAttackFeedbackCountShared(t *testing.T) {
	keys := func() int {
		out, err := exec.Command(os.Getenv("E2E_REDIS_SCRIPT"), "cli", "DBSIZE").CombinedOutput()
		if err != nil {
			t.Fatalf("redis.sh cli DBSIZE: %v\n%s", err, out)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "(integer)")))
		return n
	}
	p := newProxy(t, phoenixURL, "-redis-url", redisURL(t))
	before := keys()
	a := startAttackOn(t, "feedback-flood-count-shared", p, false)
	what := floodMadeUpIDs(a)
	grown := keys() - before
	a.finish(fmt.Sprintf("%s; redis keys +%d; shared lookups %v", what, grown, p.metric("feedbackproxy_seek_lookups_total", `source="shared"`)))
	// The well-behaved client's spans and votes: a key each, and a vote
	// key per annotation written; nothing per made-up feedback.
	a.good.mu.Lock()
	ops := len(a.good.ops)
	a.good.mu.Unlock()
	if limit := 4 * ops; grown > limit {
		t.Errorf("Redis grew by %d keys during a flood of made-up feedback; the good client accounts for at most %d", grown, limit)
	}
}

// floodMadeUpIDs floods a's proxy with feedback for made-up ids for 10 s
// and says what it was answered.
func floodMadeUpIDs(a *attack) string {
	until := a.begin.Add(10 * time.Second)
	tag := runTag()
	var next atomic.Int64
	var fl feedbackFlood
	const maxRequests = 3000
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			batch := 250
			if w >= 8 {
				batch = 1 // four clients one by one, which fill what batches leave
			}
			for time.Now().Before(until) && fl.requests.Load() < maxRequests {
				items := make([]map[string]any, batch)
				for i := range items {
					items[i] = map[string]any{"response_id": fmt.Sprintf("chatcmpl-flood-%s-%d", tag, next.Add(1)), "thumbs": "down", "identifier": "flood"}
				}
				if fl.post(c, a.p.feedback, items) == http.StatusTooManyRequests {
					time.Sleep(200 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("%s; pending %v", &fl, a.p.metric("feedbackproxy_feedback_pending", ""))
}

// Feedbacks as large as they may be (a 16000-byte explanation, 15 KB of
// metadata) in batches of 30 (near the 1 MiB body cap), then one by one,
// then small ones to fill what is left, kept up for 10 s; and feedbacks
// with 900 KiB of metadata. The oversized metadata is refused (400), the
// bytes kept for pending feedback are bounded (429 past the budget), and
// the well-behaved client's feedback must still be taken.
func TestAttackFeedbackBytes(t *testing.T) {
	a := startAttack(t, "feedback-flood-bytes", false)
	until := a.begin.Add(10 * time.Second)
	tag := runTag()
	var next atomic.Int64
	explanation := strings.Repeat("e", 16000)
	blob := strings.Repeat("m", 15000)
	huge := strings.Repeat("h", 900<<10)
	var big, oversized feedbackFlood
	const maxRequests = 1500
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			c := &http.Client{Timeout: 20 * time.Second}
			defer c.CloseIdleConnections()
			// Stages: batches of 30 large, single large, single small.
			stage := 0
			for time.Now().Before(until) && big.requests.Load() < maxRequests {
				n := 30
				if stage > 0 {
					n = 1
				}
				items := make([]map[string]any, n)
				for i := range items {
					items[i] = map[string]any{"response_id": fmt.Sprintf("chatcmpl-bytes-%s-%d", tag, next.Add(1)), "label": "flood"}
					if stage < 2 {
						items[i]["explanation"] = explanation
						items[i]["metadata"] = map[string]any{"blob": blob}
					}
				}
				if big.post(c, a.p.feedback, items) == http.StatusTooManyRequests {
					if stage < 2 {
						stage++
					} else {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			c := &http.Client{Timeout: 20 * time.Second}
			defer c.CloseIdleConnections()
			for time.Now().Before(until) && oversized.requests.Load() < 100 {
				oversized.post(c, a.p.feedback, []map[string]any{{"response_id": fmt.Sprintf("chatcmpl-bytes-%s-%d", tag, next.Add(1)),
					"thumbs": "down", "metadata": map[string]any{"blob": huge}}})
			}
		})
	}
	wg.Wait()
	if n := oversized.accepted.Load(); n > 0 {
		t.Errorf("%d feedbacks with 900 KiB of metadata were accepted", n)
	}
	a.finish(fmt.Sprintf("large feedbacks: %s; 900 KiB metadata: %s; pending %v", &big, &oversized, a.p.metric("feedbackproxy_feedback_pending", "")))
}
