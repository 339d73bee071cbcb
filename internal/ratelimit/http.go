package ratelimit

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/apierror"
)

// AllowRequest takes one request from key's bucket and returns true, or
// answers w 429 with Retry-After and returns false. Call it once a
// request's key is known to be genuine (a verified token), and write
// nothing to w when it returns false.
func (l *Limiter) AllowRequest(w http.ResponseWriter, key string) bool {
	ok, wait := l.Allow(key)
	if !ok {
		l.refuse(w, wait)
	}
	return ok
}

// Middleware limits the requests to next by the key keyOf returns;
// requests for which it returns false are not limited (a caller already
// trusted, say).
func (l *Limiter) Middleware(next http.Handler, keyOf func(*http.Request) (key string, limited bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key, limited := keyOf(r); limited && !l.AllowRequest(w, key) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers 429 in the feedback API's error shape,
// {"error":{"status":429,"message":...}}, with Retry-After in whole seconds
// (RFC 9110, section 10.2.3), rounded up so that a client that waits as
// told finds a request in its bucket.
func (l *Limiter) refuse(w http.ResponseWriter, wait time.Duration) {
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	apierror.Write(w, http.StatusTooManyRequests, fmt.Sprintf(
		"too many requests from this %s: the limit is %g a second, in bursts of up to %d; retry after %d s",
		l.cfg.Key, l.cfg.Rate, l.cfg.Burst, secs))
}
