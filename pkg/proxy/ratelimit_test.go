package proxy

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

func TestNewFeedbackGuard(t *testing.T) {
	tests := []struct {
		name    string
		set     func(*Config)
		wantErr string
		check   func(t *testing.T, g *feedbackGuard)
	}{
		{
			name: "defaults: both limits, no CORS",
			check: func(t *testing.T, g *feedbackGuard) {
				if g.cors.Enabled() || g.perAddress == nil || g.perToken == nil {
					t.Fatalf("cors %v, per address %v, per token %v", g.cors.Enabled(), g.perAddress, g.perToken)
				}
				a, tk := g.perAddress.Config(), g.perToken.Config()
				if a.Rate != 10 || a.Burst != 40 || a.MaxKeys != 50_000 || tk.Rate != 2 || tk.Burst != 10 || tk.MaxKeys != 50_000 {
					t.Errorf("per address %+v, per token %+v", a, tk)
				}
			},
		},
		{
			name: "negative rates turn the limits off",
			set:  func(c *Config) { c.RateLimits = RateLimits{PerAddress: -1, PerToken: -1} },
			check: func(t *testing.T, g *feedbackGuard) {
				if g.perAddress != nil || g.perToken != nil || g.tokenLimiter() != nil {
					t.Fatal("a limit is on")
				}
			},
		},
		{
			name:    "a bad origin",
			set:     func(c *Config) { c.CORSAllowedOrigins = []string{"https://app.example/feedback"} },
			wantErr: "CORS allowed origins: origin \"https://app.example/feedback\": expected no path",
		},
		{
			name:    "a burst below 1",
			set:     func(c *Config) { c.RateLimits = RateLimits{PerToken: 1, TokenBurst: -1} },
			wantErr: "rate limit per token: burst -1",
		},
		{
			name:    "a rate that is not a number",
			set:     func(c *Config) { c.RateLimits = RateLimits{PerAddress: math.NaN()} },
			wantErr: "rate limit per address: rate NaN",
		},
		{
			name:    "no keys",
			set:     func(c *Config) { c.RateLimits = RateLimits{MaxKeys: -5} },
			wantErr: "max keys -5",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := localConfig("http://127.0.0.1:1")
			if tc.set != nil {
				tc.set(&cfg)
			}
			g, err := newFeedbackGuard(cfg.withDefaults(), prometheus.NewRegistry())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if _, err := New(cfg, nil); err == nil {
					t.Fatal("New took it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, g)
		})
	}
}

// The limit per token as the feedback service asks it: the burst, then a
// wait; tokens apart.
func TestTokenLimiter(t *testing.T) {
	cfg := localConfig("http://127.0.0.1:1")
	cfg.RateLimits = RateLimits{PerToken: 0.5, TokenBurst: 2}
	g, err := newFeedbackGuard(cfg.withDefaults(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := g.tokenLimiter()
	waits := []float64{l.TokenWait("a").Seconds(), l.TokenWait("a").Seconds(), l.TokenWait("a").Seconds(), l.TokenWait("b").Seconds()}
	if waits[0] != 0 || waits[1] != 0 || waits[2] < 1.9 || waits[2] > 2 || waits[3] != 0 {
		t.Fatalf("waits %v; want 0, 0, 2 s, 0", waits)
	}
}

// The bucket of a request: the client behind a trusted proxy, IPv6 by
// /64; none for the server token, nor for a trusted proxy's own request
// (no X-Forwarded-For at all). An X-Forwarded-For of trusted hops only,
// which a client behind a relay that passes its header on can write, is
// limited by its left-most hop, never exempted.
func TestAddressKey(t *testing.T) {
	cfg := localConfig("http://127.0.0.1:1")
	cfg.Feedback.Token = "s3cret"
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	g, err := newFeedbackGuard(cfg.withDefaults(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote, xff, auth string
		blankXFF                bool   // an X-Forwarded-For header with nothing in it
		want                    string // "" for not limited
	}{
		{name: "the peer", remote: "198.51.100.1:1", want: "198.51.100.1"},
		{name: "behind a trusted proxy", remote: "127.0.0.1:1", xff: "203.0.113.9, 198.51.100.2", want: "198.51.100.2"},
		{name: "a trusted proxy's own request", remote: "127.0.0.1:1", want: ""},
		{name: "trusted hops only: the left-most", remote: "127.0.0.1:1", xff: "127.0.0.2, 127.0.0.3", want: "127.0.0.2"},
		{name: "a client's X-Forwarded-For passed on by a loopback relay", remote: "127.0.0.1:1", xff: "127.0.0.1", want: "127.0.0.1"},
		{name: "an empty X-Forwarded-For", remote: "127.0.0.1:1", blankXFF: true, want: "127.0.0.1"},
		{name: "a trusted hop behind the server token", remote: "127.0.0.1:1", xff: "127.0.0.1", auth: "Bearer s3cret", want: ""},
		{name: "a client that cannot be told", remote: "127.0.0.1:1", xff: "unknown", want: "?"},
		{name: "an untrusted peer's X-Forwarded-For", remote: "198.51.100.1:1", xff: "198.51.100.2", want: "198.51.100.1"},
		{name: "IPv6 by /64", remote: "[2001:db8:1:2:3:4:5:6]:1", want: "2001:db8:1:2::"},
		{name: "the server token", remote: "198.51.100.1:1", auth: "bearer s3cret", want: ""},
		{name: "a wrong token", remote: "198.51.100.1:1", auth: "Bearer s3cre", want: "198.51.100.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/feedback", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" || tc.blankXFF {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			key, limited := g.addressKey(r)
			if tc.want == "" {
				if limited {
					t.Fatalf("limited under %q", key)
				}
				return
			}
			var wantKey string
			want, err := netip.ParseAddr(tc.want)
			if err != nil {
				wantKey = tc.want
			} else if want.Is4() {
				b := want.As4()
				wantKey = string(b[:])
			} else {
				b := want.As16()
				wantKey = string(b[:8])
			}
			if !limited || key != wantKey {
				t.Fatalf("key %x (limited %v), want %s's", key, limited, tc.want)
			}
		})
	}
}

// A page's per-response token, sent as navigator.sendBeacon sends it (the
// token in a text/plain body, no headers but Origin), is limited to its
// burst whatever address it comes from, then told to wait; another token
// is not.
func TestTokenRateLimit(t *testing.T) {
	_, phxURL := newFakePhoenix(t)

	keys, err := token.ParseKeys([]byte(strings.Repeat("ab", 32) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	mint := func(responseID string) string {
		tok, err := keys.Mint(token.Claims{ResponseID: responseID, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cfg := localConfig(phxURL)
	cfg.Feedback.Token = "s3cret"
	cfg.Feedback.Tokens = keys
	cfg.CORSAllowedOrigins = []string{"https://app.example"}
	cfg.RateLimits = RateLimits{PerToken: 0.01, TokenBurst: 2}
	p, ctx, client := runProxy(t, cfg)
	beacon := func(from, responseID, tok string) (int, string, string) {
		t.Helper()
		body := fmt.Sprintf(`{"response_id":%q,"thumbs":"down","token":%q}`, responseID, tok)
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+p.Addrs().Feedback+"/feedback", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("X-Forwarded-For", from)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	}
	tok := mint("chatcmpl-t")
	for i, from := range []string{"198.51.100.1", "198.51.100.2"} {
		if code, _, body := beacon(from, "chatcmpl-t", tok); code != http.StatusAccepted {
			t.Fatalf("beacon %d: %d %s", i, code, body)
		}
	}
	if code, retry, body := beacon("198.51.100.3", "chatcmpl-t", tok); code != http.StatusTooManyRequests || retry != "100" {
		t.Fatalf("past the token's burst: %d, Retry-After %q, %s", code, retry, body)
	}
	if code, _, body := beacon("198.51.100.3", "chatcmpl-u", mint("chatcmpl-u")); code != http.StatusAccepted {
		t.Fatalf("another token: %d %s", code, body)
	}
	// A made-up token is refused before it costs a bucket.
	if code, _, _ := beacon("198.51.100.3", "chatcmpl-v", "fbt1.made.up"); code != http.StatusUnauthorized {
		t.Fatalf("a made-up token: %d", code)
	}
	if n := p.guard.perToken.Len(); n != 2 {
		t.Errorf("%d token buckets, want 2 (one per valid token)", n)
	}
}

// A client that draws a fresh address for every request from its IPv6
// block (a /64 of the 65,536 in its /48) meets the limit of its network:
// NetworkFactor addresses' worth, not one fresh bucket per request.
func TestRateLimitPerNetwork(t *testing.T) {
	cfg := Config{TrustedProxies: []netip.Prefix{}}
	g, err := newFeedbackGuard(cfg.withDefaults(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := g.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	taken := 0
	for i := range 1000 {
		req := httptest.NewRequest("POST", "/feedback", strings.NewReader(`{}`))
		req.RemoteAddr = fmt.Sprintf("[2001:db8:1:%x::1]:443", i)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusAccepted {
			taken++
		}
	}
	// The network's burst, and what it refilled while the loop ran.
	if burst := NetworkFactor * DefaultAddressBurst; taken < burst || taken > burst+50 {
		t.Errorf("%d of 1000 requests from rotating /64s taken, want about the network's burst of %d", taken, burst)
	}
	// Another network is not held back by it.
	req := httptest.NewRequest("POST", "/feedback", strings.NewReader(`{}`))
	req.RemoteAddr = "[2001:db8:2::1]:443"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Errorf("another /48: %d", rec.Code)
	}
}
