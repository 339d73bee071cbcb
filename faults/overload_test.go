//go:build e2e

package faults

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// Apps send ten times (and more) what the upstream can take: the proxy's
// memory stays bounded by --max-inflight-bytes, every export gets an answer
// (200, or 429 with Retry-After), and the proxy stays up.
func TestOverload(t *testing.T) {
	const upstreamDelay = 200 * time.Millisecond
	var upstreamSpans atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(upstreamDelay)
		req := ptraceotlp.NewExportRequest()
		if r.Header.Get("Content-Encoding") == "" && req.UnmarshalProto(body) == nil {
			upstreamSpans.Add(int64(req.Traces().SpanCount()))
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer slow.Close()

	p := newProxy(t, slow.URL, "-max-inflight-bytes", strconv.Itoa(2<<20), "-phoenix-compression", "none")
	body, spansPerExport := llmExport(t, 100)
	t.Logf("each export: %d spans, %d bytes; upstream takes one export per %s per connection", spansPerExport, len(body), upstreamDelay)

	var ok, throttled, other atomic.Int64
	var missingRetryAfter atomic.Int64
	deadline := time.Now().Add(loadDuration())
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for range 32 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := client.Post("http://"+p.httpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					throttled.Add(1)
					if resp.Header.Get("Retry-After") == "" {
						missingRetryAfter.Add(1)
					}
				default:
					other.Add(1)
				}
			}
		})
	}
	peak := p.peakRSS(deadline)
	wg.Wait()

	offered := ok.Load() + throttled.Load() + other.Load()
	t.Logf("FAULTS overload: offered=%d accepted=%d throttled=%d other=%d (offered/accepted=%.1fx) peak_rss=%.1fMiB upstream_spans=%d",
		offered, ok.Load(), throttled.Load(), other.Load(), float64(offered)/float64(max(ok.Load(), 1)), float64(peak)/(1<<20), upstreamSpans.Load())
	if other.Load() != 0 {
		t.Errorf("%d exports got neither 200 nor 429", other.Load())
	}
	if throttled.Load() == 0 || float64(offered) < 10*float64(ok.Load()) {
		t.Errorf("the load was not ten times what the proxy could forward (offered %d, accepted %d)", offered, ok.Load())
	}
	if missingRetryAfter.Load() != 0 {
		t.Errorf("%d 429 answers without Retry-After", missingRetryAfter.Load())
	}
	if got := upstreamSpans.Load(); got != ok.Load()*int64(spansPerExport) {
		t.Errorf("upstream got %d spans, but %d exports of %d were acknowledged", got, ok.Load(), spansPerExport)
	}
	if limit := int64(200 << 20); peak > limit {
		t.Errorf("peak RSS %d MiB over %d MiB", peak>>20, limit>>20)
	}
	if resp, err := http.Get("http://" + p.admin + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the proxy is not ready after the overload: %v", err)
	} else {
		resp.Body.Close()
	}
}

func loadDuration() time.Duration {
	if long {
		return 60 * time.Second
	}
	return 8 * time.Second
}

// llmExport builds one export of n/3 LLM-shaped traces (request span, LLM
// span with a 2 KB output.value, HTTP child).
func llmExport(t *testing.T, n int) ([]byte, int) {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "overload")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	output := `{"id":"chatcmpl-x","object":"chat.completion","choices":[{"message":{"content":"` + strings.Repeat("ocean ", 330) + `"}}]}`
	for i := 0; i < n/3; i++ {
		var tid pcommon.TraceID
		copy(tid[:], fmt.Sprintf("trace-%010d", i))
		for j, name := range []string{"handle_request", "ChatCompletion", "POST"} {
			s := spans.AppendEmpty()
			s.SetName(name)
			s.SetTraceID(tid)
			s.SetSpanID(pcommon.SpanID{byte(j + 1), byte(i), byte(i >> 8)})
			if name == "ChatCompletion" {
				s.Attributes().PutStr("openinference.span.kind", "LLM")
				s.Attributes().PutStr("output.mime_type", "application/json")
				s.Attributes().PutStr("output.value", output)
			}
		}
	}
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b, td.SpanCount()
}

// peakRSS samples the proxy's peak resident set (VmHWM) until deadline.
func (p *proxyProc) peakRSS(until time.Time) int64 {
	var peak int64
	for time.Now().Before(until) {
		p.mu.Lock()
		pid := 0
		if p.cmd != nil && p.cmd.Process != nil {
			pid = p.cmd.Process.Pid
		}
		p.mu.Unlock()
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					peak = max(peak, kb<<10)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return peak
}
