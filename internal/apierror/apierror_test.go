package apierror

import (
	"net/http/httptest"
	"testing"
)

// The shape is pkg/feedback's: a renamed tag must fail here.
func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, 429, `slow "down"`)
	want := `{"error":{"status":429,"message":"slow \"down\""}}` + "\n"
	if rec.Code != 429 || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != want {
		t.Fatalf("%d %q %s, want 429 application/json %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, want)
	}
}
