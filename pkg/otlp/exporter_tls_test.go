package otlp

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
)

// TestExporterTLS sends to an https upstream with a CA of its own that
// requires a client certificate, through the files of ExporterConfig.TLS.
func TestExporterTLS(t *testing.T) {
	upstreamCA, clientCA := tlstest.NewCA(t, "Phoenix CA"), tlstest.NewCA(t, "proxy clients CA")
	var mu sync.Mutex
	var clients []string // the client certificates' names, one per export received
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		clients = append(clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
	}))
	up.TLS = &tls.Config{
		Certificates: []tls.Certificate{upstreamCA.Issue(t, "127.0.0.1").TLS(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
	}
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()
	defer up.Close()

	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	tlstest.WriteFile(t, path("ca.pem"), upstreamCA.PEM)
	clientCA.Issue(t, "proxy").Write(t, path("client.crt"), path("client.key"))
	export := &Export{Body: marshalProto(t, sampleRequest(2)), Spans: 2}

	tests := []struct {
		name     string
		tls      tlsconfig.ClientConfig
		wantCode codes.Code // OK: sent
		wantErr  string
	}{
		{"CA and client certificate", tlsconfig.ClientConfig{CAFile: path("ca.pem"), CertFile: path("client.crt"), KeyFile: path("client.key")}, codes.OK, ""},
		{"the system's roots", tlsconfig.ClientConfig{CertFile: path("client.crt"), KeyFile: path("client.key")}, codes.Unavailable, "certificate signed by unknown authority"},
		{"no client certificate", tlsconfig.ClientConfig{CAFile: path("ca.pem")}, codes.Unavailable, "certificate required"},
		{"a CA file that is missing", tlsconfig.ClientConfig{CAFile: path("nope.pem")}, codes.Unavailable, "nope.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExporter(t, ExporterConfig{Endpoint: up.URL + TracesPath, TLS: tc.tls}, nil)
			defer x.client.CloseIdleConnections()
			err := x.Export(context.Background(), export)
			if tc.wantCode == codes.OK {
				if err != nil {
					t.Fatalf("Export: %v", err)
				}
				return
			}
			if got := statusOf(err).Code(); got != tc.wantCode || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Export = %v (%s); want %s naming %q", err, got, tc.wantCode, tc.wantErr)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(clients) != 1 || clients[0] != "proxy" {
		t.Errorf("upstream saw exports from %q, want one from the proxy's certificate", clients)
	}
}
