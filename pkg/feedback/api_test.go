package feedback_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// serve sends one request to the service's API.
func (h *harness) serve(method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.svc.Handler().ServeHTTP(rec, req)
	return rec
}

// decode decodes rec's JSON body into a generic value.
func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, rec.Body)
	}
	return v
}

// apiErr returns the field and message of an error answer.
func apiErr(t *testing.T, rec *httptest.ResponseRecorder) (field, msg string) {
	t.Helper()
	v := decode(t, rec)
	e, ok := v["error"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no error object: %s", rec.Body)
	}
	if int(e["status"].(float64)) != rec.Code {
		t.Errorf("error.status = %v, HTTP status %d", e["status"], rec.Code)
	}
	field, _ = e["field"].(string)
	msg, _ = e["message"].(string)
	return field, msg
}

func apiConfig() feedback.Config {
	cfg := testConfig()
	cfg.SyncWait = 2 * time.Second
	return cfg
}

func TestAPIPost(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*feedback.Config)
		body  string
		check func(t *testing.T, h *harness, rec *httptest.ResponseRecorder)
	}{
		{
			name: "one object, span known: 202 annotated",
			body: `{"response_id":"chatcmpl-1","thumbs":"up","identifier":"user-7","explanation":"spot on"}`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusAccepted {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				var st feedback.Status
				if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
					t.Fatal(err)
				}
				want := feedback.Status{
					ResponseID: "chatcmpl-1", Name: "user feedback", Identifier: "user-7", Target: feedback.TargetSpan, State: feedback.Annotated,
					TraceID: span(1).TraceID.String(), SpanID: span(1).SpanID.String(), Project: "support",
					SpanName: "ChatCompletion", AnnotationID: "ann-1", Attempts: 1,
					ReceivedAt: st.ReceivedAt, UpdatedAt: st.ReceivedAt,
				}
				if st != want {
					t.Errorf("status\n got %+v\nwant %+v", st, want)
				}
				if c := h.ann.Calls(); len(c) != 1 || *c[0].ann.Result.Explanation != "spot on" {
					t.Errorf("calls = %+v", c)
				}
			},
		},
		{
			name: "one object, span unknown: 202 pending",
			body: `{"response_id":"chatcmpl-later","label":"wrong answer","score":0.25}`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				v := decode(t, rec)
				if rec.Code != http.StatusAccepted || v["state"] != "pending" || v["span_id"] != nil || v["attempts"] != 0.0 {
					t.Fatalf("status %d: %v", rec.Code, v)
				}
			},
		},
		{
			name: "batch: 202 with items, accepted and rejected",
			body: `[{"response_id":"chatcmpl-1","thumbs":"up","identifier":"a"}, {"response_id":"chatcmpl-later","thumbs":"down"}]`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				v := decode(t, rec)
				if rec.Code != http.StatusAccepted || v["accepted"] != 2.0 || v["rejected"] != 0.0 {
					t.Fatalf("status %d: %v", rec.Code, v)
				}
				items := v["items"].([]any)
				if len(items) != 2 {
					t.Fatalf("items = %v", items)
				}
				for i, want := range []string{"annotated", "pending"} {
					it := items[i].(map[string]any)
					if it["index"] != float64(i) || it["state"] != want || it["error"] != nil {
						t.Errorf("item %d = %v, want state %s", i, it, want)
					}
				}
			},
		},
		{
			name: "batch with one bad item: the good ones are accepted",
			body: `[{"response_id":"chatcmpl-1","thumbs":"up"}, {"response_id":"chatcmpl-1","thumbs":"sideways"}, {"response_id":"r2","score":1}]`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				v := decode(t, rec)
				if rec.Code != http.StatusAccepted || v["accepted"] != 2.0 || v["rejected"] != 1.0 {
					t.Fatalf("status %d: %v", rec.Code, v)
				}
				items := v["items"].([]any)
				bad := items[1].(map[string]any)
				e, _ := bad["error"].(map[string]any)
				if bad["index"] != 1.0 || bad["state"] != nil || e["field"] != "[1].thumbs" || !strings.Contains(e["message"].(string), `expected "up" or "down"`) {
					t.Errorf("bad item = %v", bad)
				}
				if items[2].(map[string]any)["state"] != "pending" || h.svc.Lookup("r2") == nil {
					t.Errorf("good item after the bad one: %v", items[2])
				}
			},
		},
		{
			name: "batch of bad items: 400 naming each",
			body: `[{"response_id":""}, 7]`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				v := decode(t, rec)
				if rec.Code != http.StatusBadRequest || v["accepted"] != 0.0 || v["rejected"] != 2.0 {
					t.Fatalf("status %d: %v", rec.Code, v)
				}
				items := v["items"].([]any)
				for i, want := range []string{"[0].response_id", "[1]"} {
					e := items[i].(map[string]any)["error"].(map[string]any)
					if e["field"] != want {
						t.Errorf("item %d error = %v, want field %s", i, e, want)
					}
				}
				if h.svc.Pending() != 0 {
					t.Error("a refused batch left feedback pending")
				}
			},
		},
		{
			name: "ErrFull: 429 with Retry-After",
			cfg:  func(c *feedback.Config) { c.MaxPending = 4 },
			body: `[{"response_id":"a","thumbs":"up"}, {"response_id":"b","thumbs":"up"}]`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusAccepted {
					t.Fatalf("the first batch: %d %s", rec.Code, rec.Body)
				}
				rec = h.serve("POST", "/feedback", `[{"response_id":"c","thumbs":"up"}, {"response_id":"d","thumbs":"up"}, {"response_id":"e","thumbs":"up"}]`)
				_, msg := apiErr(t, rec)
				if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || !strings.Contains(msg, "retry later") {
					t.Fatalf("status %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
				}
				if h.svc.Pending() != 2 {
					t.Errorf("%d pending, want the first batch's 2: a refused batch leaves nothing", h.svc.Pending())
				}
			},
		},
		{
			name: "ErrFullBytes: a batch past MaxBytes, 429 saying bytes, nothing accepted",
			cfg:  func(c *feedback.Config) { c.MaxBytes = 1 << 20 },
			body: fullBatch(25),
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusAccepted {
					t.Fatalf("the first batch: %d %s", rec.Code, rec.Body)
				}
				rec = h.serve("POST", "/feedback", strings.ReplaceAll(fullBatch(25), `"response_id":"r`, `"response_id":"s`))
				_, msg := apiErr(t, rec)
				if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" ||
					msg != "the feedback pending holds the 1048576 bytes of memory this proxy keeps for it; retry later" {
					t.Fatalf("status %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
				}
				if h.svc.Pending() != 25 {
					t.Errorf("%d pending, want the first batch's 25", h.svc.Pending())
				}
			},
		},
		{
			name: "a batch that could never fit: 413, not a 429 to retry forever",
			cfg:  func(c *feedback.Config) { c.MaxPending = 2 },
			body: `[{"response_id":"a","thumbs":"up"}, {"response_id":"b","thumbs":"up"}, {"response_id":"c","thumbs":"up"}]`,
			check: func(t *testing.T, h *harness, rec *httptest.ResponseRecorder) {
				_, msg := apiErr(t, rec)
				if rec.Code != http.StatusRequestEntityTooLarge || rec.Header().Get("Retry-After") != "" || !strings.Contains(msg, "send smaller batches") {
					t.Fatalf("status %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
				}
				if h.svc.Pending() != 0 {
					t.Error("a refused batch left feedback pending")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := apiConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			inBubble(t, cfg, []answer{accept}, func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-1", 1)
				tc.check(t, h, h.serve("POST", "/feedback", tc.body))
			})
		})
	}
}

// fullBatch is a batch of n feedbacks, each with metadata at the limit.
func fullBatch(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"response_id":"r%d","thumbs":"up","metadata":{"blob":"%s"}}`, i, strings.Repeat("x", feedback.MaxMetadataBytes-11))
	}
	return "[" + strings.Join(items, ",") + "]"
}

func TestAPIBadInput(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name      string
		body      string
		wantCode  int    // 0 means 400
		wantField string // "" means none: the body as a whole is wrong
		wantMsg   string
	}{
		{"unknown field", `{"response_id":"r","thumbs":"up","rating":5}`, 0, "rating", "unknown field; expected response_id, thumbs"},
		{"a field in another case", `{"RESPONSE_ID":"r","thumbs":"up"}`, 0, "RESPONSE_ID", "unknown field; expected response_id, thumbs"},
		{"score not a number", `{"response_id":"r","score":"x"}`, 0, "score", "expected a finite number, got string"},
		{"thumbs not a string", `{"response_id":"r","thumbs":1}`, 0, "thumbs", "expected a string, got number"},
		{"metadata not an object", `{"response_id":"r","thumbs":"up","metadata":[1]}`, 0, "metadata", "expected a JSON object"},
		{"non-finite score", `{"response_id":"r","score":1e999}`, 0, "score", "expected a finite number"},
		{"empty response_id", `{"response_id":"","thumbs":"up"}`, 0, "response_id", "required: the provider's response id"},
		{"no response_id", `{"thumbs":"up"}`, 0, "response_id", "required"},
		{"over-long response_id", `{"response_id":"` + long(257) + `","thumbs":"up"}`, 0, "response_id", "at most 256 bytes, got 257"},
		{"over-long explanation", `{"response_id":"r","explanation":"` + long(16<<10+1) + `"}`, 0, "explanation", "at most 16384 bytes, got 16385"},
		{"over-long identifier", `{"response_id":"r","thumbs":"up","identifier":"` + long(257) + `"}`, 0, "identifier", "at most 256 bytes"},
		{"invalid UTF-8 in explanation", "{\"response_id\":\"r\",\"explanation\":\"caf\xe9\"}", 0, "explanation", "expected valid UTF-8 text"},
		{"metadata over 16 KiB", `{"response_id":"r","thumbs":"up","metadata":{"blob":"` + long(16<<10-11+1) + `"}}`, 0, "metadata", "at most 16384 bytes as JSON, got 16385"},
		{"invalid UTF-8 in metadata", "{\"response_id\":\"r\",\"thumbs\":\"up\",\"metadata\":{\"k\":\"\xff\"}}", 0, "metadata", "expected valid UTF-8 text"},
		{"thumbs sideways", `{"response_id":"r","thumbs":"sideways"}`, 0, "thumbs", `expected "up" or "down", got "sideways"`},
		{"thumbs with label", `{"response_id":"r","thumbs":"up","label":"good"}`, 0, "thumbs", "either thumbs or label/score"},
		{"thumbs with score", `{"response_id":"r","thumbs":"down","score":0}`, 0, "thumbs", "either thumbs or label/score"},
		{"nothing to say", `{"response_id":"r","identifier":"u"}`, 0, "thumbs", "at least one of thumbs, label, score, explanation or comment"},
		{"name note", `{"response_id":"r","thumbs":"up","name":"note"}`, 0, "name", `"note" is reserved`},
		{"annotator_kind ROBOT", `{"response_id":"r","thumbs":"up","annotator_kind":"ROBOT"}`, 0, "annotator_kind", `expected "HUMAN", "LLM" or "CODE", got "ROBOT"`},
		{"not JSON", `thumbs up`, 0, "", "malformed JSON"},
		{"a JSON string", `"chatcmpl-1"`, 0, "", "expected a JSON object, got string"},
		{"empty body", ``, 0, "", "the body is empty"},
		{"blank body", " \n", 0, "", "the body is empty"},
		{"cut short", `{"response_id":"r",`, 0, "", "malformed JSON"},
		{"empty array", `[]`, 0, "", "the batch is empty"},
		{"array not closed", `[{"response_id":"r","thumbs":"up"}`, 0, "", "expected a JSON object or an array of objects"},
		{"trailing garbage", `{"response_id":"r","thumbs":"up"} yes`, 0, "", "expected one JSON value; found more after it"},
		{"trailing brace", `{"response_id":"r","thumbs":"up"}}`, 0, "", "expected one JSON value; found more after it"},
		{"second object", `{"response_id":"r","thumbs":"up"}{"response_id":"s","thumbs":"up"}`, 0, "", "found more after it"},
		{"body over 1 MiB", `{"response_id":"r","thumbs":"up","explanation":"` + long(feedback.MaxBodyBytes) + `"}`, http.StatusRequestEntityTooLarge, "", "over the limit of 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, apiConfig(), []answer{accept}, func(t *testing.T, h *harness) {
				rec := h.serve("POST", "/feedback", tc.body)
				want := tc.wantCode
				if want == 0 {
					want = http.StatusBadRequest
				}
				if rec.Code != want {
					t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
				}
				field, msg := apiErr(t, rec)
				if field != tc.wantField || !strings.Contains(msg, tc.wantMsg) {
					t.Errorf("error = field %q, message %q; want field %q, message with %q", field, msg, tc.wantField, tc.wantMsg)
				}
				if h.svc.Pending() != 0 || len(h.svc.Lookup("r")) != 0 {
					t.Error("a refused feedback was kept")
				}
			})
		})
	}
}

func TestAPIAuth(t *testing.T) {
	const body = `{"response_id":"r","thumbs":"up"}`
	tests := []struct {
		name     string
		token    string
		header   []string
		wantCode int
	}{
		{"no token configured: no auth needed", "", nil, http.StatusAccepted},
		{"missing bearer", "s3cret", nil, http.StatusUnauthorized},
		{"wrong bearer", "s3cret", []string{"Authorization", "Bearer guess"}, http.StatusUnauthorized},
		{"token as a prefix", "s3cret", []string{"Authorization", "Bearer s3cretx"}, http.StatusUnauthorized},
		{"other scheme", "s3cret", []string{"Authorization", "Basic s3cret"}, http.StatusUnauthorized},
		{"right bearer", "s3cret", []string{"Authorization", "Bearer s3cret"}, http.StatusAccepted},
		{"scheme in lower case", "s3cret", []string{"Authorization", "bearer s3cret"}, http.StatusAccepted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := apiConfig()
			cfg.Token = tc.token
			inBubble(t, cfg, []answer{accept}, func(t *testing.T, h *harness) {
				rec := h.serve("POST", "/feedback", body, tc.header...)
				if rec.Code != tc.wantCode {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
				}
				if tc.wantCode != http.StatusUnauthorized {
					return
				}
				if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if _, msg := apiErr(t, rec); !strings.Contains(msg, "Authorization: Bearer <token>") {
					t.Errorf("message = %q", msg)
				}
				if h.svc.Pending() != 0 {
					t.Error("an unauthorized feedback was kept")
				}
				// GET shows identifiers (user ids): it is guarded by the same token.
				if rec := h.serve("GET", "/feedback/r", "", tc.header...); rec.Code != http.StatusUnauthorized {
					t.Errorf("GET without the token: status %d, want 401", rec.Code)
				}
			})
		})
	}
}

func TestAPIGet(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, h *harness)
		path  string
		check func(t *testing.T, rec *httptest.ResponseRecorder, v map[string]any)
	}{
		{
			name: "unknown response: 404, not indexed",
			path: "/feedback/chatcmpl-nobody",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, v map[string]any) {
				if rec.Code != http.StatusNotFound || v["indexed"] != false || v["span"] != nil || fmt.Sprint(v["feedback"]) != "[]" || v["response_id"] != "chatcmpl-nobody" {
					t.Errorf("status %d: %v", rec.Code, v)
				}
			},
		},
		{
			name:  "indexed, no feedback: 200 with the span",
			setup: func(t *testing.T, h *harness) { h.indexSpan("chatcmpl-1", 1) },
			path:  "/feedback/chatcmpl-1",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, v map[string]any) {
				want := map[string]any{"trace_id": span(1).TraceID.String(), "span_id": span(1).SpanID.String(), "project": "support", "name": "ChatCompletion"}
				if rec.Code != http.StatusOK || v["indexed"] != true || fmt.Sprint(v["span"]) != fmt.Sprint(want) || fmt.Sprint(v["feedback"]) != "[]" {
					t.Errorf("status %d: %v", rec.Code, v)
				}
			},
		},
		{
			name: "feedback waiting for its span: 200, not indexed, pending",
			setup: func(t *testing.T, h *harness) {
				h.submit(t, vote("chatcmpl-2", "up"))
			},
			path: "/feedback/chatcmpl-2",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, v map[string]any) {
				fb := v["feedback"].([]any)
				if rec.Code != http.StatusOK || v["indexed"] != false || len(fb) != 1 || fb[0].(map[string]any)["state"] != "pending" {
					t.Errorf("status %d: %v", rec.Code, v)
				}
			},
		},
		{
			name: "feedback of several users: their states",
			setup: func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-1", 1)
				h.submit(t, vote("chatcmpl-1", "up", identifier("u1")), vote("chatcmpl-1", "down", identifier("u2")))
				synctest.Wait()
			},
			path: "/feedback/chatcmpl-1",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, v map[string]any) {
				fb := v["feedback"].([]any)
				if rec.Code != http.StatusOK || v["indexed"] != true || len(fb) != 2 {
					t.Fatalf("status %d: %v", rec.Code, v)
				}
				for i, id := range []string{"u1", "u2"} {
					f := fb[i].(map[string]any)
					if f["identifier"] != id || f["state"] != "annotated" || f["span_id"] != span(1).SpanID.String() {
						t.Errorf("feedback %d = %v", i, f)
					}
				}
			},
		},
		{
			name: "over-long id: 400",
			path: "/feedback/" + strings.Repeat("x", 257),
			check: func(t *testing.T, rec *httptest.ResponseRecorder, v map[string]any) {
				e, _ := v["error"].(map[string]any)
				if rec.Code != http.StatusBadRequest || e["field"] != "response_id" {
					t.Errorf("status %d: %v", rec.Code, v)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, apiConfig(), []answer{accept}, func(t *testing.T, h *harness) {
				if tc.setup != nil {
					tc.setup(t, h)
				}
				rec := h.serve("GET", tc.path, "")
				tc.check(t, rec, decode(t, rec))
			})
		})
	}
}

func TestAPIMethodNotAllowed(t *testing.T) {
	for _, req := range []struct{ method, path string }{
		{"GET", "/feedback"},
		{"PUT", "/feedback"},
		{"DELETE", "/feedback/chatcmpl-1"},
		{"POST", "/feedback/chatcmpl-1"},
	} {
		t.Run(req.method+" "+req.path, func(t *testing.T) {
			inBubble(t, apiConfig(), nil, func(t *testing.T, h *harness) {
				rec := h.serve(req.method, req.path, `{"response_id":"r","thumbs":"up"}`)
				if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
					t.Errorf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
				}
			})
		})
	}
}
