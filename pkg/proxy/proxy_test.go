package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/goleak"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// fakePhoenix plays the two Phoenix endpoints the proxy uses: OTLP ingest
// (protobuf, gzip) and sync span annotations, which answer 404 until the
// span was received.
type fakePhoenix struct {
	t *testing.T

	mu          sync.Mutex
	spans       map[string]bool // span ids received
	annotations []phoenix.SpanAnnotation
	notFound    int // 404 answers given
}

func (f *fakePhoenix) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/traces":
		f.traces(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/span_annotations":
		f.annotate(w, r)
	default:
		f.t.Errorf("fake Phoenix: unexpected %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}
}

func (f *fakePhoenix) traces(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		f.t.Errorf("fake Phoenix: /v1/traces Content-Type %q", ct)
		http.Error(w, "protobuf only", http.StatusUnsupportedMediaType)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "gzip" {
		f.t.Errorf("fake Phoenix: /v1/traces Content-Encoding %q, want gzip", ce)
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	f.mu.Lock()
	rss := req.Traces().ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				f.spans[spans.At(k).SpanID().String()] = true
			}
		}
	}
	f.mu.Unlock()
	out, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (f *fakePhoenix) annotate(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("sync") != "true" {
		f.t.Errorf("fake Phoenix: annotations without sync=true: %s", r.URL)
	}
	var in struct {
		Data []phoenix.SpanAnnotation `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Data) != 1 {
		http.Error(w, fmt.Sprintf("bad body: %v", err), http.StatusUnprocessableEntity)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.spans[in.Data[0].SpanID] {
		f.notFound++
		http.Error(w, fmt.Sprintf("Spans with IDs %s do not exist.", in.Data[0].SpanID), http.StatusNotFound)
		return
	}
	f.annotations = append(f.annotations, in.Data[0])
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"data":[{"id":"ann-1"}]}`)
}

func localConfig(phoenixURL string) Config {
	return Config{
		Receiver:     otlp.ReceiverConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		Exporter:     otlp.ExporterConfig{Endpoint: phoenixURL + "/v1/traces"},
		Phoenix:      phoenix.Config{BaseURL: phoenixURL},
		Feedback:     feedback.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		FeedbackAddr: "127.0.0.1:0",
		AdminAddr:    "127.0.0.1:0",
		// The fake Phoenix has no span query; replicas_test.go turns the
		// fallback on where it is tested.
		NoPhoenixLookup: true,
	}
}

// runProxy starts a proxy of cfg for the test and returns it with a context
// that bounds the test and an HTTP client of its own; the proxy is shut down,
// and the client's connections closed, when the test ends.
func runProxy(t *testing.T, cfg Config) (*Proxy, context.Context, *http.Client) {
	t.Helper()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p, ctx, client
}

// newFakePhoenix serves a fake Phoenix for the test, closed when it ends.
func newFakePhoenix(t *testing.T) (*fakePhoenix, string) {
	t.Helper()
	fp := &fakePhoenix{t: t, spans: map[string]bool{}}
	srv := httptest.NewServer(fp)
	t.Cleanup(srv.Close)
	return fp, srv.URL
}

// TestProxy runs the whole sidecar on loopback against a fake Phoenix: the
// feedback comes first, the span after, and the annotation lands on it.
func TestProxy(t *testing.T) {
	fp := &fakePhoenix{t: t, spans: map[string]bool{}}
	phx := httptest.NewServer(fp)
	defer phx.Close()

	p, err := New(localConfig(phx.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	shut := false
	defer func() {
		if !shut {
			_ = p.Shutdown(ctx)
		}
	}()
	addrs := p.Addrs()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	do := func(method, url, contentType string, body []byte) (int, string) {
		t.Helper()
		return doRequest(t, ctx, client, method, url, contentType, body)
	}
	feedbackURL := "http://" + addrs.Feedback + "/feedback"

	// The feedback comes first: the app's exporter still holds the span.
	code, body := do("POST", feedbackURL, "application/json", []byte(`{"response_id":"chatcmpl-x","thumbs":"up","identifier":"user-7"}`))
	if code != http.StatusAccepted || !strings.Contains(body, `"state":"pending"`) {
		t.Fatalf("POST /feedback: %d %s", code, body)
	}

	// The span, over OTLP/HTTP protobuf.
	pb, err := ptraceotlp.NewExportRequestFromTraces(chatTraces("chatcmpl-x")).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do("POST", "http://"+addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", pb); code != http.StatusOK {
		t.Fatalf("OTLP export: %d %s", code, body)
	}

	// Real I/O: poll, bounded.
	var got feedback.ResponseState
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body := do("GET", feedbackURL+"/chatcmpl-x", "", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /feedback/chatcmpl-x: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Feedback) == 1 && got.Feedback[0].State != feedback.Pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("feedback still pending after 10s: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := got.Feedback[0]
	if !got.Indexed || st.State != feedback.Annotated || st.SpanID != testSpanID.String() || st.TraceID != testTraceID.String() ||
		st.Project != "support" || st.AnnotationID != "ann-1" {
		t.Fatalf("feedback = %+v (indexed %v)", st, got.Indexed)
	}
	fp.mu.Lock()
	anns := fp.annotations
	fp.mu.Unlock()
	if len(anns) != 1 || anns[0].SpanID != testSpanID.String() || anns[0].Identifier != "user-7" || anns[0].Name != "user feedback" ||
		anns[0].Result.Label == nil || *anns[0].Result.Label != "thumbs-up" {
		t.Errorf("annotations written = %+v", anns)
	}

	adminURL := "http://" + addrs.Admin
	code, metrics := do("GET", adminURL+"/metrics", "", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`feedbackproxy_receiver_spans_total{outcome="accepted",transport="http"} 1`,
		`feedbackproxy_exporter_spans_total{outcome="sent"} 1`,
		`feedbackproxy_index_entries 1`,
		`feedbackproxy_feedback_total{outcome="annotated"} 1`,
		`feedbackproxy_feedback_pending 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := do("GET", adminURL+path, "", nil); code != http.StatusOK {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}

	client.CloseIdleConnections()
	shut = true
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for name, addr := range map[string]string{"feedback": addrs.Feedback, "admin": addrs.Admin, "otlp http": addrs.OTLPHTTP, "otlp grpc": addrs.OTLPGRPC} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s listener %s still open after Shutdown", name, addr)
		}
	}
	// Shutdown leaves the keep-alive connections of the exporter's and the
	// Phoenix client's transports open; closing the upstream ends them.
	phx.Close()
	goleak.VerifyNone(t)
}

func TestStartPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()

	tests := []struct {
		name    string
		set     func(*Config)
		wantErr string
	}{
		{"admin", func(c *Config) { c.AdminAddr = busy }, "admin listener"},
		{"feedback", func(c *Config) { c.FeedbackAddr = busy }, "feedback listener"},
		{"OTLP/HTTP", func(c *Config) { c.Receiver.HTTPAddr = busy }, "HTTP listener"},
		{"OTLP/gRPC", func(c *Config) { c.Receiver.GRPCAddr = busy }, "gRPC listener"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := localConfig("http://127.0.0.1:1")
			tc.set(&cfg)
			p, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = p.Start(ctx)
			if err == nil {
				_ = p.Shutdown(ctx)
				t.Fatal("Start succeeded on a taken port")
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), busy) {
				t.Errorf("Start = %q, want it to name the %s and %s", err, tc.wantErr, busy)
			}
			var opErr *net.OpError
			if !errors.As(err, &opErr) {
				t.Errorf("Start = %v, want the listen error wrapped", err)
			}
			// Whatever was bound before the failure is closed again.
			a := p.Addrs()
			for _, addr := range []string{a.Admin, a.Feedback, a.OTLPHTTP, a.OTLPGRPC} {
				if addr == "" || addr == busy {
					continue
				}
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					t.Errorf("%s still listening after a failed Start", addr)
				}
			}
			goleak.VerifyNone(t)
		})
	}
}

// doRequest sends one request with client and returns the status and body.
func doRequest(t *testing.T, ctx context.Context, client *http.Client, method, url, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// New reports every setting that cannot work, the parts' too, at once.
func TestConfigValidate(t *testing.T) {
	cfg := localConfig("http://127.0.0.1:1")
	cfg.Feedback.MaxPending = -1
	cfg.Index.MaxEntries = -1
	cfg.QueueMaxBytes = -5
	_, err := New(cfg, nil)
	if err == nil {
		t.Fatal("New took a configuration that cannot work")
	}
	for _, want := range []string{"MaxPending", "QueueMaxBytes", "MaxEntries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
