package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// env is an environment of m, with a HOME unless m says otherwise.
func env(m map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := m[k]; ok || k != "HOME" {
			return v
		}
		return "/home/test"
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, o *options, err error)
	}{
		{
			name: "defaults are the OTLP standard ports on localhost and a local Phoenix",
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := o.cfg
				if c.Receiver.GRPCAddr != "localhost:4317" || c.Receiver.HTTPAddr != "localhost:4318" ||
					c.FeedbackAddr != "localhost:8080" || c.AdminAddr != "localhost:8888" {
					t.Errorf("listeners = %+v %s %s", c.Receiver, c.FeedbackAddr, c.AdminAddr)
				}
				if c.Exporter.Endpoint != "http://localhost:6006/v1/traces" || c.Phoenix.BaseURL != "http://localhost:6006" {
					t.Errorf("phoenix = %s, %s", c.Exporter.Endpoint, c.Phoenix.BaseURL)
				}
			},
		},
		{
			name: "token keys file from the environment",
			env:  map[string]string{"FEEDBACK_PROXY_TOKEN_KEYS_FILE": "/etc/feedback/keys"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil || o.cfg.TokenKeysFile != "/etc/feedback/keys" {
					t.Errorf("TokenKeysFile = %q, %v", o.cfg.TokenKeysFile, err)
				}
			},
		},
		{
			name: "Phoenix client variables",
			env: map[string]string{
				"PHOENIX_COLLECTOR_ENDPOINT": "https://phoenix.example:6006/v1/traces",
				"PHOENIX_API_KEY":            "k3y",
				"PHOENIX_CLIENT_HEADERS":     "x-team=llm%20ops, x-env=prod",
			},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := o.cfg
				if c.Exporter.Endpoint != "https://phoenix.example:6006/v1/traces" || c.Phoenix.BaseURL != "https://phoenix.example:6006" {
					t.Errorf("phoenix = %s, %s", c.Exporter.Endpoint, c.Phoenix.BaseURL)
				}
				want := map[string]string{"Authorization": "Bearer k3y", "x-team": "llm ops", "x-env": "prod"}
				for k, v := range want {
					if c.Exporter.Headers[k] != v || c.Phoenix.Headers[k] != v {
						t.Errorf("header %s = %q / %q, want %q", k, c.Exporter.Headers[k], c.Phoenix.Headers[k], v)
					}
				}
			},
		},
		{
			name: "a base collector endpoint gets /v1/traces; PHOENIX_ENDPOINT sets the REST base",
			env:  map[string]string{"PHOENIX_COLLECTOR_ENDPOINT": "http://collector:6006/", "PHOENIX_ENDPOINT": "http://rest:6006/"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.cfg.Exporter.Endpoint != "http://collector:6006/v1/traces" || o.cfg.Phoenix.BaseURL != "http://rest:6006" {
					t.Errorf("phoenix = %s, %s", o.cfg.Exporter.Endpoint, o.cfg.Phoenix.BaseURL)
				}
			},
		},
		{
			name: "flags win over the environment, which wins over defaults",
			args: []string{"-feedback-addr", ":9090", "-index-extra-keys", "app.key, other"},
			env:  map[string]string{"FEEDBACK_PROXY_FEEDBACK_ADDR": ":1", "FEEDBACK_PROXY_INDEX_MAX_AGE": "2h", "FEEDBACK_PROXY_FEEDBACK_TOKEN": "s3cret"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := o.cfg
				if c.FeedbackAddr != ":9090" || c.Index.MaxAge != 2*time.Hour || c.Feedback.Token != "s3cret" {
					t.Errorf("feedback addr %s, index age %s, token %q", c.FeedbackAddr, c.Index.MaxAge, c.Feedback.Token)
				}
				if strings.Join(c.Extractor.ExtraKeys, "|") != "app.key|other" {
					t.Errorf("extra keys = %q", c.Extractor.ExtraKeys)
				}
			},
		},
		{
			name: "the shared index from the environment; the Phoenix lookup on by default",
			env:  map[string]string{"FEEDBACK_PROXY_REDIS_URL": "rediss://app:s3cret@valkey:6380/2", "FEEDBACK_PROXY_PHOENIX_LOOKUP_PROJECTS": "support, billing"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := o.cfg
				if c.Shared.URL != "rediss://app:s3cret@valkey:6380/2" || c.NoPhoenixLookup || c.PhoenixLookup.Rate != 1 ||
					strings.Join(c.PhoenixLookup.Projects, "|") != "support|billing" {
					t.Errorf("shared %+v, lookup off %v, lookup %+v", c.Shared, c.NoPhoenixLookup, c.PhoenixLookup)
				}
			},
		},
		{
			name: "a Redis URL that is not one, without its password in the error",
			args: []string{"-redis-url", "http://app:s3cret@valkey:6379"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "-redis-url") || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("err = %v; want a -redis-url error without the password", err)
				}
			},
		},
		{
			name: "a lookup rate of zero",
			args: []string{"-phoenix-lookup-rate", "0"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "-no-phoenix-lookup") {
					t.Fatalf("err = %v; want a pointer to -no-phoenix-lookup", err)
				}
			},
		},
		{
			name: "too many extra keys",
			args: []string{"-index-extra-keys", strings.Repeat("k,", 61) + "k"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "at most 60") {
					t.Fatalf("err = %v; want at most 60 keys", err)
				}
			},
		},
		{
			name: "a data directory by default, under the user's state directory",
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.cfg.DataDir != "/home/test/.local/state/phoenix-feedback-proxy" || o.memoryOnly || o.cfg.DataSync {
					t.Errorf("data dir %q, memory only %v, sync %v; want ~/.local/state/phoenix-feedback-proxy", o.cfg.DataDir, o.memoryOnly, o.cfg.DataSync)
				}
			},
		},
		{
			name: "XDG_STATE_HOME moves the default data directory",
			env:  map[string]string{"XDG_STATE_HOME": "/state"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil || o.cfg.DataDir != "/state/phoenix-feedback-proxy" {
					t.Fatalf("data dir %v, err %v; want /state/phoenix-feedback-proxy", o, err)
				}
			},
		},
		{
			name: "a relative XDG_STATE_HOME is ignored, as the XDG specification says",
			env:  map[string]string{"XDG_STATE_HOME": "state"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil || o.cfg.DataDir != "/home/test/.local/state/phoenix-feedback-proxy" {
					t.Fatalf("data dir %v, err %v", o, err)
				}
			},
		},
		{
			name: "memory only is asked for with -data-dir=-",
			args: []string{"-data-dir=-"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.cfg.DataDir != "" || !o.memoryOnly {
					t.Errorf("data dir %q, memory only %v; want memory only", o.cfg.DataDir, o.memoryOnly)
				}
			},
		},
		{
			name: "no HOME and no data directory: an error that says what to do",
			env:  map[string]string{"HOME": ""},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "-data-dir=-") || !strings.Contains(err.Error(), "HOME") {
					t.Fatalf("err = %v; want one naming HOME and -data-dir=-", err)
				}
			},
		},
		{
			name: "an empty -data-dir is an error that says what to give",
			args: []string{"-data-dir="},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "empty") || !strings.Contains(err.Error(), "-data-dir=-") {
					t.Fatalf("err = %v; want one saying it is empty and naming -data-dir=-", err)
				}
			},
		},
		{
			name: "listener limits by flag and environment",
			args: []string{"-read-timeout", "5s", "-max-connections", "64"},
			env:  map[string]string{"FEEDBACK_PROXY_IDLE_TIMEOUT": "7s"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				l := o.cfg.Limits
				if l.ReadTimeout != 5*time.Second || l.MaxConnections != 64 || l.IdleTimeout != 7*time.Second || l.ReadHeaderTimeout != 10*time.Second {
					t.Errorf("limits = %+v", l)
				}
			},
		},
		{
			name: "data directory by flag, fsync by environment",
			args: []string{"-data-dir", "/var/lib/feedback-proxy"},
			env:  map[string]string{"FEEDBACK_PROXY_DATA_DIR": "/elsewhere", "FEEDBACK_PROXY_DATA_SYNC": "true"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.cfg.DataDir != "/var/lib/feedback-proxy" || !o.cfg.DataSync {
					t.Errorf("data dir %q, sync %v", o.cfg.DataDir, o.cfg.DataSync)
				}
			},
		},
		{
			name: "data directory by environment",
			env:  map[string]string{"FEEDBACK_PROXY_DATA_DIR": "/data"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.cfg.DataDir != "/data" || o.cfg.DataSync {
					t.Errorf("data dir %q, sync %v", o.cfg.DataDir, o.cfg.DataSync)
				}
			},
		},
		{
			name: "a bad environment value names the variable",
			env:  map[string]string{"FEEDBACK_PROXY_INDEX_MAX_ENTRIES": "lots"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "FEEDBACK_PROXY_INDEX_MAX_ENTRIES") {
					t.Errorf("err = %v, want it to name the variable", err)
				}
			},
		},
		{
			name: "bad URL, headers, log level",
			args: []string{"-phoenix-url", "localhost:6006"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "Phoenix REST URL") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "malformed PHOENIX_CLIENT_HEADERS",
			env:  map[string]string{"PHOENIX_CLIENT_HEADERS": "novalue"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "PHOENIX_CLIENT_HEADERS") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "log level",
			args: []string{"-log-level", "loud"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "log-level") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "compression none from the environment",
			env:  map[string]string{"FEEDBACK_PROXY_PHOENIX_COMPRESSION": "none"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.cfg.Exporter.Compression != otlp.NoCompression {
					t.Errorf("compression = %s, want none", o.cfg.Exporter.Compression)
				}
			},
		},
		{
			name: "a compression the exporter does not support",
			args: []string{"-phoenix-compression", "zstd"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), `-phoenix-compression: otlp: exporter compression "zstd" is not supported; use gzip or none`) {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "stray arguments",
			args: []string{"serve"},
			check: func(t *testing.T, _ *options, err error) {
				if err == nil || !strings.Contains(err.Error(), "serve") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "no CORS, loopback trusted, the rate limits on by default",
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := o.cfg
				if len(c.CORSAllowedOrigins) != 0 || fmt.Sprint(c.TrustedProxies) != fmt.Sprint(proxy.DefaultTrustedProxies()) {
					t.Errorf("origins %q, trusted %v", c.CORSAllowedOrigins, c.TrustedProxies)
				}
				want := proxy.RateLimits{PerAddress: 10, AddressBurst: 40, PerToken: 2, TokenBurst: 10, MaxKeys: 50_000}
				if c.RateLimits != want {
					t.Errorf("rate limits %+v, want %+v", c.RateLimits, want)
				}
			},
		},
		{
			name: "CORS origins and trusted proxies from the environment, normalized; rate limits from flags",
			args: []string{"-feedback-rate-per-address", "2.5", "-feedback-burst-per-address", "5", "-feedback-rate-per-token", "-1", "-feedback-rate-max-keys", "1000"},
			env: map[string]string{
				"FEEDBACK_PROXY_CORS_ALLOWED_ORIGINS": "https://App.example:443, http://localhost:3000,",
				"FEEDBACK_PROXY_TRUSTED_PROXIES":      "10.1.2.3/8, 192.0.2.7, 2001:db8::/48",
			},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := o.cfg
				if strings.Join(c.CORSAllowedOrigins, "|") != "https://app.example|http://localhost:3000" {
					t.Errorf("origins %q", c.CORSAllowedOrigins)
				}
				if fmt.Sprint(c.TrustedProxies) != "[10.0.0.0/8 192.0.2.7/32 2001:db8::/48]" {
					t.Errorf("trusted %v", c.TrustedProxies)
				}
				want := proxy.RateLimits{PerAddress: 2.5, AddressBurst: 5, PerToken: -1, TokenBurst: 10, MaxKeys: 1000}
				if c.RateLimits != want {
					t.Errorf("rate limits %+v, want %+v", c.RateLimits, want)
				}
			},
		},
		{
			name: "any origin; no trusted proxies",
			args: []string{"-cors-allowed-origins", "*", "-trusted-proxies", "-"},
			check: func(t *testing.T, o *options, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(o.cfg.CORSAllowedOrigins) != "[*]" || o.cfg.TrustedProxies == nil || len(o.cfg.TrustedProxies) != 0 {
					t.Errorf("origins %q, trusted %v", o.cfg.CORSAllowedOrigins, o.cfg.TrustedProxies)
				}
			},
		},
		{
			name: "an origin with a path",
			args: []string{"-cors-allowed-origins", "https://app.example/chat"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "-cors-allowed-origins: origin \"https://app.example/chat\": expected no path"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
		{
			name: "a wildcard subdomain",
			args: []string{"-cors-allowed-origins", "https://*.example.com"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "wildcards in an origin are not supported"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
		{
			name: "a star among origins",
			args: []string{"-cors-allowed-origins", "*,https://app.example"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "give it alone"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
		{
			name: "a trusted proxy that is not an address",
			args: []string{"-trusted-proxies", "10.0.0.0/8,proxy.internal"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "-trusted-proxies: \"proxy.internal\": expected an address"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
		{
			name: "a rate of zero",
			args: []string{"-feedback-rate-per-address", "0"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "-feedback-rate-per-address 0: expected a positive number of requests a second, or a negative one for no limit"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
		{
			name: "a burst of zero",
			args: []string{"-feedback-burst-per-token", "0"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "-feedback-burst-per-token 0: expected at least 1"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
		{
			name: "no keys",
			args: []string{"-feedback-rate-max-keys", "0"},
			check: func(t *testing.T, _ *options, err error) {
				if want := "-feedback-rate-max-keys 0"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			o, err := parseConfig(tt.args, env(tt.env), &out)
			tt.check(t, o, err)
		})
	}
}

func TestHelpNamesTheEssentials(t *testing.T) {
	var out bytes.Buffer
	_, err := parseConfig([]string{"-help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "POST localhost:8080/feedback", "PHOENIX_API_KEY", "FEEDBACK_PROXY_", "-otlp-http-addr", "-data-dir", "pending feedback and the response-id index", "-data-sync"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}
