package proxy

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/cors"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/ratelimit"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// RateLimits bound the requests a second the feedback API takes from one
// client address and with one per-response token, each with a token bucket:
// a client may send a burst at once, then at the rate. Past it, 429 with
// Retry-After. The app's backend is never limited: requests with the
// server token, and requests of the trusted proxies themselves (by
// default, any process on this host) that carry no X-Forwarded-For at all.
// A zero field takes its default; a negative rate turns that limit off.
type RateLimits struct {
	// PerAddress is the requests a second one client address may make, in
	// bursts of AddressBurst. An IPv6 client is limited by its /64. See
	// Config.TrustedProxies for clients behind a reverse proxy.
	PerAddress   float64
	AddressBurst int
	// PerNetwork is the requests a second all the addresses of one network
	// (an IPv4 /24, an IPv6 /48) may make together, in bursts of
	// NetworkBurst: what a client that rotates through its block's
	// addresses gets at most. Zero means NetworkFactor times PerAddress
	// (and AddressBurst).
	PerNetwork   float64
	NetworkBurst int
	// PerToken is the requests a second one per-response token may make,
	// in bursts of TokenBurst, counted once the token is verified (a made-up
	// token is refused before it costs a bucket).
	PerToken   float64
	TokenBurst int
	// MaxKeys is the addresses, and the tokens, whose buckets each limit
	// keeps, the least recently seen forgotten first; each costs about
	// ratelimit.BucketBytes.
	MaxKeys int
}

// Rate limit defaults, for a page that shows responses and lets its user
// vote on them. The widget (pkg/widget) sends one POST per vote, and a
// beacon when the page goes away with a vote not yet confirmed; the CORS
// preflight, once per 10 minutes, is not counted. So an address's 40 at
// once and 10 a second are far more than a person clicks, and leave room
// for an office behind one NAT address or a page that also asks for the
// state of a long conversation at once. A token is one response: its user
// votes, changes their mind, adds a comment; 10 at once and 2 a second
// leave room for that and for retries, not for a script.
//
// A bucket forgotten before it refilled (4 s for an address, 5 s for a
// token) gives its client a fresh burst; 50,000 is far more clients than
// are active within those seconds on any site this proxy serves, and
// costs at most 2 x 50,000 x ratelimit.BucketBytes = 25.6 MB.
const (
	// NetworkFactor is how many clients' worth a network gets by default:
	// a client rotating through a /48 (or a /24) gets 8 times one
	// address's rate, not 65,536 times; an office or a campus behind one
	// /24 shares 80 votes a second.
	NetworkFactor           = 8
	DefaultRatePerAddress   = 10
	DefaultAddressBurst     = 40
	DefaultRatePerToken     = 2
	DefaultTokenBurst       = 10
	DefaultRateLimitMaxKeys = 50_000
)

// DefaultTrustedProxies are Config.TrustedProxies' default: loopback,
// where a reverse proxy on the same host, or the app's backend passing a
// page's request on, connects from. Only processes of this host can.
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// WithDefaults returns l with its zero fields set to their defaults.
func (l RateLimits) WithDefaults() RateLimits {
	or := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	or(&l.PerAddress, DefaultRatePerAddress)
	or(&l.PerToken, DefaultRatePerToken)
	if l.AddressBurst == 0 {
		l.AddressBurst = DefaultAddressBurst
	}
	or(&l.PerNetwork, NetworkFactor*l.PerAddress)
	if l.NetworkBurst == 0 {
		l.NetworkBurst = NetworkFactor * l.AddressBurst
	}
	if l.TokenBurst == 0 {
		l.TokenBurst = DefaultTokenBurst
	}
	if l.MaxKeys == 0 {
		l.MaxKeys = DefaultRateLimitMaxKeys
	}
	return l
}

// Validate says what is wrong with l (after WithDefaults), naming the field.
func (l RateLimits) Validate() error {
	var errs []error
	for _, r := range []struct {
		name  string
		rate  float64
		burst int
	}{{"per address", l.PerAddress, l.AddressBurst}, {"per network", l.PerNetwork, l.NetworkBurst}, {"per token", l.PerToken, l.TokenBurst}} {
		switch {
		case math.IsNaN(r.rate) || math.IsInf(r.rate, 0):
			errs = append(errs, fmt.Errorf("rate limit %s: rate %g: expected a number of requests a second (negative: no limit)", r.name, r.rate))
		case r.rate > 0 && r.burst < 1:
			errs = append(errs, fmt.Errorf("rate limit %s: burst %d: expected at least 1 request", r.name, r.burst))
		}
	}
	if l.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("rate limits: max keys %d: expected at least 1", l.MaxKeys))
	}
	return errors.Join(errs...)
}

// feedbackGuard is what stands in front of the feedback API: the CORS
// policy and the rate limit per client address, and the rate limit per
// token the feedback service applies once it has verified a token.
type feedbackGuard struct {
	cors       *cors.Policy
	perAddress *ratelimit.Limiter // nil: no limit
	perNetwork *ratelimit.Limiter // nil: no limit
	perToken   *ratelimit.Limiter // nil: no limit
	clients    ratelimit.ClientAddress
	// serverToken's requests are the app's backend's: never limited.
	serverToken string
	metrics     *guardMetrics
}

// Feedback API refusal reasons, the metric's label values.
const (
	refusedRateAddress = "rate_address"
	refusedRateNetwork = "rate_network"
	refusedRateToken   = "rate_token"
)

// newFeedbackGuard builds the guard of cfg, which has its defaults (see
// Config.withDefaults); its metrics go to reg.
func newFeedbackGuard(cfg Config, reg prometheus.Registerer) (*feedbackGuard, error) {
	m := newGuardMetrics(reg)
	g := &feedbackGuard{clients: ratelimit.ClientAddress{Trusted: cfg.TrustedProxies}, serverToken: cfg.Feedback.Token, metrics: m}
	var err error
	if g.cors, err = newCORS(cfg.CORSAllowedOrigins, m); err != nil {
		return nil, fmt.Errorf("CORS allowed origins: %w", err)
	}
	l := cfg.RateLimits
	if err := l.Validate(); err != nil {
		return nil, err
	}
	limiter := func(reason, key string, rate float64, burst, maxKeys int) (*ratelimit.Limiter, error) {
		if rate < 0 {
			return nil, nil
		}
		refused := m.refused.WithLabelValues(reason)
		lim, err := ratelimit.New(ratelimit.Config{Rate: rate, Burst: burst, MaxKeys: maxKeys, Key: key, OnRefuse: refused.Inc})
		if err != nil {
			return nil, fmt.Errorf("rate limit per %s: %w", key, err)
		}
		m.watch(strings.TrimPrefix(reason, "rate_"), lim)
		return lim, nil
	}
	if g.perAddress, err = limiter(refusedRateAddress, "client address", l.PerAddress, l.AddressBurst, l.MaxKeys); err != nil {
		return nil, err
	}
	if l.PerAddress >= 0 {
		if g.perNetwork, err = limiter(refusedRateNetwork, "network", l.PerNetwork, l.NetworkBurst, networkKeys(l.MaxKeys)); err != nil {
			return nil, err
		}
	}
	if g.perToken, err = limiter(refusedRateToken, "token", l.PerToken, l.TokenBurst, l.MaxKeys); err != nil {
		return nil, err
	}
	return g, nil
}

// wrap puts the guard in front of the feedback API h: CORS first, so that
// a page may read the refusals that follow, then the rate limit per
// address, before the body is read.
func (g *feedbackGuard) wrap(h http.Handler) http.Handler {
	if g.perAddress != nil {
		h = g.perAddress.Middleware(h, g.addressKey)
	}
	if g.perNetwork != nil {
		h = g.perNetwork.Middleware(h, g.networkKey)
	}
	return g.withCORS(h)
}

// networkKeys is how many networks the limit per network keeps: fewer than
// addresses, as many addresses share one.
func networkKeys(maxKeys int) int { return max(maxKeys/4, 1) }

// networkKey is the bucket of r's client's network, for the requests
// addressKey limits.
func (g *feedbackGuard) networkKey(r *http.Request) (string, bool) {
	key, limited := g.addressKey(r)
	if !limited || key == "?" {
		return key, limited
	}
	addr, _ := g.clients.Of(r)
	return ratelimit.NetworkKey(addr), true
}

// addressKey is the bucket of r's client address. Requests of the app's
// backend are not limited: with the server token, or from a trusted
// proxy's address with no X-Forwarded-For header at all (a process on this
// host, by default). Had they been, the backend on the same host and every
// page behind a reverse proxy that does not set X-Forwarded-For would
// share one bucket. A request whose X-Forwarded-For names trusted hosts
// only is limited by the left-most one's bucket, never exempted: a client
// behind a trusted relay that passes its header on instead of appending to
// it could otherwise send "X-Forwarded-For: 127.0.0.1" and be unlimited.
func (g *feedbackGuard) addressKey(r *http.Request) (string, bool) {
	if g.serverToken != "" {
		scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if ok && strings.EqualFold(scheme, "Bearer") &&
			subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), []byte(g.serverToken)) == 1 {
			return "", false
		}
	}
	if g.clients.FromTrustedProxy(r) {
		return "", false
	}
	addr, ok := g.clients.Of(r)
	if !ok {
		// A client that cannot be told: one bucket for all of them.
		return "?", true
	}
	return ratelimit.AddressKey(addr), true
}

// tokenLimiter returns the limit per token as the feedback service asks
// it, nil when there is none.
func (g *feedbackGuard) tokenLimiter() feedback.TokenLimiter {
	if g.perToken == nil {
		return nil
	}
	return &tokenLimiter{g.perToken}
}

// tokenLimiter is a feedback.TokenLimiter.
type tokenLimiter struct{ l *ratelimit.Limiter }

// TokenWait takes one request from key's bucket: 0, or how long to wait.
func (t *tokenLimiter) TokenWait(key string) time.Duration {
	if ok, wait := t.l.Allow(key); !ok {
		return max(wait, time.Nanosecond)
	}
	return 0
}
