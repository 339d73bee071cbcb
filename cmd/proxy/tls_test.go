package main

import (
	"io"
	"strings"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
)

func TestParseConfigTLS(t *testing.T) {
	phoenixFiles := tlsconfig.ClientConfig{CAFile: "/etc/phoenix/ca.pem", CertFile: "/etc/proxy/client.crt", KeyFile: "/etc/proxy/client.key"}
	phoenixFlags := []string{"-phoenix-ca-file", phoenixFiles.CAFile, "-phoenix-client-cert-file", phoenixFiles.CertFile, "-phoenix-client-key-file", phoenixFiles.KeyFile}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o *options)
		wantErr string
	}{
		{
			name: "none: plain listeners, the system's roots",
			check: func(t *testing.T, o *options) {
				if o.cfg.TLS.Enabled() || o.cfg.Exporter.TLS.Enabled() || o.cfg.Phoenix.TLS.Enabled() {
					t.Errorf("TLS = %+v, %+v, %+v; want none", o.cfg.TLS, o.cfg.Exporter.TLS, o.cfg.Phoenix.TLS)
				}
			},
		},
		{
			name: "listener flags",
			args: []string{"-tls-cert-file", "/tls/tls.crt", "-tls-key-file", "/tls/tls.key", "-tls-client-ca-file", "/tls/apps.pem"},
			check: func(t *testing.T, o *options) {
				want := tlsconfig.ServerConfig{CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key", ClientCAFile: "/tls/apps.pem"}
				if o.cfg.TLS != want {
					t.Errorf("TLS = %+v, want %+v", o.cfg.TLS, want)
				}
			},
		},
		{
			name: "listener environment",
			env:  map[string]string{"FEEDBACK_PROXY_TLS_CERT_FILE": "/tls/tls.crt", "FEEDBACK_PROXY_TLS_KEY_FILE": "/tls/tls.key"},
			check: func(t *testing.T, o *options) {
				if want := (tlsconfig.ServerConfig{CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key"}); o.cfg.TLS != want {
					t.Errorf("TLS = %+v, want %+v", o.cfg.TLS, want)
				}
			},
		},
		{
			name: "Phoenix over https: both clients",
			args: append([]string{"-phoenix-otlp-endpoint", "https://phoenix.internal:6006"}, phoenixFlags...),
			check: func(t *testing.T, o *options) {
				if o.cfg.Exporter.TLS != phoenixFiles || o.cfg.Phoenix.TLS != phoenixFiles {
					t.Errorf("Phoenix TLS = %+v, %+v; want %+v for both", o.cfg.Exporter.TLS, o.cfg.Phoenix.TLS, phoenixFiles)
				}
			},
		},
		{
			name: "Phoenix environment, OTLP over https only",
			env: map[string]string{
				"PHOENIX_COLLECTOR_ENDPOINT":            "https://collector.internal",
				"PHOENIX_ENDPOINT":                      "http://phoenix.internal:6006",
				"FEEDBACK_PROXY_PHOENIX_CA_FILE":        "/etc/phoenix/ca.pem",
				"OTEL_EXPORTER_OTLP_CERTIFICATE":        "/etc/app/proxy-ca.pem",
				"OTEL_EXPORTER_OTLP_CLIENT_KEY":         "/etc/app/app.key",
				"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/etc/app/proxy-ca.pem",
			},
			check: func(t *testing.T, o *options) {
				if want := (tlsconfig.ClientConfig{CAFile: "/etc/phoenix/ca.pem"}); o.cfg.Exporter.TLS != want {
					t.Errorf("exporter TLS = %+v, want %+v (the app's OTEL_EXPORTER_OTLP_* are not the proxy's)", o.cfg.Exporter.TLS, want)
				}
				if o.cfg.Phoenix.TLS.Enabled() {
					t.Errorf("REST client over http:// has TLS files %+v", o.cfg.Phoenix.TLS)
				}
			},
		},
		{
			name:    "a certificate without its key",
			args:    []string{"-tls-cert-file", "/tls/tls.crt"},
			wantErr: "-tls-cert-file and -tls-key-file: give both",
		},
		{
			name:    "a client CA without a certificate",
			args:    []string{"-tls-client-ca-file", "/tls/apps.pem"},
			wantErr: "-tls-client-ca-file: needs -tls-cert-file",
		},
		{
			name:    "a Phoenix client key without its certificate",
			args:    []string{"-phoenix-otlp-endpoint", "https://phoenix.internal", "-phoenix-client-key-file", "/k"},
			wantErr: "-phoenix-client-cert-file and -phoenix-client-key-file: give both",
		},
		{
			name:    "Phoenix files for an http Phoenix",
			args:    phoenixFlags,
			wantErr: "Phoenix is reached over http://",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseConfig(append([]string{"-data-dir=-"}, tc.args...), env(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}
