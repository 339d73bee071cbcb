package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
)

// DefaultFeedbackInflightBytes bounds the bytes of POST /feedback bodies
// being read and handled at once. Each may be up to feedback.MaxBodyBytes;
// without a shared bound, as many of them as there are connections would
// be held at once (feedback.MaxBodyBytes).
const DefaultFeedbackInflightBytes = 16 << 20

// feedbackRoomWait is how long a feedback body waits for room in the
// budget before it is refused.
const feedbackRoomWait = 2 * time.Second

// boundBodies reads a request's body (up to max bytes) before h sees it,
// charging b for it as it arrives and until h returns; when b is spent it
// answers 429 with Retry-After instead, in the feedback API's error shape,
// and when the body stalled while others needed its bytes, 503.
// A body past max is passed on cut at max+1 bytes, for h to refuse as it
// does (413).
func boundBodies(h http.Handler, b *budget.Budget, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		res := b.Reserve()
		defer res.Release()
		// Feedback bodies are handled in milliseconds (up to
		// --feedback-sync-wait when the span is known): a vote from a
		// page waits a moment for room rather than be refused while
		// others flood the API.
		res.SetWait(feedbackRoomWait)
		rc := http.NewResponseController(w)
		res.Track(func() { _ = rc.SetReadDeadline(time.Now()) })
		body, err := budget.ReadAll(r.Body, max, res)
		res.Untrack()
		switch {
		case res.Aborted():
			w.Header().Set("Retry-After", "1")
			writeAPIError(w, http.StatusServiceUnavailable, "the body stopped coming while other requests needed the memory it held; retry")
			return
		case errors.Is(err, budget.ErrSpent):
			w.Header().Set("Retry-After", "1")
			writeAPIError(w, http.StatusTooManyRequests, fmt.Sprintf(
				"the proxy is at its limit of feedback request bytes being handled (%d); retry later", b.Limit()))
			return
		case err != nil:
			writeAPIError(w, http.StatusBadRequest, "cannot read the body: "+err.Error())
			return
		}
		// h reads it again: charged twice, as it is held twice.
		if !res.Grow(int64(len(body))) {
			w.Header().Set("Retry-After", "1")
			writeAPIError(w, http.StatusTooManyRequests, "the proxy is at its limit of feedback request bytes being handled; retry later")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		h.ServeHTTP(w, r)
	})
}

// writeAPIError answers as the feedback API does: {"error":{...}}.
func writeAPIError(w http.ResponseWriter, code int, msg string) {
	type body struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error body `json:"error"`
	}{body{code, msg}})
}
