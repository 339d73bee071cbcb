package cors

import (
	"net/http"
	"strings"
)

// SameHost reports whether r comes from a page of the host it was sent to:
// it carries one Origin header, an http or https origin whose host and port
// are those of r's Host, or of the left-most X-Forwarded-Host, which a
// reverse proxy that rewrites Host sets. A Host without a port is the
// default port of the origin's scheme. The schemes are not compared: a
// reverse proxy that ends TLS passes an https page's request on in plain
// HTTP.
//
// Without an allow-list, this is what keeps other sites' pages from
// writing: a browser sends a page's "simple" requests (a text/plain POST,
// navigator.sendBeacon, fetch with mode "no-cors", a form) to any host
// without a preflight, with the page's Origin. A page cannot set
// X-Forwarded-Host on such a request: it is no CORS-safelisted header, and
// a request carrying it is preflighted, which no allow-list answers.
func SameHost(r *http.Request) bool {
	values := r.Header.Values("Origin")
	if len(values) != 1 {
		return false
	}
	origin, err := NormalizeOrigin(values[0])
	if err != nil {
		return false
	}
	scheme, _, _ := strings.Cut(origin, "://")
	if scheme != "http" && scheme != "https" {
		return false
	}
	hosts := []string{r.Host}
	if fwd := r.Header.Values("X-Forwarded-Host"); len(fwd) > 0 {
		first, _, _ := strings.Cut(fwd[0], ",")
		hosts = append(hosts, strings.TrimSpace(first))
	}
	for _, h := range hosts {
		// The host read as an origin of the page's scheme: normalized the
		// same way (case, punycode, IPv6 form, the default port dropped).
		if h != "" && !strings.ContainsAny(h, "/?#@\\") {
			if n, err := NormalizeOrigin(scheme + "://" + h); err == nil && n == origin {
				return true
			}
		}
	}
	return false
}
