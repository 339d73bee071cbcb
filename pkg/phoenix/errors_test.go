package phoenix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// statusServer answers every request with status, the header h and body.
func statusServer(t *testing.T, status int, h http.Header, body string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func annotateOne(c *Client) error {
	_, err := c.AnnotateSpans(context.Background(), []SpanAnnotation{feedback("00f067aa0ba902b7", "thumbs-up", 1, "")})
	return err
}

func TestStatusClassification(t *testing.T) {
	tests := []struct {
		status    int
		retryable bool
	}{
		{400, false}, {401, false}, {403, false}, {404, false}, {409, false}, {413, false}, {415, false}, {422, false},
		{408, true}, {429, true}, {500, true}, {502, true}, {503, true}, {504, true}, {507, true},
		{501, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			err := annotateOne(statusServer(t, tt.status, nil, "  nope \n"))
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if apiErr.StatusCode != tt.status || apiErr.Message != "nope" {
				t.Errorf("APIError = %+v, want status %d, message %q", apiErr, tt.status, "nope")
			}
			if got := IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			if got := IsSpanNotFound(err); got != (tt.status == 404) {
				t.Errorf("IsSpanNotFound = %v", got)
			}
			// Wrapping by a caller keeps the classification.
			if IsRetryable(fmt.Errorf("feedback: %w", err)) != tt.retryable {
				t.Error("classification lost through %w")
			}
		})
	}
}

func TestRetryAfterHeader(t *testing.T) {
	t.Run("429 seconds", func(t *testing.T) {
		err := annotateOne(statusServer(t, 429, http.Header{"Retry-After": {"3"}}, "slow down"))
		if !IsRetryable(err) || RetryAfter(err) != 3*time.Second {
			t.Errorf("IsRetryable = %v, RetryAfter = %v; want true, 3s (err %v)", IsRetryable(err), RetryAfter(err), err)
		}
	})
	t.Run("503 HTTP date", func(t *testing.T) {
		at := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
		err := annotateOne(statusServer(t, 503, http.Header{"Retry-After": {at}}, ""))
		if d := RetryAfter(err); !IsRetryable(err) || d < 58*time.Minute || d > time.Hour {
			t.Errorf("IsRetryable = %v, RetryAfter = %v; want true, about 1h", IsRetryable(err), d)
		}
	})
	t.Run("none", func(t *testing.T) {
		err := annotateOne(statusServer(t, 503, nil, ""))
		if RetryAfter(err) != 0 {
			t.Errorf("RetryAfter = %v, want 0", RetryAfter(err))
		}
	})
	t.Run("not an APIError", func(t *testing.T) {
		if RetryAfter(errors.New("x")) != 0 || RetryAfter(nil) != 0 {
			t.Error("want 0")
		}
	})
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{name: "plain text trimmed", body: "Spans with IDs 00000000deadbeef do not exist.\n", want: "Spans with IDs 00000000deadbeef do not exist."},
		// What Phoenix answered to annotator_kind "ROBOT" (FastAPI validation).
		{
			name: "validation list",
			body: `{"detail":[{"type":"literal_error","loc":["body","data",0,"annotator_kind"],"msg":"Input should be 'LLM', 'CODE' or 'HUMAN'","input":"ROBOT","ctx":{"expected":"'LLM', 'CODE' or 'HUMAN'"}}]}`,
			want: "body.data.0.annotator_kind: Input should be 'LLM', 'CODE' or 'HUMAN'",
		},
		{name: "detail string", body: `{"detail":"Not authenticated"}`, want: "Not authenticated"},
		{name: "other JSON kept", body: `{"error":"x"}`, want: `{"error":"x"}`},
		{name: "empty", body: "", want: ""},
		{name: "long cut on a rune", body: strings.Repeat("é", maxMessageLen), want: strings.Repeat("é", maxMessageLen/2) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorMessage([]byte(tt.body)); got != tt.want {
				t.Errorf("errorMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	t.Run("connection refused is retryable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		c, _ := New(Config{BaseURL: "http://" + addr})
		err = annotateOne(c)
		if err == nil || !IsRetryable(err) || IsSpanNotFound(err) {
			t.Errorf("err = %v: want retryable", err)
		}
	})
	t.Run("client timeout is retryable", func(t *testing.T) {
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(block) })
		c, _ := New(Config{BaseURL: srv.URL, HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
		if err := annotateOne(c); !IsRetryable(err) {
			t.Errorf("err = %v: want retryable", err)
		}
	})
	t.Run("caller cancel is not retryable", func(t *testing.T) {
		c := statusServer(t, 200, nil, `{"data":[{"id":"x"}]}`)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.AnnotateSpans(ctx, []SpanAnnotation{feedback("00f067aa0ba902b7", "thumbs-up", 1, "")})
		if err == nil || IsRetryable(err) || !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v: want context.Canceled, not retryable", err)
		}
	})
	t.Run("nil", func(t *testing.T) {
		if IsRetryable(nil) || IsSpanNotFound(nil) {
			t.Error("nil error classified")
		}
	})
}
