package widget

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"
)

//go:embed widget.js
var script []byte

// MaxAge is how long a browser may use widget.js without asking again; after
// it, a request with If-None-Match costs a 304. Short, so that an upgrade of
// the proxy reaches the pages that include the script within minutes.
const MaxAge = 5 * time.Minute

var cacheControl = "public, max-age=" + strconv.Itoa(int(MaxAge/time.Second))

// etag is a strong validator of the embedded bytes: it changes exactly
// when the script does.
var etag = func() string {
	sum := sha256.Sum256(script)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}()

// Script returns the bytes of widget.js, for a caller that serves or
// inlines it some other way.
func Script() []byte { return bytes.Clone(script) }

// Handler serves widget.js to GET and HEAD, wherever it is mounted
// (GET /widget.js on the feedback listener), answering a matching
// If-None-Match with 304 and other methods with 405. It is safe for
// concurrent use.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, r.Method+" /widget.js: expected GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	// text/javascript is the one MIME type for JavaScript (RFC 9239); with
	// nosniff, a browser runs the script only with it.
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", cacheControl)
	h.Set("ETag", etag)
	// The script is public and carries no secret: any page may load it, also
	// with <script crossorigin> (for Subresource Integrity), and a page that
	// isolates itself (Cross-Origin-Embedder-Policy: require-corp) too. This
	// is not the feedback API's CORS, which stays an allow-list: the proxy's
	// CORS guard lets GET and HEAD /widget.js through from any origin,
	// leaving these headers as they are.
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// ServeContent answers If-None-Match, Range and HEAD; the zero time
	// leaves Last-Modified out, the ETag is the validator.
	http.ServeContent(w, r, "widget.js", time.Time{}, bytes.NewReader(script))
}
