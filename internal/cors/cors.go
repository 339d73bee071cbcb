// Package cors answers the CORS protocol of the Fetch standard
// (https://fetch.spec.whatwg.org/#http-cors-protocol) for an allow-list of
// origins, so that pages of those origins may call an API from the
// browser, and never with credentials: the API is called with a bearer
// token the page holds, not with the cookies of whoever browses it.
//
// A request with an Origin not on the list is refused, 403, whether or
// not it was preflighted. A browser would block a page from reading the
// answer anyway, but a "simple" request (navigator.sendBeacon's text/plain
// POST, a form) is sent without a preflight, and would otherwise be
// handled: refusing it keeps pages of other origins from writing, not only
// from reading. Requests without an Origin (servers, same-origin GETs) pass.
//
// With no allow-list the policy is off; SameHost then tells a page's
// request to its own host from another site's, for a caller that still
// refuses other sites' writes.
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/apierror"
)

// Config is a CORS policy.
type Config struct {
	// AllowedOrigins are the origins whose pages may call, each
	// scheme://host[:port] as a browser sends it in Origin
	// ("https://app.example.com"); see NormalizeOrigin. A lone "*" lets
	// any origin call, which is safe only because credentials are never
	// allowed. Empty: the policy is off, Handler returns its handler as it
	// is, and no CORS header is ever sent.
	AllowedOrigins []string
	// AllowedMethods are the methods a preflight allows ("POST", "GET").
	AllowedMethods []string
	// AllowedHeaders are the request headers a preflight allows beyond the
	// CORS-safelisted ones ("Content-Type", "Authorization").
	AllowedHeaders []string
	// ExposedHeaders are the response headers a page may read beyond the
	// CORS-safelisted ones ("Retry-After").
	ExposedHeaders []string
	// MaxAge is how long a browser may keep a preflight's answer; zero
	// means DefaultMaxAge. Chromium keeps it at most 2 hours, Firefox 24.
	MaxAge time.Duration
	// OnRefuse, if set, is told of every request refused, by reason:
	// "origin" (not on the list, or not an origin), "method" or "headers"
	// (a preflight asking for more than the policy allows).
	OnRefuse func(reason string)
}

// DefaultMaxAge is Config.MaxAge's default: a browser preflights a page's
// requests again at most every 10 minutes, and a change of the policy
// reaches open pages within that.
const DefaultMaxAge = 10 * time.Minute

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.OnRefuse == nil {
		c.OnRefuse = func(string) {}
	}
	return c
}

// Policy answers the CORS protocol for a Config. Safe for concurrent use.
type Policy struct {
	any      bool
	origins  map[string]bool // normalized
	methods  []string
	headers  map[string]bool // canonical
	allowM   string          // Access-Control-Allow-Methods
	allowH   string          // Access-Control-Allow-Headers
	expose   string          // Access-Control-Expose-Headers
	maxAge   string          // Access-Control-Max-Age
	onRefuse func(string)
}

// New checks cfg and returns its policy.
func New(cfg Config) (*Policy, error) {
	cfg = cfg.withDefaults()
	p := &Policy{origins: map[string]bool{}, headers: map[string]bool{}, onRefuse: cfg.OnRefuse}
	var errs []error
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			p.any = true
			continue
		}
		n, err := NormalizeOrigin(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.origins[n] = true
	}
	if p.any && len(cfg.AllowedOrigins) > 1 {
		errs = append(errs, errors.New(`"*" allows every origin: give it alone, or list origins without it`))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, m := range cfg.AllowedMethods {
		p.methods = append(p.methods, strings.ToUpper(m))
	}
	for _, h := range cfg.AllowedHeaders {
		p.headers[http.CanonicalHeaderKey(h)] = true
	}
	p.allowM = strings.Join(p.methods, ", ")
	p.allowH = strings.Join(cfg.AllowedHeaders, ", ")
	p.expose = strings.Join(cfg.ExposedHeaders, ", ")
	p.maxAge = strconv.FormatInt(int64(cfg.MaxAge/time.Second), 10)
	return p, nil
}

// Enabled reports whether the policy allows any origin at all.
func (p *Policy) Enabled() bool { return p.any || len(p.origins) > 0 }

// Handler answers preflights itself, refuses requests from origins not
// allowed, and adds the CORS headers to the answers next gives the others.
// When the policy is off, it returns next.
func (p *Policy) Handler(next http.Handler) http.Handler {
	if !p.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on Origin, with or without one: a cache must
		// not give one origin's answer to another (Fetch, section 3.2.5).
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" && len(r.Header.Values("Origin")) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		allowed, ok := p.allow(origin)
		if !ok {
			p.refuse(w, "origin", p.originMessage(origin))
			return
		}
		if !preflight {
			h.Set("Access-Control-Allow-Origin", allowed)
			if p.expose != "" {
				h.Set("Access-Control-Expose-Headers", p.expose)
			}
			next.ServeHTTP(w, r)
			return
		}
		if m := r.Header.Get("Access-Control-Request-Method"); !slices.Contains(p.methods, m) {
			p.refuse(w, "method", fmt.Sprintf("a page may call this API with %s, not %.40q", p.allowM, m))
			return
		}
		for _, name := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
			if name = strings.TrimSpace(name); name != "" && !p.headers[http.CanonicalHeaderKey(name)] {
				p.refuse(w, "headers", fmt.Sprintf("a page may send this API the headers %s, not %.40q", p.allowH, name))
				return
			}
		}
		h.Set("Access-Control-Allow-Origin", allowed)
		h.Set("Access-Control-Allow-Methods", p.allowM)
		h.Set("Access-Control-Allow-Headers", p.allowH)
		h.Set("Access-Control-Max-Age", p.maxAge)
		w.WriteHeader(http.StatusNoContent)
	})
}

// allow returns the Access-Control-Allow-Origin for origin, and whether it
// is allowed.
func (p *Policy) allow(origin string) (string, bool) {
	if p.any {
		return "*", true
	}
	if p.origins[origin] {
		return origin, true
	}
	// Browsers send origins normalized already; other clients may not.
	if n, err := NormalizeOrigin(origin); err == nil && p.origins[n] {
		return n, true
	}
	return "", false
}

func (p *Policy) originMessage(origin string) string {
	if _, err := NormalizeOrigin(origin); err != nil {
		return fmt.Sprintf("the Origin header %.100q is not an origin (scheme://host[:port])", origin)
	}
	return fmt.Sprintf("pages of the origin %.100q may not call this API: it is not on the proxy's list of allowed origins", origin)
}

// refuse answers 403. No Access-Control-Allow-Origin goes with it, so a
// page cannot read it, but it shows in the browser's network panel.
func (p *Policy) refuse(w http.ResponseWriter, reason, msg string) {
	p.onRefuse(reason)
	apierror.Write(w, http.StatusForbidden, msg)
}

// NormalizeOrigin returns s as a browser serializes an origin in the
// Origin header (RFC 6454, section 6.1): scheme://host[:port], scheme and
// host in lower case, the host in ASCII (punycode), without the scheme's
// default port. A trailing "/" is dropped; a path, query, fragment, user,
// wildcard or "null" is an error that says so.
func NormalizeOrigin(s string) (string, error) {
	bad := func(why string) error { return fmt.Errorf("origin %q: %s", s, why) }
	switch {
	case s == "null":
		return "", bad("sandboxed frames and local files send null, which any page can make itself send; list real origins")
	case strings.Contains(s, "*"):
		return "", bad("wildcards in an origin are not supported; list each origin, or give a lone * for any")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "", bad("expected scheme://host[:port], e.g. https://app.example.com")
	}
	if u.User != nil {
		return "", bad("expected no user name or password")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", bad("expected no path, query or fragment: an origin is scheme://host[:port]")
	}
	host := strings.ToLower(u.Hostname())
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		// The URL standard's serialization: compressed, in brackets.
		host = "[" + ip.String() + "]"
	} else if !isASCII(host) {
		// Browsers send an internationalized name in punycode.
		if host, err = idna.Lookup.ToASCII(host); err != nil {
			return "", bad("the host is not a valid host name")
		}
	}
	if host == "" {
		return "", bad("expected a host")
	}
	origin := strings.ToLower(u.Scheme) + "://" + host
	if ps := u.Port(); ps != "" {
		port, err := strconv.Atoi(ps)
		if err != nil || port < 1 || port > 65535 {
			return "", bad("expected a port from 1 to 65535")
		}
		if !(port == 80 && u.Scheme == "http") && !(port == 443 && u.Scheme == "https") {
			origin += ":" + strconv.Itoa(port)
		}
	}
	return origin, nil
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ParseOrigins reads a comma-separated list of origins, as a flag or an
// environment variable gives it, normalized; empty entries are skipped.
func ParseOrigins(list string) ([]string, error) {
	var out []string
	var errs []error
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
		case o == "*":
			out = append(out, o)
		default:
			n, err := NormalizeOrigin(o)
			errs = append(errs, err)
			out = append(out, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if slices.Contains(out, "*") && len(out) > 1 {
		return nil, errors.New(`"*" allows every origin: give it alone, or list origins without it`)
	}
	return out, nil
}
