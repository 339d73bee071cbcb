// Package retryafter reads the HTTP Retry-After header (RFC 9110, section
// 10.2.3), which both Phoenix's REST API and OTLP/HTTP upstreams send with
// 429 and 503.
package retryafter

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Parse returns the delay v asks for: delay-seconds or an HTTP date, relative
// to now. Anything else, a date in the past, or a negative delay is 0.
func Parse(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Clamp, or a huge value would overflow into a negative delay.
		return time.Duration(min(secs, math.MaxInt64/int64(time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
