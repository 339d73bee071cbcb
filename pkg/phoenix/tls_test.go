package phoenix

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
)

// TestTLS reaches a Phoenix served over https with a CA of its own that
// requires a client certificate, through the files of Config.TLS.
func TestTLS(t *testing.T) {
	phoenixCA, clientCA := tlstest.NewCA(t, "Phoenix CA"), tlstest.NewCA(t, "proxy clients CA")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":[{"name":"`+r.TLS.PeerCertificates[0].Subject.CommonName+`"}],"next_cursor":null}`)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{phoenixCA.Issue(t, "127.0.0.1").TLS(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	tlstest.WriteFile(t, path("ca.pem"), phoenixCA.PEM)
	clientCA.Issue(t, "proxy").Write(t, path("client.crt"), path("client.key"))

	tests := []struct {
		name    string
		tls     tlsconfig.ClientConfig
		wantErr string // "": the project list names the client certificate
	}{
		{"CA and client certificate", tlsconfig.ClientConfig{CAFile: path("ca.pem"), CertFile: path("client.crt"), KeyFile: path("client.key")}, ""},
		{"the system's roots", tlsconfig.ClientConfig{CertFile: path("client.crt"), KeyFile: path("client.key")}, "certificate signed by unknown authority"},
		{"no client certificate", tlsconfig.ClientConfig{CAFile: path("ca.pem")}, "certificate required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{BaseURL: srv.URL, TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			defer c.hc.CloseIdleConnections()
			got, err := c.Projects(context.Background())
			if tc.wantErr == "" {
				if err != nil || len(got) != 1 || got[0] != "proxy" {
					t.Fatalf("Projects = %q, %v; want [proxy]", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Projects = %q, %v; want an error with %q", got, err, tc.wantErr)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"TLS files for http", Config{BaseURL: "http://x", TLS: tlsconfig.ClientConfig{CAFile: "ca.pem"}}, "not https://"},
		{"a client key without its certificate", Config{BaseURL: "https://x", TLS: tlsconfig.ClientConfig{KeyFile: "k.pem"}}, "CertFile and KeyFile"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: New = %v, want an error with %q", tc.name, err, tc.wantErr)
		}
	}
}
