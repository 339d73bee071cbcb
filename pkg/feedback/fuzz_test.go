package feedback_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// neverAnnotates keeps every feedback pending: the fuzzer is after the
// decoder, not Phoenix.
type neverAnnotates struct{}

func (neverAnnotates) AnnotateSpans(ctx context.Context, _ []phoenix.SpanAnnotation) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// FuzzPostFeedback sends arbitrary bodies to POST /feedback. The handler
// must never panic, must answer only 202, 400 or 413 with a JSON body, and
// a 202 must account for every item: accepted ones are pending, rejected
// ones say which field.
func FuzzPostFeedback(f *testing.F) {
	for _, s := range []string{
		`{"response_id":"chatcmpl-1","thumbs":"up"}`,
		`[{"response_id":"a","thumbs":"down","identifier":"u1"},{"response_id":"","label":"x"}]`,
		`{"response_id":"r","score":1e999}`,
		`{"response_id":"r","label":"\xff"}`,
		`[[[[[[]]]]]]`, `{"response_id":"r","metadata":{"a":[1,{"b":null}]},"explanation":"x"}`,
		`{"response_id":"r","thumbs":"up"}}`, ``, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	svc, err := feedback.New(feedback.Config{SyncWait: -1, MaxPending: 1 << 30, MaxBytes: 1 << 40}, ix, neverAnnotates{}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	h := svc.Handler()

	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/feedback", bytes.NewReader(body)))
		switch rec.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		var out any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body, err)
		}
		if rec.Code != http.StatusAccepted {
			return
		}
		if batch, ok := out.(map[string]any); ok {
			if items, ok := batch["items"].([]any); ok {
				acc, _ := batch["accepted"].(float64)
				rej, _ := batch["rejected"].(float64)
				if int(acc+rej) != len(items) {
					t.Fatalf("batch answer counts %v+%v for %d items", acc, rej, len(items))
				}
				return
			}
			if batch["state"] != "pending" {
				t.Fatalf("accepted feedback is %v, want pending", batch["state"])
			}
		}
	})
}
