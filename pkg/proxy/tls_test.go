package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// TestProxyTLS runs the whole sidecar with TLS on every side: apps reach
// OTLP/HTTP, OTLP/gRPC and /feedback over TLS with a client certificate,
// and the proxy reaches an https Phoenix of a private CA that requires a
// client certificate of its own. The client CA is the OTLP listeners'
// alone: a browser, with no client certificate, reaches the feedback API
// and /widget.js over TLS. A client that never sends its ClientHello is
// closed at the read header timeout on every TLS listener; the admin
// listener stays plain.
func TestProxyTLS(t *testing.T) {
	listenersCA, appsCA := tlstest.NewCA(t, "listeners CA"), tlstest.NewCA(t, "apps CA")
	listeners := tlstest.WriteFiles(t, listenersCA.Issue(t, "127.0.0.1", "localhost"), appsCA)

	fp := &fakePhoenix{t: t, spans: map[string]bool{}}
	phx, toPhoenix := tlstest.NewMutualServer(t, fp, "feedback-proxy")

	cfg := localConfig(phx.URL)
	cfg.TLS = tlsconfig.ServerConfig{CertFile: listeners.CertFile, KeyFile: listeners.KeyFile, ClientCAFile: listeners.CAFile}
	phoenixFiles := tlsconfig.ClientConfig{CAFile: toPhoenix.CAFile, CertFile: toPhoenix.CertFile, KeyFile: toPhoenix.KeyFile}
	cfg.Exporter.TLS, cfg.Phoenix.TLS = phoenixFiles, phoenixFiles
	const headerTimeout = 300 * time.Millisecond
	cfg.Limits = listener.Limits{ReadHeaderTimeout: headerTimeout}
	p, err := New(cfg, nil)
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

	app := &tls.Config{RootCAs: listenersCA.Pool(), Certificates: []tls.Certificate{appsCA.Issue(t, "app").TLS(t)}}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: app}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	do := func(method, url, contentType string, body []byte) (int, string) {
		t.Helper()
		return doRequest(t, ctx, client, method, url, contentType, body)
	}
	feedbackURL := "https://" + addrs.Feedback + "/feedback"

	code, body := do("POST", feedbackURL, "application/json", []byte(`{"response_id":"chatcmpl-tls","thumbs":"up"}`))
	if code != http.StatusAccepted {
		t.Fatalf("POST /feedback over TLS: %d %s", code, body)
	}

	// The span over OTLP/HTTP, another over OTLP/gRPC.
	pb, err := ptraceotlp.NewExportRequestFromTraces(chatTraces("chatcmpl-tls")).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do("POST", "https://"+addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", pb); code != http.StatusOK {
		t.Fatalf("OTLP/HTTP export over TLS: %d %s", code, body)
	}
	grpcSpan := pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8}
	td := chatTraces("chatcmpl-grpc")
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).SetSpanID(grpcSpan)
	cc, err := grpc.NewClient(addrs.OTLPGRPC, grpc.WithTransportCredentials(credentials.NewTLS(app)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatalf("OTLP/gRPC export over TLS: %v", err)
	}

	var got struct {
		Feedback []feedback.Status `json:"feedback"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body := do("GET", feedbackURL+"/chatcmpl-tls", "", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /feedback/chatcmpl-tls: %d %s", code, body)
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
	if st := got.Feedback[0]; st.State != feedback.Annotated || st.SpanID != testSpanID.String() {
		t.Errorf("feedback = %+v, want annotated on the span", st)
	}
	fp.mu.Lock()
	sawHTTP, sawGRPC := fp.spans[testSpanID.String()], fp.spans[grpcSpan.String()]
	fp.mu.Unlock()
	if !sawHTTP || !sawGRPC {
		t.Errorf("Phoenix received the OTLP/HTTP span %v, the OTLP/gRPC span %v", sawHTTP, sawGRPC)
	}

	// Without a client certificate of the apps' CA, no OTLP listener lets
	// a request through; the feedback listener asks for none, as a browser
	// has none to present.
	stranger := &tls.Config{RootCAs: listenersCA.Pool()}
	browser := &http.Client{Transport: &http.Transport{TLSClientConfig: stranger}, Timeout: 10 * time.Second}
	defer browser.CloseIdleConnections()
	if code, body := doRequest(t, ctx, browser, "POST", feedbackURL, "text/plain;charset=UTF-8",
		[]byte(`{"response_id":"chatcmpl-browser","thumbs":"down"}`)); code != http.StatusAccepted {
		t.Errorf("POST /feedback over TLS without a client certificate: %d %s", code, body)
	}
	if code, body := doRequest(t, ctx, browser, "GET", "https://"+addrs.Feedback+"/widget.js", "", nil); code != http.StatusOK {
		t.Errorf("GET /widget.js over TLS without a client certificate: %d %.200s", code, body)
	}
	browser.CloseIdleConnections()
	for name, addr := range map[string]string{"otlp http": addrs.OTLPHTTP, "otlp grpc": addrs.OTLPGRPC} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, stranger)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("%s: a client without a certificate: %v; want it refused", name, err)
		}
	}

	// A client that opens a connection and never says a word is closed
	// at the read header timeout, whatever the listener.
	for name, addr := range map[string]string{"feedback": addrs.Feedback, "otlp http": addrs.OTLPHTTP, "otlp grpc": addrs.OTLPGRPC} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * headerTimeout))
		n, err := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("%s: silent client: read %d, %v; want the connection closed by the proxy", name, n, err)
		}
	}

	// The admin listener stays plain, and counts the files read.
	plain := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer plain.CloseIdleConnections()
	code, metrics := doRequest(t, ctx, plain, "GET", "http://"+addrs.Admin+"/metrics", "", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`feedbackproxy_tls_reloads_total{kind="certificate",outcome="loaded",source="listeners"} 1`,
		`feedbackproxy_tls_reloads_total{kind="ca",outcome="loaded",source="listeners"} 1`,
		`feedbackproxy_tls_reloads_total{kind="ca",outcome="loaded",source="phoenix"} 1`,
		`feedbackproxy_tls_reloads_total{kind="certificate",outcome="loaded",source="phoenix"} 1`,
		`feedbackproxy_tls_certificate_expiry_timestamp_seconds{source="listeners"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	client.CloseIdleConnections()
	cc.Close()
	shut = true
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	phx.Close()
	goleak.VerifyNone(t)
}

// TestProxyTLSStartFails: a certificate file that cannot be read fails the
// start, naming it, before anything is bound.
func TestProxyTLSStartFails(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	ca.Issue(t, "127.0.0.1").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	tests := []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"listeners", func(c *Config) {
			c.TLS = tlsconfig.ServerConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "missing.key")}
		}, "missing.key"},
		{"phoenix", func(c *Config) {
			c.Exporter.Endpoint = "https://127.0.0.1:1/v1/traces"
			c.Exporter.TLS = tlsconfig.ClientConfig{CAFile: filepath.Join(dir, "tls.key")}
		}, "phoenix ca"},
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
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start = %v, want it to name %q", err, tc.want)
			}
			if a := p.Addrs(); a.Admin != "" || a.Feedback != "" || a.OTLPHTTP != "" {
				t.Errorf("listeners bound before the files were read: %+v", a)
			}
		})
	}
}
