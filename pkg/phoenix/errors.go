package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// APIError is a non-2xx answer from Phoenix.
type APIError struct {
	StatusCode int
	// Message is Phoenix's answer text, trimmed. Phoenix answers its own errors in text/plain
	// ("Spans with IDs 0000000000000001 do not exist."); request validation errors come from
	// FastAPI as JSON ({"detail":[{"loc":[...],"msg":...}]}), which is flattened to "loc: msg".
	Message string
	// RetryAfter is the delay asked for by a Retry-After header, 0 if none.
	RetryAfter time.Duration

	method string
	path   string
}

func (e *APIError) Error() string {
	status := strconv.Itoa(e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		status += " " + text
	}
	msg := fmt.Sprintf("phoenix: %s %s: %s", e.method, e.path, status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// transportError is a failure to get an answer at all: connection refused or reset, timeout,
// a body cut short. The request may or may not have reached Phoenix.
type transportError struct {
	method string
	path   string
	err    error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("phoenix: %s %s: %v", e.method, e.path, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// UnreadableAnswerError is a 2xx answer the client could not make sense of: a body that is not
// the JSON expected, too large, or (for annotations) without one id per annotation sent. Phoenix
// did what was asked (sync annotations are stored before the answer is sent); only what it
// returned is lost. See IsUnreadableAnswer.
type UnreadableAnswerError struct {
	// StatusCode is the 2xx status, or 0 when only "some 2xx" is known.
	StatusCode int
	// Err says what was wrong with the answer.
	Err error

	method string
	path   string
}

func (e *UnreadableAnswerError) Error() string {
	status := "2xx"
	if e.StatusCode != 0 {
		status = strconv.Itoa(e.StatusCode)
	}
	return fmt.Sprintf("phoenix: %s %s: %s answer could not be read: %v", e.method, e.path, status, e.Err)
}

func (e *UnreadableAnswerError) Unwrap() error { return e.Err }

// IsUnreadableAnswer reports whether err is a 2xx answer whose body the client could not read
// (not JSON, too large, ids missing). Phoenix accepted the request: for AnnotateSpans and
// AnnotateTraces the annotations are stored as far as anyone can tell, only their ids are
// unknown. Such an error is not retryable: the work is done.
func IsUnreadableAnswer(err error) bool {
	var e *UnreadableAnswerError
	return errors.As(err, &e)
}

// IsSpanNotFound reports whether err is Phoenix's 404: for AnnotateSpans and AnnotateTraces it
// means that Phoenix does not know a span (trace) of the batch yet, typically because the
// feedback arrived before the span was exported or ingested; the whole batch was rejected.
// For SpanAnnotations a 404 means that none of the spans (or not even the project) exist yet.
func IsSpanNotFound(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound
}

// IsRetryable reports whether the request that failed with err may succeed when sent again:
// network errors and timeouts, and the statuses that say "later" (408, 429, 500, 502, 503, 504,
// and 507, Phoenix's "storage limit reached"). A context.Canceled is the caller's decision and
// is not retryable; everything else (400, 401, 403, 404, 422, unreadable 2xx answers) is
// permanent.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		switch apiErr.StatusCode {
		case http.StatusRequestTimeout,
			http.StatusTooManyRequests,
			http.StatusInternalServerError,
			http.StatusBadGateway,
			http.StatusServiceUnavailable,
			http.StatusGatewayTimeout,
			http.StatusInsufficientStorage:
			return true
		}
		return false
	}
	var tErr *transportError
	return errors.As(err, &tErr)
}

// RetryAfter returns the delay Phoenix asked for with Retry-After on the answer that produced
// err, or 0 if there was none.
func RetryAfter(err error) time.Duration {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.RetryAfter
	}
	return 0
}

// maxMessageLen bounds APIError.Message: an error page can be large and ends up in logs.
const maxMessageLen = 1024

// errorMessage turns an error answer's body into APIError.Message.
func errorMessage(body []byte) string {
	msg := strings.TrimSpace(string(body))
	if strings.HasPrefix(msg, "{") {
		if d, ok := validationDetail(body); ok {
			msg = d
		}
	}
	if len(msg) > maxMessageLen {
		cut := maxMessageLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// validationDetail flattens FastAPI's {"detail": "..."} or
// {"detail":[{"loc":["body","data",0,"annotator_kind"],"msg":"Input should be ..."}]}.
func validationDetail(body []byte) (string, bool) {
	var v struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Detail) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(v.Detail, &s) == nil {
		return s, true
	}
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(v.Detail, &items) != nil || len(items) == 0 {
		return "", false
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		loc := make([]string, 0, len(it.Loc))
		for _, l := range it.Loc {
			loc = append(loc, fmt.Sprint(l))
		}
		if len(loc) == 0 {
			parts = append(parts, it.Msg)
			continue
		}
		parts = append(parts, strings.Join(loc, ".")+": "+it.Msg)
	}
	return strings.Join(parts, "; "), true
}
