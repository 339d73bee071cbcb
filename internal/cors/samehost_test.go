package cors

import (
	"net/http/httptest"
	"testing"
)

func TestSameHost(t *testing.T) {
	tests := []struct {
		name    string
		origin  []string // Origin header values; nil: none
		host    string
		fwdHost []string // X-Forwarded-Host values
		want    bool
	}{
		{name: "no Origin", host: "localhost:8080", want: false},
		{name: "the same host and port", origin: []string{"http://localhost:8080"}, host: "localhost:8080", want: true},
		{name: "another port", origin: []string{"http://localhost:3000"}, host: "localhost:8080", want: false},
		{name: "another host", origin: []string{"https://evil.example"}, host: "localhost:8080", want: false},
		{name: "a subdomain is another host", origin: []string{"https://evil.app.example"}, host: "app.example", want: false},
		{name: "https behind a proxy ending TLS, default port", origin: []string{"https://app.example"}, host: "app.example", want: true},
		{name: "the default port written out", origin: []string{"https://app.example"}, host: "app.example:443", want: true},
		{name: "a Host without port is the scheme's default", origin: []string{"https://app.example:8443"}, host: "app.example", want: false},
		{name: "case and IPv6 forms", origin: []string{"http://[2001:db8::1]:8080"}, host: "[2001:DB8:0::1]:8080", want: true},
		{name: "a host name in capitals", origin: []string{"https://app.example"}, host: "APP.example", want: true},
		{name: "X-Forwarded-Host of a proxy that rewrote Host", origin: []string{"https://app.example"}, host: "127.0.0.1:8080",
			fwdHost: []string{"app.example"}, want: true},
		{name: "the left-most X-Forwarded-Host", origin: []string{"https://app.example"}, host: "127.0.0.1:8080",
			fwdHost: []string{"app.example, internal.example"}, want: true},
		{name: "another X-Forwarded-Host", origin: []string{"https://evil.example"}, host: "127.0.0.1:8080",
			fwdHost: []string{"app.example"}, want: false},
		{name: "null", origin: []string{"null"}, host: "localhost:8080", want: false},
		{name: "an empty Origin", origin: []string{""}, host: "localhost:8080", want: false},
		{name: "two Origins", origin: []string{"http://localhost:8080", "http://localhost:8080"}, host: "localhost:8080", want: false},
		{name: "not http", origin: []string{"chrome-extension://localhost"}, host: "localhost", want: false},
		{name: "a Host with a path", origin: []string{"https://app.example"}, host: "app.example/x", want: false},
		{name: "a Host with a user", origin: []string{"https://app.example"}, host: "evil@app.example", want: false},
		{name: "no Host", origin: []string{"https://app.example"}, host: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/feedback", nil)
			r.Host = tc.host
			for _, o := range tc.origin {
				r.Header.Add("Origin", o)
			}
			for _, h := range tc.fwdHost {
				r.Header.Add("X-Forwarded-Host", h)
			}
			if got := SameHost(r); got != tc.want {
				t.Fatalf("SameHost = %v, want %v", got, tc.want)
			}
		})
	}
}
