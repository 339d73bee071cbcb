package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// The feedback listener answers CORS for the allowed origin only, limits
// a client address (here behind a reverse proxy on loopback, which names it
// in X-Forwarded-For) to its burst then answers 429 with Retry-After
// (which a page may read), never limits the server token nor the app's
// backend on this host, and takes a JSON body sent as text/plain
// (navigator.sendBeacon). The other listeners know nothing of CORS.
func TestFeedbackGuard(t *testing.T) {
	_, phxURL := newFakePhoenix(t)

	cfg := localConfig(phxURL)
	cfg.Feedback.Token = "s3cret"
	cfg.CORSAllowedOrigins = []string{"https://app.example"}
	cfg.RateLimits = RateLimits{PerAddress: 0.01, AddressBurst: 3}
	p, ctx, client := runProxy(t, cfg)
	feedbackURL := "http://" + p.Addrs().Feedback + "/feedback"

	type answer struct {
		code   int
		header http.Header
		body   string
	}
	do := func(method, url string, header map[string]string, body string) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, string(b)}
	}
	preflight := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}
	}
	server := map[string]string{"Authorization": "Bearer s3cret", "Origin": "https://app.example", "Content-Type": "text/plain;charset=UTF-8",
		"X-Forwarded-For": "198.51.100.7"}
	vote := `{"response_id":"chatcmpl-g","thumbs":"up"}`

	// Preflights are not counted against the address's burst.
	a := do("OPTIONS", feedbackURL, preflight("https://app.example"), "")
	if a.code != http.StatusNoContent || a.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		a.header.Get("Access-Control-Allow-Methods") != "POST, GET" || a.header.Get("Access-Control-Allow-Headers") != "Content-Type, Authorization" ||
		a.header.Get("Access-Control-Max-Age") != "600" || a.header.Get("Vary") != "Origin" || a.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight from the allowed origin: %d %v", a.code, a.header)
	}
	a = do("OPTIONS", feedbackURL, preflight("https://evil.example"), "")
	if a.code != http.StatusForbidden || a.header.Get("Access-Control-Allow-Origin") != "" || a.header.Get("Access-Control-Allow-Methods") != "" ||
		!strings.Contains(a.body, `"status":403`) || !strings.Contains(a.body, "https://evil.example") {
		t.Fatalf("preflight from another origin: %d %v %s", a.code, a.header, a.body)
	}
	// /widget.js is every page's, loaded with <script crossorigin> (a CORS
	// GET with the page's Origin) from an origin not on the list too.
	for _, method := range []string{"GET", "HEAD"} {
		for _, origin := range []string{"https://evil.example", "https://app.example"} {
			a := do(method, "http://"+p.Addrs().Feedback+"/widget.js", map[string]string{"Origin": origin}, "")
			if a.code != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != "*" ||
				!strings.HasPrefix(a.header.Get("Content-Type"), "text/javascript") || (method == "GET" && !strings.Contains(a.body, "function")) {
				t.Errorf("%s /widget.js from %s: %d %v", method, origin, a.code, a.header)
			}
		}
	}
	// A page may not mint, whatever it holds.
	if a := do("POST", feedbackURL+"/tokens", server, `{"response_id":"chatcmpl-g"}`); a.code != http.StatusForbidden || !strings.Contains(a.body, "may not mint") {
		t.Fatalf("POST /feedback/tokens from a page: %d %s", a.code, a.body)
	}

	// The server token is never limited; its text/plain JSON is taken.
	for i := range 5 {
		a := do("POST", feedbackURL, server, vote)
		if a.code != http.StatusAccepted || a.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Fatalf("POST %d with the server token, as text/plain: %d %s", i, a.code, a.body)
		}
	}
	// The app's backend on this host (loopback, naming no client) neither.
	for i := range 5 {
		if a := do("POST", feedbackURL, map[string]string{"Content-Type": "application/json"}, vote); a.code != http.StatusUnauthorized {
			t.Fatalf("POST %d from this host without a credential: %d %s", i, a.code, a.body)
		}
	}
	// A page's client: the burst (401s, no credential), then 429.
	page := map[string]string{"Origin": "https://app.example", "Content-Type": "text/plain", "X-Forwarded-For": "203.0.113.1, 198.51.100.7"}
	for i := range 3 {
		if a := do("POST", feedbackURL, page, vote); a.code != http.StatusUnauthorized {
			t.Fatalf("POST %d without a credential: %d %s", i, a.code, a.body)
		}
	}
	a = do("POST", feedbackURL, page, vote)
	if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") != "100" ||
		a.header.Get("Access-Control-Allow-Origin") != "https://app.example" || a.header.Get("Access-Control-Expose-Headers") != "Retry-After" {
		t.Fatalf("past the burst: %d %v %s", a.code, a.header, a.body)
	}
	var ans struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(a.body), &ans); err != nil || ans.Error.Status != 429 || !strings.Contains(ans.Error.Message, "client address") {
		t.Errorf("429 body %s (%v)", a.body, err)
	}
	// GETs share the bucket; another client has its own.
	if a := do("GET", feedbackURL+"/chatcmpl-g", map[string]string{"X-Forwarded-For": "198.51.100.7"}, ""); a.code != http.StatusTooManyRequests {
		t.Errorf("GET past the burst: %d", a.code)
	}
	if a := do("GET", feedbackURL+"/chatcmpl-g", map[string]string{"X-Forwarded-For": "198.51.100.8"}, ""); a.code != http.StatusUnauthorized {
		t.Errorf("GET from another client: %d", a.code)
	}

	// Not the OTLP or admin listeners.
	for _, url := range []string{"http://" + p.Addrs().OTLPHTTP + "/v1/traces", "http://" + p.Addrs().Admin + "/metrics"} {
		if a := do("OPTIONS", url, preflight("https://app.example"), ""); a.header.Get("Access-Control-Allow-Origin") != "" || a.code == http.StatusNoContent {
			t.Errorf("preflight to %s: %d %v", url, a.code, a.header)
		}
	}

	metrics := do("GET", "http://"+p.Addrs().Admin+"/metrics", nil, "").body
	for _, want := range []string{
		`feedbackproxy_feedback_refused_total{reason="rate_address"} 2`,
		`feedbackproxy_feedback_refused_total{reason="cors_origin"} 1`,
		`feedbackproxy_feedback_refused_total{reason="cors_mint"} 1`,
		`feedbackproxy_ratelimit_buckets{limit="address"} 2`,
		`feedbackproxy_ratelimit_capacity{limit="address"} 50000`,
		`feedbackproxy_ratelimit_evictions_total{limit="token"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// With no allowed origins (the default), the open feedback API takes no
// write from another host's page: a text/plain POST or a beacon, which a
// browser sends without a preflight, is refused 403 in the API's error
// format. The API's own pages (also behind a reverse proxy that keeps Host
// or sets X-Forwarded-Host), servers (no Origin), reads and /widget.js
// pass, and OTLP knows nothing of it.
func TestFeedbackCORSOff(t *testing.T) {
	_, phxURL := newFakePhoenix(t)
	cfg := localConfig(phxURL)
	p, ctx, client := runProxy(t, cfg)
	feedbackAddr := p.Addrs().Feedback

	do := func(method, url, host string, header map[string]string, body []byte) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	vote := []byte(`{"response_id":"chatcmpl-o","thumbs":"up"}`)
	beacon := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"}
	}

	for _, origin := range []string{"https://evil.example", "http://" + strings.Replace(feedbackAddr, "127.0.0.1", "localhost", 1), "null"} {
		code, header, body := do("POST", "http://"+feedbackAddr+"/feedback", "", beacon(origin), vote)
		var ans struct {
			Error struct {
				Status  int    `json:"status"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &ans); code != http.StatusForbidden || err != nil || ans.Error.Status != 403 ||
			!strings.Contains(ans.Error.Message, origin) || !strings.Contains(ans.Error.Message, "allowed origins") ||
			header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("a beacon from %s: %d %v %s", origin, code, header, body)
		}
	}
	for _, tc := range []struct {
		name, host string
		header     map[string]string
	}{
		{"a page of the API's own host", "", beacon("http://" + feedbackAddr)},
		{"a page behind a reverse proxy that keeps Host", "app.example", beacon("https://app.example")},
		{"a page behind a reverse proxy that sets X-Forwarded-Host", "",
			map[string]string{"Origin": "https://app.example", "X-Forwarded-Host": "app.example", "Content-Type": "application/json"}},
		{"a server", "", map[string]string{"Content-Type": "application/json"}},
	} {
		if code, _, body := do("POST", "http://"+feedbackAddr+"/feedback", tc.host, tc.header, vote); code != http.StatusAccepted {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}
	// Reads are not refused (a page of another origin cannot read them).
	for _, path := range []string{"/feedback/chatcmpl-o", "/widget.js"} {
		if code, _, body := do("GET", "http://"+feedbackAddr+path, "", map[string]string{"Origin": "https://evil.example"}, nil); code != http.StatusOK {
			t.Errorf("GET %s from another origin: %d %s", path, code, body)
		}
	}
	pb, err := ptraceotlp.NewExportRequestFromTraces(chatTraces("chatcmpl-o")).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := do("POST", "http://"+p.Addrs().OTLPHTTP+"/v1/traces", "",
		map[string]string{"Origin": "https://evil.example", "Content-Type": "application/x-protobuf"}, pb); code != http.StatusOK {
		t.Errorf("OTLP/HTTP export with another Origin: %d %s", code, body)
	}

	_, _, metrics := do("GET", "http://"+p.Addrs().Admin+"/metrics", "", nil, nil)
	if want := `feedbackproxy_feedback_refused_total{reason="cors_off"} 3`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
