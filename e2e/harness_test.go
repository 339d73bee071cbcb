//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// phoenixURL is the real Phoenix the suite runs against. The suite never
// skips: without it, every test fails and says how to provide it.
var phoenixURL string

func TestMain(m *testing.M) {
	phoenixURL = strings.TrimRight(os.Getenv("E2E_PHOENIX_URL"), "/")
	if phoenixURL == "" {
		fmt.Fprintln(os.Stderr, "e2e: E2E_PHOENIX_URL is not set; run `make e2e`, which starts a real Phoenix")
		os.Exit(1)
	}
	resp, err := http.Get(phoenixURL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "e2e: Phoenix at %s is not healthy (%v); run `make e2e`\n", phoenixURL, err)
		os.Exit(1)
	}
	resp.Body.Close()
	os.Exit(m.Run())
}

// startProxy runs a whole proxy on loopback ports in front of the real
// Phoenix, and stops it when the test ends.
func startProxy(t *testing.T, mutate func(*proxy.Config)) *proxy.Proxy {
	t.Helper()
	cfg := proxy.Config{
		FeedbackAddr: "127.0.0.1:0",
		AdminAddr:    "127.0.0.1:0",
	}
	cfg.Receiver.GRPCAddr = "127.0.0.1:0"
	cfg.Receiver.HTTPAddr = "127.0.0.1:0"
	cfg.Exporter.Endpoint = phoenixURL + "/v1/traces"
	cfg.Phoenix.BaseURL = phoenixURL
	cfg.Feedback.MinBackoff = 100 * time.Millisecond
	cfg.Feedback.MaxBackoff = time.Second
	// As cmd/proxy runs by default: state and the export queue on disk.
	cfg.DataDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
	})
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func phoenixClient(t *testing.T) *phoenix.Client {
	t.Helper()
	c, err := phoenix.New(phoenix.Config{BaseURL: phoenixURL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomTraceID() pcommon.TraceID {
	var id pcommon.TraceID
	_, _ = rand.Read(id[:])
	return id
}

func randomSpanID() pcommon.SpanID {
	var id pcommon.SpanID
	_, _ = rand.Read(id[:])
	return id
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// postFeedback sends one feedback object and decodes the answer.
func postFeedback(t *testing.T, p *proxy.Proxy, body any) (int, feedback.Status) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post("http://"+p.Addrs().Feedback+"/feedback", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var st feedback.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("POST /feedback answered %d %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, st
}

func getFeedback(t *testing.T, p *proxy.Proxy, responseID string) feedback.ResponseState {
	t.Helper()
	resp, err := http.Get("http://" + p.Addrs().Feedback + "/feedback/" + responseID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st feedback.ResponseState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitIndexed waits for the proxy to index responseID and returns what GET
// /feedback says of it. An export is answered once it is on disk, and its
// spans are indexed once Phoenix took the batch it went in (a linger of
// 100 ms, then the request).
func waitIndexed(t *testing.T, p *proxy.Proxy, responseID string) feedback.ResponseState {
	t.Helper()
	var st feedback.ResponseState
	eventually(t, 10*time.Second, "response id "+responseID+" indexed", func() (bool, string) {
		st = getFeedback(t, p, responseID)
		return st.Indexed && st.Span != nil, fmt.Sprintf("%+v", st)
	})
	return st
}

// eventually polls cond on the real clock until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	return 0
}

// annotationsOn returns the annotations Phoenix has on a span; none (Phoenix
// answers 404 for a span without any) is an empty list.
func annotationsOn(t *testing.T, c *phoenix.Client, project, spanID string) []phoenix.StoredSpanAnnotation {
	t.Helper()
	anns, err := c.SpanAnnotations(context.Background(), project, []string{spanID})
	if phoenix.IsSpanNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading annotations of span %s: %v", spanID, err)
	}
	return anns
}
