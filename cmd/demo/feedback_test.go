package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

func TestProxyClientSend(t *testing.T) {
	tests := []struct {
		name      string
		satisfied bool
		token     string
		handler   http.HandlerFunc
		wantState feedback.State
		wantErr   string
	}{
		{
			name:      "thumbs up, span not there yet",
			satisfied: true,
			token:     "s3cret",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Authorization"); got != "Bearer s3cret" {
					t.Errorf("Authorization %q", got)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var body map[string]any
				if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
					t.Error(err)
				}
				if want := map[string]any{"response_id": "chatcmpl-1", "thumbs": "up"}; jsonOf(t, body) != jsonOf(t, want) {
					t.Errorf("body %v, want %v", body, want)
				}
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{"response_id":"chatcmpl-1","name":"user feedback","identifier":"","state":"pending","attempts":0}`)
			},
			wantState: "pending",
		},
		{
			name: "thumbs down",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if !strings.Contains(string(b), `"thumbs":"down"`) {
					t.Errorf("body %s", b)
				}
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{"state":"annotated","span_id":"00f067aa0ba902b7"}`)
			},
			wantState: "annotated",
		},
		{
			name: "token missing",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"error":{"status":401,"message":"POST /feedback needs the header Authorization: Bearer <token>"}}`)
			},
			wantErr: "set FEEDBACK_PROXY_FEEDBACK_TOKEN or --feedback-token",
		},
		{
			name: "field error names the field",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":{"status":400,"field":"response_id","message":"at most 256 bytes"}}`)
			},
			wantErr: "HTTP 400: response_id: at most 256 bytes",
		},
		{
			name: "not the proxy",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `<html>`)
			},
			wantErr: "is http://",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			st, err := newProxyClient(srv.URL, tt.token).send(context.Background(), "chatcmpl-1", tt.satisfied)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.wantState {
				t.Errorf("state %q, want %q", st.State, tt.wantState)
			}
		})
	}
}

func TestProxyClientNotRunning(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there now
	c := newProxyClient(base, "")
	for name, err := range map[string]error{
		"check": c.check(context.Background()),
		"send":  func() error { _, err := c.send(context.Background(), "chatcmpl-1", true); return err }(),
	} {
		want := "the proxy is not running on " + strings.TrimPrefix(base, "http://") + ": run `make demo`, or start it with `go run ./cmd/proxy`"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: err %v, want one starting with %q", name, err, want)
		}
	}
}

func TestProxyClientCheck(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{
			name: "the proxy",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/feedback/"+probeID {
					t.Errorf("path %s", r.URL.Path)
				}
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"response_id":"`+probeID+`","indexed":false,"feedback":[]}`)
			},
		},
		{name: "some JSON service", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"detail":"Not Found"}`)
		}, wantErr: "not as the feedback proxy does"},
		{name: "a web page", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `<!doctype html>`)
		}, wantErr: "not the proxy's JSON"},
		{name: "a server error", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "boom", http.StatusBadGateway)
		}, wantErr: "HTTP 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			err := newProxyClient(srv.URL, "").check(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// lookupServer answers GET /feedback/{id} from a script of states, the last
// one repeated.
func lookupServer(t *testing.T, states ...feedback.State) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := states[min(calls, len(states)-1)]
		calls++
		mu.Unlock()
		id := strings.TrimPrefix(r.URL.Path, "/feedback/")
		_ = json.NewEncoder(w).Encode(feedback.ResponseState{ResponseID: id, Indexed: st == stateAnnotated, Feedback: []feedback.Status{
			{ResponseID: id, Name: "another name", State: stateAnnotated},
			{ResponseID: id, Name: feedbackName, State: st, SpanID: "00f067aa0ba902b7", Reason: "waiting"},
		}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestProxyClientWaitDone(t *testing.T) {
	srv := lookupServer(t, statePending, statePending, stateAnnotated)
	c := newProxyClient(srv.URL, "")
	c.interval = time.Millisecond
	st, err := c.waitDone(context.Background(), "chatcmpl-1", feedbackName, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != stateAnnotated || st.SpanID != "00f067aa0ba902b7" {
		t.Errorf("got %+v", st)
	}
}

func TestProxyClientWaitDoneGivesUp(t *testing.T) {
	srv := lookupServer(t, statePending)
	c := newProxyClient(srv.URL, "")
	c.interval = time.Millisecond
	st, err := c.waitDone(context.Background(), "chatcmpl-1", feedbackName, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "still pending") || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("err %v, want still pending (waiting)", err)
	}
	if st.State != statePending {
		t.Errorf("last state %q", st.State)
	}
}

func TestRetryUnreachable(t *testing.T) {
	// synctest: the pauses between tries take no real time.
	synctest.Test(t, testRetryUnreachable)
}

func testRetryUnreachable(t *testing.T) {
	start := time.Now()
	calls := 0
	err := retryUnreachable(context.Background(), time.Minute, func(context.Context) error {
		calls++
		if calls < 2 {
			return &errUnreachable{msg: "not yet", err: io.EOF}
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Errorf("err %v after %d calls, want nil after 2", err, calls)
	}
	if waited := time.Since(start); waited != 500*time.Millisecond {
		t.Errorf("waited %s between two tries, want 500ms", waited)
	}
	// It gives up when the wait is over.
	calls = 0
	err = retryUnreachable(context.Background(), 2*time.Second, func(context.Context) error { calls++; return &errUnreachable{msg: "down", err: io.EOF} })
	if err == nil || calls != 5 {
		t.Errorf("err %v after %d calls, want an error after 5", err, calls)
	}
	// Other errors are final; a zero wait tries once.
	calls = 0
	err = retryUnreachable(context.Background(), time.Minute, func(context.Context) error { calls++; return io.ErrUnexpectedEOF })
	if err != io.ErrUnexpectedEOF || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	calls = 0
	err = retryUnreachable(context.Background(), 0, func(context.Context) error { calls++; return &errUnreachable{msg: "down", err: io.EOF} })
	if err == nil || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
}
