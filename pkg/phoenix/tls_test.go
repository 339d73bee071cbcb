package phoenix

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
)

// TestTLS reaches a Phoenix served over https with a CA of its own that
// requires a client certificate, through the files of Config.TLS.
func TestTLS(t *testing.T) {
	srv, files := tlstest.NewMutualServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":[{"name":"`+r.TLS.PeerCertificates[0].Subject.CommonName+`"}],"next_cursor":null}`)
	}), "proxy")

	tests := []struct {
		name    string
		tls     tlsconfig.ClientConfig
		wantErr string // "": the project list names the client certificate
	}{
		{"CA and client certificate", tlsconfig.ClientConfig{CAFile: files.CAFile, CertFile: files.CertFile, KeyFile: files.KeyFile}, ""},
		{"the system's roots", tlsconfig.ClientConfig{CertFile: files.CertFile, KeyFile: files.KeyFile}, "certificate signed by unknown authority"},
		{"no client certificate", tlsconfig.ClientConfig{CAFile: files.CAFile}, "certificate required"},
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
