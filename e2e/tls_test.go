//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// TestTLS runs the real Python app, its real OTLP exporters (requests for
// HTTP, grpcio for gRPC) configured for TLS by the OTel SDK's own
// variables, against the proxy's TLS listeners with mutual TLS, and the
// proxy against the real Phoenix behind an https terminator of a private
// CA that requires the proxy's client certificate (as an ingress in front
// of Phoenix does). The vote sent over TLS lands in Phoenix.
func TestTLS(t *testing.T) {
	listenersCA, appsCA := tlstest.NewCA(t, "listeners CA"), tlstest.NewCA(t, "apps CA")
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	listenersCA.Issue(t, "localhost", "127.0.0.1").Write(t, path("tls.crt"), path("tls.key"))
	appCert := appsCA.Issue(t, "app")
	appCert.Write(t, path("app.crt"), path("app.key"))
	tlstest.WriteFile(t, path("listeners-ca.pem"), listenersCA.PEM)
	tlstest.WriteFile(t, path("apps-ca.pem"), appsCA.PEM)

	target, err := url.Parse(phoenixURL)
	if err != nil {
		t.Fatal(err)
	}
	terminator, toPhoenix := tlstest.NewMutualServer(t, httputil.NewSingleHostReverseProxy(target), "feedback-proxy")

	p := startProxy(t, func(c *proxy.Config) {
		c.TLS = tlsconfig.ServerConfig{CertFile: path("tls.crt"), KeyFile: path("tls.key"), ClientCAFile: path("apps-ca.pem")}
		files := tlsconfig.ClientConfig{CAFile: toPhoenix.CAFile, CertFile: toPhoenix.CertFile, KeyFile: toPhoenix.KeyFile}
		c.Exporter.Endpoint, c.Exporter.TLS = terminator.URL+"/v1/traces", files
		c.Phoenix.BaseURL, c.Phoenix.TLS = terminator.URL, files
	})
	_, llmURL := startLLM(t)
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: listenersCA.Pool(), Certificates: []tls.Certificate{appCert.TLS(t)}}},
		Timeout:   10 * time.Second,
	}
	defer client.CloseIdleConnections()

	env := []string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE=" + path("listeners-ca.pem"),
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + path("app.crt"),
		"OTEL_EXPORTER_OTLP_CLIENT_KEY=" + path("app.key"),
	}
	runCases(t, []string{"http", "grpc"}, func(e string) string { return e }, func(t *testing.T, exporter string) {
		endpoint := "https://" + localhostAddr(p.Addrs().OTLPHTTP)
		if exporter == "grpc" {
			endpoint = "https://" + localhostAddr(p.Addrs().OTLPGRPC)
		}
		res := runTLSApp(t, env, "--instrumentation", "openinference", "--call", "chat", "--exporter", exporter,
			"--base-url", llmURL, "--endpoint", endpoint, "--question", llmserver.BouvetQuestion)

		body, _ := json.Marshal(map[string]any{"response_id": res.ResponseID, "thumbs": "up", "identifier": "tls-" + exporter})
		resp, err := client.Post("https://"+p.Addrs().Feedback+"/feedback", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST /feedback over TLS: %v", err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /feedback over TLS: %d %s", resp.StatusCode, raw)
		}
		var st feedback.Status
		eventually(t, 30*time.Second, "the feedback annotated", func() (bool, string) {
			resp, err := client.Get("https://" + p.Addrs().Feedback + "/feedback/" + res.ResponseID)
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			var got struct {
				Feedback []feedback.Status `json:"feedback"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Feedback) != 1 {
				return false, fmt.Sprintf("%d %v %+v", resp.StatusCode, err, got)
			}
			st = got.Feedback[0]
			return st.State == feedback.Annotated, fmt.Sprintf("%+v", st)
		})
		if st.TraceID != res.TraceID {
			t.Errorf("annotated trace %s, want the app's %s", st.TraceID, res.TraceID)
		}
		anns := annotationsOn(t, phoenixClient(t), st.Project, st.SpanID)
		if len(anns) != 1 || anns[0].Identifier != "tls-"+exporter {
			t.Errorf("Phoenix has %+v on span %s, want the one vote", anns, st.SpanID)
		}
	})
}

// runTLSApp runs e2e/apps/app.py with the OTel variables in env besides
// appEnv's, and returns what it printed. A failed export fails the test.
func runTLSApp(t *testing.T, env []string, args ...string) appResult {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("apps", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	appSlots <- struct{}{}
	defer func() { <-appSlots }()
	ctx, cancel := context.WithTimeout(context.Background(), appTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), append([]string{script}, args...)...)
	// requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override the
	// CA file the OTLP/HTTP exporter gives its session (requests 2.34.2,
	// Session.merge_environment_settings), so on a machine that sets them
	// OTEL_EXPORTER_OTLP_CERTIFICATE is not used: drop them.
	for _, kv := range appEnv() {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("app.py %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if strings.Contains(stderr.String(), "Failed to export") {
		t.Errorf("app.py could not export its spans over TLS:\n%s", stderr.String())
	}
	line, _, _ := strings.Cut(string(out), "\n")
	var res appResult
	if err := json.Unmarshal([]byte(line), &res); err != nil || res.ResponseID == "" || res.TraceID == "" {
		t.Fatalf("app.py printed %q (%v)\nstderr:\n%s", out, err, stderr.String())
	}
	return res
}

// localhostAddr is addr (127.0.0.1:port) as localhost:port, the name the
// listeners' certificate carries besides the address.
func localhostAddr(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "localhost:" + port
}
