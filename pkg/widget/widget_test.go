package widget

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	do := func(t *testing.T, method string, header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/widget.js", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	tests := []struct {
		name   string
		method string
		header http.Header
		check  func(t *testing.T, resp *http.Response, body []byte)
	}{
		{
			name:   "GET serves the script with its headers",
			method: http.MethodGet,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				if !bytes.Equal(body, script) {
					t.Errorf("body is %d bytes, want the %d bytes of widget.js", len(body), len(script))
				}
				want := map[string]string{
					"Content-Type":                 "text/javascript; charset=utf-8",
					"X-Content-Type-Options":       "nosniff",
					"Cache-Control":                "public, max-age=300",
					"ETag":                         etag,
					"Access-Control-Allow-Origin":  "*",
					"Cross-Origin-Resource-Policy": "cross-origin",
				}
				for k, v := range want {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("%s: %q, want %q", k, got, v)
					}
				}
				if resp.Header.Get("Last-Modified") != "" {
					t.Errorf("Last-Modified %q: the ETag alone validates", resp.Header.Get("Last-Modified"))
				}
			},
		},
		{
			name:   "a matching If-None-Match costs a 304",
			method: http.MethodGet,
			header: http.Header{"If-None-Match": {etag}},
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
					t.Fatalf("status %d with %d bytes, want 304 and no body", resp.StatusCode, len(body))
				}
				if resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") == "" {
					t.Errorf("a 304 must repeat ETag and Cache-Control, got %v", resp.Header)
				}
			},
		},
		{
			name:   "an old ETag gets the new script",
			method: http.MethodGet,
			header: http.Header{"If-None-Match": {`"an-older-version"`}},
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if resp.StatusCode != http.StatusOK || !bytes.Equal(body, script) {
					t.Fatalf("status %d with %d bytes, want 200 and the script", resp.StatusCode, len(body))
				}
			},
		},
		{
			name:   "HEAD has the headers and no body",
			method: http.MethodHead,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if resp.StatusCode != http.StatusOK || len(body) != 0 {
					t.Fatalf("status %d with %d bytes, want 200 and no body", resp.StatusCode, len(body))
				}
				if resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
					t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
				}
			},
		},
		{
			name:   "POST is refused with Allow",
			method: http.MethodPost,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
					t.Fatalf("status %d, Allow %q: want 405 and GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
				}
				if !strings.Contains(string(body), "expected GET or HEAD") {
					t.Errorf("body %q does not say what was expected", body)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, tt.header)
			tt.check(t, resp, body)
		})
	}
}

// TestScriptIsCSPFriendly keeps widget.js loadable on a page with a strict
// Content-Security-Policy and Trusted Types: no eval in any form, no markup
// parsed from strings, no style attributes.
func TestScriptIsCSPFriendly(t *testing.T) {
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`\beval\s*\(`),
		regexp.MustCompile(`new\s+Function\b`),
		regexp.MustCompile(`setTimeout\(\s*["'\x60]`),
		regexp.MustCompile(`\.(innerHTML|outerHTML)\b`),
		regexp.MustCompile(`insertAdjacentHTML|document\.write`),
		regexp.MustCompile(`\.style\.|setAttribute\(\s*["']style["']`),
	} {
		if loc := bad.FindIndex(script); loc != nil {
			t.Errorf("widget.js uses %q at byte %d", script[loc[0]:loc[1]], loc[0])
		}
	}
	// What a page relies on: the global API, the attributes, the ARIA.
	for _, want := range []string{
		"window.FeedbackWidget", "data-feedback-response-id", "data-feedback-token", "data-feedback-endpoint",
		`"aria-pressed"`, `"aria-live", "polite"`, `"Good response"`, `"Bad response"`, `credentials: "omit"`,
		"sendBeacon",
	} {
		if !bytes.Contains(script, []byte(want)) {
			t.Errorf("widget.js lacks %s", want)
		}
	}
}

func TestScriptIsACopy(t *testing.T) {
	b := Script()
	b[0] ^= 0xff
	if bytes.Equal(b, script) {
		t.Fatal("Script returned the embedded bytes themselves")
	}
}
