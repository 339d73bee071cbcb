package cors

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNormalizeOrigin(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "https://app.example.com", want: "https://app.example.com"},
		{in: "HTTPS://App.Example.COM", want: "https://app.example.com"},
		{in: "https://app.example.com/", want: "https://app.example.com"},
		{in: "https://app.example.com:443", want: "https://app.example.com"},
		{in: "http://app.example.com:80", want: "http://app.example.com"},
		{in: "http://app.example.com:443", want: "http://app.example.com:443"},
		{in: "http://localhost:3000", want: "http://localhost:3000"},
		{in: "http://my_app:3000", want: "http://my_app:3000"},
		{in: "http://[2001:DB8:0::1]:8080", want: "http://[2001:db8::1]:8080"},
		{in: "https://bücher.example", want: "https://xn--bcher-kva.example"},
		{in: "chrome-extension://abcdefghijklmnop", want: "chrome-extension://abcdefghijklmnop"},
		{in: "https://app.example.com/feedback", wantErr: "expected no path, query or fragment"},
		{in: "https://app.example.com?x=1", wantErr: "expected no path, query or fragment"},
		{in: "https://app.example.com#top", wantErr: "expected no path, query or fragment"},
		{in: "https://*.example.com", wantErr: "wildcards in an origin are not supported"},
		{in: "https://user:pw@app.example.com", wantErr: "expected no user name or password"},
		{in: "app.example.com", wantErr: "expected scheme://host[:port]"},
		{in: "https://", wantErr: "expected scheme://host[:port]"},
		{in: "https://app.example.com:99999", wantErr: "expected a port from 1 to 65535"},
		{in: "null", wantErr: "list real origins"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeOrigin(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.in) {
					t.Fatalf("NormalizeOrigin = %q, %v; want an error naming it and saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeOrigin = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseOrigins(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "empty is none", in: "", want: ""},
		{name: "a list, normalized, blanks skipped", in: " https://A.example , http://b.example:80,", want: "https://a.example|http://b.example"},
		{name: "a lone star", in: "*", want: "*"},
		{name: "a star among origins", in: "*,https://a.example", wantErr: `"*" allows every origin`},
		{name: "every bad entry is named", in: "https://a.example/x,ftp//b", wantErr: "https://a.example/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOrigins(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseOrigins = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != tc.want {
				t.Fatalf("ParseOrigins = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ParseOrigins("https://a.example/x,ftp//b"); err == nil || !strings.Contains(err.Error(), "ftp//b") {
		t.Errorf("the second bad entry is not named: %v", err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{AllowedOrigins: []string{"*", "https://a.example"}}); err == nil {
		t.Error(`"*" with others: no error`)
	}
	if _, err := New(Config{AllowedOrigins: []string{"https://a.example/path"}}); err == nil {
		t.Error("a path: no error")
	}
	p, err := New(Config{})
	if err != nil || p.Enabled() {
		t.Fatalf("an empty list: %v, enabled %v", err, p.Enabled())
	}
	next := http.NotFoundHandler()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodOptions, "/feedback", nil)
	r.Header.Set("Origin", "https://a.example")
	r.Header.Set("Access-Control-Request-Method", "POST")
	p.Handler(next).ServeHTTP(rec, r)
	if rec.Code != http.StatusNotFound || len(rec.Header().Values("Vary")) != 0 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("an empty list answered for the handler: %d %v", rec.Code, rec.Header())
	}
}

// One policy, the feedback API's; requests as browsers send them.
func TestHandler(t *testing.T) {
	type req struct {
		method  string
		headers map[string]string
	}
	preflight := func(origin, method, headers string) req {
		h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		return req{http.MethodOptions, h}
	}
	from := func(method, origin string) req {
		return req{method, map[string]string{"Origin": origin}}
	}
	tests := []struct {
		name    string
		origins []string
		req     req
		code    int               // the answer; 200 means next's
		headers map[string]string // headers wanted, "" for absent
		refused string            // the reason told, if any
	}{
		{
			name: "preflight from an allowed origin", origins: []string{"https://app.example"},
			req:  preflight("https://app.example", "POST", "content-type,authorization"),
			code: 204,
			headers: map[string]string{
				"Access-Control-Allow-Origin":      "https://app.example",
				"Access-Control-Allow-Methods":     "POST, GET",
				"Access-Control-Allow-Headers":     "Content-Type, Authorization",
				"Access-Control-Max-Age":           "600",
				"Access-Control-Allow-Credentials": "",
			},
		},
		{
			name: "preflight from an origin sent unnormalized", origins: []string{"https://app.example"},
			req:     preflight("HTTPS://APP.example:443", "GET", ""),
			code:    204,
			headers: map[string]string{"Access-Control-Allow-Origin": "https://app.example"},
		},
		{
			name: "preflight from another origin", origins: []string{"https://app.example"},
			req:     preflight("https://evil.example", "POST", "content-type"),
			code:    403,
			headers: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Content-Type": "application/json"},
			refused: "origin",
		},
		{
			name: "preflight from another port of the same host", origins: []string{"https://app.example"},
			req: preflight("https://app.example:8443", "POST", ""), code: 403, refused: "origin",
		},
		{
			name: "preflight from null", origins: []string{"https://app.example"},
			req: preflight("null", "POST", ""), code: 403, refused: "origin",
		},
		{
			name: "preflight for a method not allowed", origins: []string{"https://app.example"},
			req: preflight("https://app.example", "DELETE", ""), code: 403, refused: "method",
			headers: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "preflight for a header not allowed", origins: []string{"https://app.example"},
			req: preflight("https://app.example", "POST", "content-type, x-custom"), code: 403, refused: "headers",
		},
		{
			name: "a request from an allowed origin", origins: []string{"https://app.example"},
			req:  from("POST", "https://app.example"),
			code: 200,
			headers: map[string]string{
				"Access-Control-Allow-Origin":      "https://app.example",
				"Access-Control-Expose-Headers":    "Retry-After",
				"Access-Control-Allow-Methods":     "",
				"Access-Control-Allow-Credentials": "",
			},
		},
		{
			name: "a simple request (sendBeacon) from another origin", origins: []string{"https://app.example"},
			req: from("POST", "https://evil.example"), code: 403, refused: "origin",
			headers: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "a request without Origin (a server, a same-origin GET)", origins: []string{"https://app.example"},
			req: req{"GET", nil}, code: 200,
			headers: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"},
		},
		{
			name: "OPTIONS that is not a preflight goes to the handler", origins: []string{"https://app.example"},
			req: from("OPTIONS", "https://app.example"), code: 200,
		},
		{
			name: "a star: any origin, never with credentials", origins: []string{"*"},
			req:  preflight("https://anyone.example", "POST", "authorization"),
			code: 204,
			headers: map[string]string{
				"Access-Control-Allow-Origin":      "*",
				"Access-Control-Allow-Credentials": "",
			},
		},
		{
			name: "a star takes null too", origins: []string{"*"},
			req: from("POST", "null"), code: 200,
			headers: map[string]string{"Access-Control-Allow-Origin": "*"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var refused []string
			p, err := New(Config{
				AllowedOrigins: tc.origins,
				AllowedMethods: []string{"POST", "GET"},
				AllowedHeaders: []string{"Content-Type", "Authorization"},
				ExposedHeaders: []string{"Retry-After"},
				OnRefuse:       func(reason string) { refused = append(refused, reason) },
			})
			if err != nil {
				t.Fatal(err)
			}
			called := false
			h := p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
			r := httptest.NewRequest(tc.req.method, "/feedback", nil)
			for k, v := range tc.req.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tc.code || called != (tc.code == 200) {
				t.Fatalf("answer %d, handler called %v; want %d", rec.Code, called, tc.code)
			}
			if vary := rec.Header().Values("Vary"); len(vary) == 0 || vary[0] != "Origin" {
				t.Errorf("Vary = %q, want Origin first", vary)
			}
			for k, want := range tc.headers {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tc.refused == "" {
				if len(refused) != 0 {
					t.Errorf("refused for %q", refused)
				}
				return
			}
			if len(refused) != 1 || refused[0] != tc.refused {
				t.Errorf("refused for %q, want [%s]", refused, tc.refused)
			}
			var ans struct {
				Error struct {
					Status  int    `json:"status"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || ans.Error.Status != 403 || ans.Error.Message == "" {
				t.Errorf("body %s (%v), want the API's error shape", rec.Body, err)
			}
		})
	}
}
