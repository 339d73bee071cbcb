package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "ok", cfg: Config{BaseURL: "http://localhost:6006"}},
		{name: "https with prefix and slash", cfg: Config{BaseURL: "https://example.com/phoenix/"}},
		{name: "empty", cfg: Config{}, wantErr: "BaseURL is required"},
		{name: "no scheme", cfg: Config{BaseURL: "localhost:6006"}, wantErr: "absolute http"},
		{name: "relative", cfg: Config{BaseURL: "/v1"}, wantErr: "absolute http"},
		{name: "other scheme", cfg: Config{BaseURL: "grpc://localhost:4317"}, wantErr: "absolute http"},
		{name: "no host", cfg: Config{BaseURL: "http://"}, wantErr: "absolute http"},
		{name: "query", cfg: Config{BaseURL: "http://localhost:6006/?a=b"}, wantErr: "no query"},
		{name: "unparsable", cfg: Config{BaseURL: "http://[::1"}, wantErr: "BaseURL"},
		{name: "bad header name", cfg: Config{BaseURL: "http://x", Headers: map[string]string{"bad name": "v"}}, wantErr: "invalid header name"},
		{name: "bad header value", cfg: Config{BaseURL: "http://x", Headers: map[string]string{"X-A": "a\r\nb"}}, wantErr: "invalid value"},
		{name: "bad api key", cfg: Config{BaseURL: "http://x", APIKey: "k\n"}, wantErr: "APIKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRequestHeaders(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		_, _ = w.Write([]byte(`{"data":[{"id":"U3BhbkFubm90YXRpb246MQ=="}]}`))
	}))
	defer srv.Close()

	c, err := New(Config{
		BaseURL: srv.URL + "/phoenix/",
		APIKey:  "secret-key",
		Headers: map[string]string{"X-Tenant": "acme", "authorization": "Basic ignored"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := c.AnnotateSpans(context.Background(), []SpanAnnotation{feedback("00f067aa0ba902b7", "thumbs-up", 1, "u1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != "U3BhbkFubm90YXRpb246MQ==" {
		t.Errorf("ids = %q", ids)
	}
	checks := map[string]string{
		"method":        got.Method,
		"path":          got.URL.Path,
		"query":         got.URL.RawQuery,
		"Authorization": got.Header.Get("Authorization"),
		"X-Tenant":      got.Header.Get("X-Tenant"),
		"Content-Type":  got.Header.Get("Content-Type"),
	}
	want := map[string]string{
		"method":        "POST",
		"path":          "/phoenix/v1/span_annotations",
		"query":         "sync=true",
		"Authorization": "Bearer secret-key",
		"X-Tenant":      "acme",
		"Content-Type":  "application/json",
	}
	for k, w := range want {
		if checks[k] != w {
			t.Errorf("%s = %q, want %q", k, checks[k], w)
		}
	}
	wantBody := `{"data":[{"span_id":"00f067aa0ba902b7","name":"user feedback","annotator_kind":"HUMAN","result":{"label":"thumbs-up","score":1},"identifier":"u1"}]}`
	if string(body) != wantBody {
		t.Errorf("body = %s\nwant   %s", body, wantBody)
	}
}

func TestNoAuthorizationWithoutKey(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := r.Header["Authorization"]; ok {
			t.Errorf("Authorization sent: %q", h)
		}
		_, _ = w.Write([]byte(`{"data":[]}`))
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	if _, err := c.Spans(context.Background(), "p", SpanQuery{}); err != nil {
		t.Fatal(err)
	}
}

func TestBodyCap(t *testing.T) {
	big := strings.Repeat("x", maxResponseBytes+10)
	t.Run("2xx too large is a permanent error", func(t *testing.T) {
		c := statusServer(t, 200, nil, `{"data":[{"id":"`+big+`"}]}`)
		err := annotateOne(c)
		if err == nil || !strings.Contains(err.Error(), "larger than") || IsRetryable(err) || !IsUnreadableAnswer(err) {
			t.Errorf("err = %v: want a permanent too-large error", err)
		}
	})
	t.Run("error answer too large keeps the status", func(t *testing.T) {
		c := statusServer(t, 503, nil, big)
		err := annotateOne(c)
		apiErr, ok := err.(*APIError)
		if !ok || apiErr.StatusCode != 503 || !IsRetryable(err) {
			t.Fatalf("err = %v: want a retryable 503", err)
		}
		if len(apiErr.Message) > maxMessageLen+len("…") {
			t.Errorf("Message has %d bytes, want at most %d", len(apiErr.Message), maxMessageLen+len("…"))
		}
	})
	t.Run("bad JSON", func(t *testing.T) {
		err := annotateOne(statusServer(t, 200, nil, `<html>`))
		if err == nil || !strings.Contains(err.Error(), "decoding") || IsRetryable(err) {
			t.Errorf("err = %v: want a permanent decoding error", err)
		}
	})
	t.Run("id count mismatch", func(t *testing.T) {
		err := annotateOne(statusServer(t, 200, nil, `{"data":[]}`))
		if err == nil || !strings.Contains(err.Error(), "got 0 ids") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestInputsCheckedWithoutRequest(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	ctx := context.Background()

	tests := []struct {
		name    string
		call    func() error
		wantErr string // "" means no error and no request
	}{
		{name: "no span annotations", call: func() error { _, err := c.AnnotateSpans(ctx, nil); return err }},
		{name: "no trace annotations", call: func() error { _, err := c.AnnotateTraces(ctx, []TraceAnnotation{}); return err }},
		{name: "no span ids", call: func() error { _, err := c.SpanAnnotations(ctx, "p", []string{"", ""}); return err }},
		{name: "empty span id", call: func() error {
			_, err := c.AnnotateSpans(ctx, []SpanAnnotation{{Name: "n", AnnotatorKind: AnnotatorHuman}})
			return err
		}, wantErr: "span annotation 0: span_id is empty"},
		{name: "empty name", call: func() error {
			_, err := c.AnnotateSpans(ctx, []SpanAnnotation{feedback("a", "l", 1, ""), {SpanID: "b", AnnotatorKind: AnnotatorHuman}})
			return err
		}, wantErr: "span annotation 1: name is empty"},
		{name: "bad kind", call: func() error {
			_, err := c.AnnotateTraces(ctx, []TraceAnnotation{{TraceID: "t", Name: "n", AnnotatorKind: "human"}})
			return err
		}, wantErr: `annotator_kind "human"`},
		{name: "empty trace id", call: func() error {
			_, err := c.AnnotateTraces(ctx, []TraceAnnotation{{Name: "n", AnnotatorKind: AnnotatorLLM}})
			return err
		}, wantErr: "trace_id is empty"},
		{name: "empty project", call: func() error { _, err := c.Spans(ctx, " ", SpanQuery{}); return err }, wantErr: "project is empty"},
		{name: "project with slash", call: func() error { _, err := c.SpanAnnotations(ctx, "a/b", []string{"x"}); return err }, wantErr: "cannot contain"},
		{name: "limit too big", call: func() error { _, err := c.Spans(ctx, "p", SpanQuery{Limit: 1001}); return err }, wantErr: "limit 1001"},
		{name: "negative limit", call: func() error { _, err := c.Spans(ctx, "p", SpanQuery{Limit: -1}); return err }, wantErr: "limit -1"},
		{name: "too many span ids", call: func() error {
			ids := make([]string, maxSpanIDs+1)
			for i := range ids {
				ids[i] = fmt.Sprintf("%016x", i)
			}
			_, err := c.SpanAnnotations(ctx, "p", ids)
			return err
		}, wantErr: "at most 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestSpansQuery(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		if r.URL.EscapedPath() != "/v1/projects/my%20project/spans" {
			t.Errorf("path = %q", r.URL.EscapedPath())
		}
		_, _ = w.Write([]byte(`{"data":[{"name":"n","context":{"trace_id":"t","span_id":"s"},"parent_id":null,"span_kind":"LLM","attributes":{"a.b":1}}],"next_cursor":null}`))
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	spans, err := c.Spans(context.Background(), "my project", SpanQuery{TraceID: "t", SpanID: "s", Name: "chat x", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if want := "limit=5&name=chat+x&span_id=s&trace_id=t"; query != want {
		t.Errorf("query = %q, want %q", query, want)
	}
	if len(spans) != 1 || spans[0].ParentID != "" || spans[0].Attributes["a.b"] != float64(1) {
		t.Errorf("spans = %+v", spans)
	}
}

// SpanAnnotations follows next_cursor until Phoenix has no more pages.
func TestSpanAnnotationsPages(t *testing.T) {
	pages := map[string]string{
		"":   `{"data":[{"id":"3","span_id":"s","name":"a"}],"next_cursor":"c2"}`,
		"c2": `{"data":[{"id":"2","span_id":"s","name":"b"}],"next_cursor":"c3"}`,
		"c3": `{"data":[{"id":"1","span_id":"s","name":"c"}],"next_cursor":null}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if got := q["span_ids"]; len(got) != 2 || got[0] != "s" || got[1] != "t" {
			t.Errorf("span_ids = %q, want [s t]", got)
		}
		if q.Get("limit") != "1000" {
			t.Errorf("limit = %q", q.Get("limit"))
		}
		page, ok := pages[q.Get("cursor")]
		if !ok {
			w.WriteHeader(422)
			return
		}
		_, _ = w.Write([]byte(page))
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	got, err := c.SpanAnnotations(context.Background(), "p", []string{"s", "t", "s"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if len(got) != 3 || got[0].ID != "3" || got[2].ID != "1" {
		t.Errorf("got %s", b)
	}
}

func TestSpanAnnotationsRepeatedCursor(t *testing.T) {
	c := statusServer(t, 200, nil, `{"data":[],"next_cursor":"same"}`)
	_, err := c.SpanAnnotations(context.Background(), "p", []string{"s"})
	if err == nil || !strings.Contains(err.Error(), "repeats") {
		t.Errorf("err = %v, want a repeated-cursor error", err)
	}
}

// A 2xx answer the client cannot read still says that Phoenix did the work: with sync=true it
// stores the annotations before it answers. IsUnreadableAnswer tells this apart from a refusal,
// so that a caller does not report a stored annotation as failed.
func TestUnreadableAnswer(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantMsg string // "" means IsUnreadableAnswer is false
	}{
		{name: "HTML from a proxy in front of Phoenix", status: 200, body: `<html>ok</html>`,
			wantMsg: "POST /v1/span_annotations: 200 answer could not be read: decoding: invalid character '<'"},
		{name: "201 cut-off JSON", status: 201, body: `{"data":[{"id":"x"`,
			wantMsg: "201 answer could not be read: decoding: unexpected end of JSON input"},
		{name: "what sync=false answers", status: 200, body: `{"data":[]}`,
			wantMsg: "2xx answer could not be read: sent 1 annotations, got 0 ids back"},
		{name: "empty id", status: 200, body: `{"data":[{"id":""}]}`, wantMsg: "answer 0 has no id"},
		{name: "empty body", status: 204, body: ``, wantMsg: "204 answer could not be read"},
		{name: "readable", status: 200, body: `{"data":[{"id":"U3BhbkFubm90YXRpb246MQ=="}]}`},
		{name: "a refusal is not an answer", status: 422, body: `{"detail":"bad"}`},
		{name: "nor is a 404", status: 404, body: `Spans with IDs 00f067aa0ba902b7 do not exist.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := annotateOne(statusServer(t, tt.status, http.Header{"Content-Type": {"text/html"}}, tt.body))
			if got := IsUnreadableAnswer(err); got != (tt.wantMsg != "") {
				t.Fatalf("IsUnreadableAnswer(%v) = %v, want %v", err, got, !got)
			}
			if tt.wantMsg == "" {
				return
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want one containing %q", err, tt.wantMsg)
			}
			var ue *UnreadableAnswerError
			if !errors.As(err, &ue) || (ue.StatusCode != 0 && ue.StatusCode != tt.status) || ue.Err == nil {
				t.Errorf("err = %#v: want an *UnreadableAnswerError with status %d or 0 and a cause", err, tt.status)
			}
			if IsRetryable(err) || IsSpanNotFound(err) {
				t.Errorf("err = %v: an unreadable 2xx is neither retryable nor span-not-found", err)
			}
			if !IsUnreadableAnswer(fmt.Errorf("feedback: %w", err)) {
				t.Error("classification lost through %w")
			}
		})
	}
	if IsUnreadableAnswer(nil) {
		t.Error("IsUnreadableAnswer(nil)")
	}
}
