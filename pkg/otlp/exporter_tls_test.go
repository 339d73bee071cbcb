package otlp

import (
	"context"
	"io"
	"net/http"
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
	var mu sync.Mutex
	var clients []string // the client certificates' names, one per export received
	up, files := tlstest.NewMutualServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		clients = append(clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
	}), "proxy")
	export := &Export{Body: marshalProto(t, sampleRequest(2)), Spans: 2}

	tests := []struct {
		name     string
		tls      tlsconfig.ClientConfig
		wantCode codes.Code // OK: sent
		wantErr  string
	}{
		{"CA and client certificate", tlsconfig.ClientConfig{CAFile: files.CAFile, CertFile: files.CertFile, KeyFile: files.KeyFile}, codes.OK, ""},
		{"the system's roots", tlsconfig.ClientConfig{CertFile: files.CertFile, KeyFile: files.KeyFile}, codes.Unavailable, "certificate signed by unknown authority"},
		{"no client certificate", tlsconfig.ClientConfig{CAFile: files.CAFile}, codes.Unavailable, "certificate required"},
		{"a CA file that is missing", tlsconfig.ClientConfig{CAFile: filepath.Join(t.TempDir(), "nope.pem")}, codes.Unavailable, "nope.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExporter(t, ExporterConfig{Endpoint: up.URL + TracesPath, TLS: tc.tls}, nil)
			defer x.client.CloseIdleConnections()
			err := x.Export(context.Background(), export)
			// TLS 1.3 refuses a client certificate only after the client's
			// side of the handshake is done, when net/http is already
			// sending the request, its headers and its body in two writes
			// (the body is not one of the in-memory readers it sends with
			// the headers). The second write can fail first, "broken pipe"
			// once the upstream has closed or "use of closed network
			// connection" once the client has read the alert, and that
			// error is returned instead of the alert: about one try in six
			// here. Another try gets the alert.
			for try := 1; try < 10 && tc.wantCode != codes.OK && err != nil && !strings.Contains(err.Error(), tc.wantErr); try++ {
				err = x.Export(context.Background(), export)
			}
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
