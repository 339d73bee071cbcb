package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
)

// Feedback bodies are charged to a shared budget while they are handled;
// past it, 429 with Retry-After in the feedback API's error shape, and the
// handler is not called. The budget is whole again afterwards.
func TestBoundBodies(t *testing.T) {
	b := budget.New(64<<10, nil)
	var got []byte
	h := boundBodies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
	}), b, 1<<20)

	small := `{"response_id":"chatcmpl-1","thumbs":"up"}`
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/feedback", strings.NewReader(small)))
	if rec.Code != http.StatusAccepted || string(got) != small {
		t.Fatalf("a small body: %d, handler read %q", rec.Code, got)
	}

	held := b.Reserve()
	held.Grow(1) // another request in flight
	got = nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/feedback", bytes.NewReader(make([]byte, 200<<10))))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || got != nil {
		t.Fatalf("a body over the budget: %d, Retry-After %q, handler called: %v", rec.Code, rec.Header().Get("Retry-After"), got != nil)
	}
	var ans struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || ans.Error.Status != 429 || !strings.Contains(ans.Error.Message, "limit") {
		t.Errorf("error body %s (%v)", rec.Body.Bytes(), err)
	}
	held.Release()
	if b.Used() != 0 {
		t.Errorf("budget used %d after every request ended, want 0", b.Used())
	}
}
