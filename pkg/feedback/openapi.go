package feedback

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"time"
)

// openAPIDocument is the OpenAPI 3.1 document of the feedback API. It is
// kept by hand: openapi_test.go fails when a route of Handler or a field of
// the API's types is missing from it, and the e2e suite (e2e/openapi_test.go)
// runs schemathesis against a whole proxy to check that the server answers
// as it says. When the two disagree, the document is fixed unless the
// server is wrong.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPIETag is a strong validator of the document: it changes exactly
// when the document does.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDocument)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}()

// openAPIHandler serves the OpenAPI document of the feedback API, with an
// ETag; a client revalidates it (no-cache) and gets 304 while it has not
// changed, so that an upgrade of the proxy reaches generated clients and
// test tools at once.
func openAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("ETag", openAPIETag)
		h.Set("Cache-Control", "no-cache")
		// ServeContent answers If-None-Match and HEAD; the zero time leaves
		// Last-Modified out, the ETag is the validator.
		http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(openAPIDocument))
	})
}
