package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/redistest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
)

// BenchmarkExportPath: what the shared index adds to the export path. Two
// in-process proxies, one with its own index only (local) and one that also
// writes every entry to a real redis-server (shared), each in front of a
// fake Phoenix; one client sends OTLP/HTTP protobuf exports (uncompressed:
// the proxy gzips them for Phoenix) of 10 traces, one LLM span each, every
// one with a new trace, span and response id. cpu-µs/span is this
// process's user+system CPU (getrusage) over the run, the shared index's
// writes and announcements included (the run ends once they are done),
// divided by the spans sent. The client and the fake Phoenix (which gunzips
// and decodes every export) run in this process too, the same in both
// arms: the difference between the arms is what the shared index costs,
// the ratio understates it against the proxy alone. redis-cpu-µs/span is
// redis-server's own CPU (INFO cpu). Not run by go test without -bench; see
// docs/benchmarks.md, "Shared index (Redis)".
func BenchmarkExportPath(b *testing.B) {
	for _, arm := range []string{"local", "shared"} {
		b.Run(arm, func(b *testing.B) {
			a := newExportArm(b, arm == "shared")
			cpu0, rcpu0, sent0 := processCPU(), a.redisCPU(), a.ex.sent
			b.ReportAllocs()
			for b.Loop() {
				a.send()
			}
			spans := (a.ex.sent - sent0) * a.ex.spans
			// The writes to Redis and their announcements are part of
			// the cost: the run ends when they are done.
			a.settle()
			cpu, rcpu := processCPU()-cpu0, a.redisCPU()-rcpu0
			b.ReportMetric(cpu.Seconds()*1e6/float64(spans), "cpu-µs/span")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(spans), "wall-µs/span")
			if a.rdb != nil {
				b.ReportMetric(rcpu*1e6/float64(spans), "redis-cpu-µs/span")
			}
		})
	}
	// interleaved: both proxies in one run, a round of 20 exports to each
	// per op, this process's CPU taken around each round (the shared
	// one's until its writes and announcements are done): on a machine
	// others share, both arms see the same noise, so their difference is
	// steadier than between the two runs above.
	b.Run("interleaved", func(b *testing.B) {
		local, shared := newExportArm(b, false), newExportArm(b, true)
		const round = 20
		var cpuLocal, cpuShared time.Duration
		rcpu0 := shared.redisCPU()
		rounds := 0
		for b.Loop() {
			c0 := processCPU()
			for range round {
				local.send()
			}
			c1 := processCPU()
			for range round {
				shared.send()
			}
			shared.settle()
			c2 := processCPU()
			cpuLocal += c1 - c0
			cpuShared += c2 - c1
			rounds++
		}
		spans := float64(rounds * round * local.ex.spans)
		l, s := cpuLocal.Seconds()*1e6/spans, cpuShared.Seconds()*1e6/spans
		b.ReportMetric(l, "local-cpu-µs/span")
		b.ReportMetric(s, "shared-cpu-µs/span")
		b.ReportMetric(s-l, "extra-cpu-µs/span")
		b.ReportMetric((shared.redisCPU()-rcpu0)*1e6/spans, "redis-cpu-µs/span")
	})
}

// exportArm is one proxy in front of a fake Phoenix, with or without a
// shared index on its own redis-server, and a client sending it exports.
type exportArm struct {
	b      *testing.B
	p      *Proxy
	rdb    *redis.Client
	client *http.Client
	target string
	ex     *benchExports
}

func newExportArm(b *testing.B, shared bool) *exportArm {
	b.Helper()
	fp := &fakePhoenix{spans: map[string]bool{}}
	phx := httptest.NewServer(benchSink(b, fp))
	b.Cleanup(phx.Close)
	a := &exportArm{b: b, client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}, ex: newBenchExports(b, 10)}
	url := ""
	if shared {
		srv := redistest.Start(b)
		// As deploy/ runs Valkey: append-only, fsync every second.
		if got := srv.Do("CONFIG", "SET", "appendfsync", "everysec"); got != "+OK" {
			b.Fatalf("CONFIG SET appendfsync: %s", got)
		}
		a.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
		b.Cleanup(func() { _ = a.rdb.Close() })
		url = srv.URL()
	}
	a.p = startBenchProxy(b, phx.URL, url)
	b.Cleanup(a.client.CloseIdleConnections)
	a.target = "http://" + a.p.Addrs().OTLPHTTP + "/v1/traces"
	// Warm up: connections open, the script loaded.
	for range 20 {
		a.send()
	}
	a.settle()
	return a
}

func (a *exportArm) send() {
	resp, err := a.client.Post(a.target, "application/x-protobuf", bytes.NewReader(a.ex.next()))
	if err != nil {
		a.b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.b.Fatalf("export: %s", resp.Status)
	}
}

// settle waits until the shared index (if any) wrote every entry sent and
// this replica heard every announcement of them.
func (a *exportArm) settle() {
	a.b.Helper()
	if a.p.shared == nil {
		return
	}
	want := float64(a.ex.sent * a.ex.spans)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if a.p.shared.Backlog() == 0 && gathered(a.b, a.p, "feedbackproxy_shared_index_notifications_total") >= want {
			return
		}
		if time.Now().After(deadline) {
			a.b.Fatalf("shared index not settled in 30 s: backlog %d, %s", a.p.shared.Backlog(), a.p.shared.Degraded())
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (a *exportArm) redisCPU() float64 {
	if a.rdb == nil {
		return 0
	}
	return redisUsedCPU(a.b, a.rdb)
}

// startBenchProxy is startReplica for a benchmark: a proxy with
// localConfig, on a shared index at redisURL unless it is "".
func startBenchProxy(b *testing.B, phoenixURL, redisURL string) *Proxy {
	b.Helper()
	cfg := localConfig(phoenixURL)
	cfg.Shared.URL = redisURL
	p, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
	})
	return p
}

// benchSink checks what fakePhoenix (whose t is a *testing.T) would
// complain of, then lets it take the export.
func benchSink(b *testing.B, fp *fakePhoenix) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" ||
			r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("Content-Encoding") != "gzip" {
			b.Errorf("fake Phoenix: unexpected %s %s (%s, %s)", r.Method, r.URL, r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"))
			http.NotFound(w, r)
			return
		}
		fp.ServeHTTP(w, r)
	})
}

func gathered(b *testing.B, p *Proxy, name string) float64 {
	mfs, err := p.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisUsedCPU is redis-server's used_cpu_sys + used_cpu_user, seconds.
func redisUsedCPU(b *testing.B, rdb *redis.Client) float64 {
	txt, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0.0
	for line := range strings.SplitSeq(txt, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}

// benchExports makes exports of n traces of one OpenInference LLM span
// each (chatTraces' span), each export with new ids: the protobuf is
// encoded once, and the trace ids, span ids and the 29 characters after
// "chatcmpl-" of each response id are rewritten in place per export.
type benchExports struct {
	tmpl              []byte
	buf               []byte
	trace, span, resp []int // offsets in tmpl
	spans             int
	sent              int
	seed              uint64
}

const benchIDChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func newBenchExports(b testing.TB, n int) *benchExports {
	b.Helper()
	td := ptrace.NewTraces()
	for i := range n {
		one := chatTraces(fmt.Sprintf("chatcmpl-%029d", 7_000_000_000+i))
		s := one.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
		s.SetTraceID(pcommon.TraceID{0xfe, 0xed, 0xfa, 0xce, byte(i), 0xca, 0xfe, 0xba, 0xbe, 0xde, 0xad, 0xbe, 0xef, byte(i), 0x5a, 0xa5})
		s.SetSpanID(pcommon.SpanID{0xab, 0xcd, 0xef, byte(i), 0x12, 0x34, 0x56, 0x78})
		one.ResourceSpans().At(0).CopyTo(td.ResourceSpans().AppendEmpty())
	}
	pb, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	e := &benchExports{tmpl: pb, buf: make([]byte, len(pb)), spans: n, seed: uint64(time.Now().UnixNano()) << 16}
	find := func(pat []byte) int {
		if bytes.Count(pb, pat) != 1 {
			b.Fatalf("pattern %x found %d times in the template", pat, bytes.Count(pb, pat))
		}
		return bytes.Index(pb, pat)
	}
	for i := range n {
		tr := pcommon.TraceID{0xfe, 0xed, 0xfa, 0xce, byte(i), 0xca, 0xfe, 0xba, 0xbe, 0xde, 0xad, 0xbe, 0xef, byte(i), 0x5a, 0xa5}
		sp := pcommon.SpanID{0xab, 0xcd, 0xef, byte(i), 0x12, 0x34, 0x56, 0x78}
		e.trace = append(e.trace, find(tr[:]))
		e.span = append(e.span, find(sp[:]))
		e.resp = append(e.resp, find(fmt.Appendf(nil, "chatcmpl-%029d", 7_000_000_000+i))+len("chatcmpl-"))
	}
	return e
}

// next returns the next export's body (valid until the next call).
func (e *benchExports) next() []byte {
	e.sent++
	copy(e.buf, e.tmpl)
	for i := range e.spans {
		k := e.seed + uint64(e.sent)*uint64(e.spans) + uint64(i)
		binary.BigEndian.PutUint64(e.buf[e.trace[i]:], benchMix(k))
		binary.BigEndian.PutUint64(e.buf[e.trace[i]+8:], benchMix(k^0x5555))
		binary.BigEndian.PutUint64(e.buf[e.span[i]:], benchMix(k^0xaaaa)|1)
		id := e.buf[e.resp[i] : e.resp[i]+29]
		x := benchMix(k ^ 0x1234)
		for j := range id {
			if j == 10 || j == 20 {
				x = benchMix(x + uint64(j))
			}
			id[j] = benchIDChars[x%62]
			x /= 62
		}
	}
	return e.buf
}

func benchMix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func TestBenchExportsAreValidAndNew(t *testing.T) {
	e := newBenchExports(t, 10)
	seen := map[string]bool{}
	for range 3 {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(e.next()); err != nil {
			t.Fatal(err)
		}
		rss := req.Traces().ResourceSpans()
		if rss.Len() != 10 {
			t.Fatalf("%d traces, want 10", rss.Len())
		}
		for i := range rss.Len() {
			s := rss.At(i).ScopeSpans().At(0).Spans().At(0)
			v, _ := s.Attributes().Get(extract.AttrOutputValue)
			id := v.Str()[len(`{"id":"`):strings.Index(v.Str(), `","object"`)]
			if !strings.HasPrefix(id, "chatcmpl-") || len(id) != 9+29 {
				t.Fatalf("response id %q", id)
			}
			for _, k := range []string{id, s.TraceID().String(), s.SpanID().String()} {
				if seen[k] {
					t.Fatalf("%s twice", k)
				}
				seen[k] = true
			}
		}
	}
}
