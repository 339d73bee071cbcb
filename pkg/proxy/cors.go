package proxy

import (
	"fmt"
	"net/http"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/apierror"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/cors"
)

// What a page of an allowed origin may do with the feedback API: POST a
// vote and GET a state, with a JSON body and a bearer token, and read
// Retry-After when it is told to slow down. Never with credentials
// (cookies): the API is called with a token the page holds.
var (
	corsMethods = []string{http.MethodPost, http.MethodGet}
	corsHeaders = []string{"Content-Type", "Authorization"}
	corsExposed = []string{"Retry-After"}
)

// mintPath is the one feedback route no page may call: minting takes the
// server token, which a page must never hold.
const mintPath = "/feedback/tokens"

// widgetPath is the one route every page may read, whatever the policy:
// pkg/widget serves a public script, with Access-Control-Allow-Origin: *
// of its own, so that pages can load it with <script crossorigin>
// (Subresource Integrity). It carries no credential and writes nothing.
const widgetPath = "/widget.js"

// refusedCORSOff is the metric's reason for a write of another host's page
// when no origin is allowed.
const refusedCORSOff = "cors_off"

func newCORS(origins []string, m *guardMetrics) (*cors.Policy, error) {
	return cors.New(cors.Config{
		AllowedOrigins: origins,
		AllowedMethods: corsMethods,
		AllowedHeaders: corsHeaders,
		ExposedHeaders: corsExposed,
		OnRefuse:       func(reason string) { m.refused.WithLabelValues("cors_" + reason).Inc() },
	})
}

// withCORS answers the CORS protocol for h's routes, and refuses any
// request from a page (one with an Origin) to mint a token. GET and HEAD
// /widget.js pass, for any page (see widgetPath).
//
// With no allowed origins, no CORS header is sent, and a request other
// than GET or HEAD that carries an Origin of another host than the one it
// was sent to (cors.SameHost) is refused 403: a browser sends another
// site's "simple" requests (a text/plain POST, a beacon) without asking,
// and an open API on localhost would otherwise take a vote from any page
// its user visits. Pages of the API's own host, also behind a reverse
// proxy, and servers (which send no Origin) pass.
func (g *feedbackGuard) withCORS(h http.Handler) http.Handler {
	if !g.cors.Enabled() {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead &&
				len(r.Header.Values("Origin")) > 0 && !cors.SameHost(r) {
				g.metrics.refused.WithLabelValues(refusedCORSOff).Inc()
				apierror.Write(w, http.StatusForbidden, fmt.Sprintf("pages of the origin %.100q may not call this API: "+
					"no origin is allowed but the API's own host (%.100q); list the page's origin in the proxy's CORS allowed origins "+
					"(--cors-allowed-origins), or have the page's own host pass its requests on", r.Header.Get("Origin"), r.Host))
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	withCORS := g.cors.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == widgetPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == mintPath && len(r.Header.Values("Origin")) > 0 {
			w.Header().Add("Vary", "Origin")
			g.metrics.refused.WithLabelValues("cors_mint").Inc()
			apierror.Write(w, http.StatusForbidden, "a page may not mint tokens: "+mintPath+
				" takes the server token, which only the app's backend holds; have the backend mint the token and hand it to the page")
			return
		}
		withCORS.ServeHTTP(w, r)
	})
}
