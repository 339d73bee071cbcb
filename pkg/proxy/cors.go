package proxy

import (
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
// request from a page (one with an Origin) to mint a token. With no
// allowed origins it returns h: no CORS header, no check.
func (g *feedbackGuard) withCORS(h http.Handler) http.Handler {
	if !g.cors.Enabled() {
		return h
	}
	withCORS := g.cors.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
