package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/goleak"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// The demo starts servers, exporters and HTTP clients; none may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeProxy is the proxy's OTLP/HTTP receiver and feedback API in one
// server. It finds response ids with the proxy's own extractor, so a test
// sees which span the real proxy would annotate.
type fakeProxy struct {
	mu sync.Mutex
	// spans by response id, as pkg/extract finds them.
	spans map[string]index.Span
	// thumbs by response id.
	thumbs map[string]string
	// feedbackFirst records, per response id, whether its feedback arrived
	// before its span.
	feedbackFirst map[string]bool
}

func newFakeProxy(t *testing.T) (*fakeProxy, *httptest.Server) {
	p := &fakeProxy{spans: map[string]index.Span{}, thumbs: map[string]string{}, feedbackFirst: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			t.Errorf("OTLP body: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		for _, e := range (extract.Extractor{}).Extract(req.Traces(), "") {
			p.spans[e.ResponseID] = e.Span
		}
		p.mu.Unlock()
		resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	})
	mux.HandleFunc("POST /feedback", func(w http.ResponseWriter, r *http.Request) {
		var f struct {
			ResponseID string `json:"response_id"`
			Thumbs     string `json:"thumbs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			t.Error(err)
		}
		p.mu.Lock()
		p.thumbs[f.ResponseID] = f.Thumbs
		_, known := p.spans[f.ResponseID]
		p.feedbackFirst[f.ResponseID] = !known
		st := p.status(f.ResponseID)
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /feedback/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		p.mu.Lock()
		defer p.mu.Unlock()
		l := feedback.ResponseState{ResponseID: id, Feedback: []feedback.Status{}}
		_, l.Indexed = p.spans[id]
		if _, ok := p.thumbs[id]; ok {
			l.Feedback = append(l.Feedback, p.status(id))
		}
		if !l.Indexed && len(l.Feedback) == 0 {
			w.WriteHeader(http.StatusNotFound)
		}
		_ = json.NewEncoder(w).Encode(l)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return p, srv
}

// status is the feedback's state: annotated once its span is known. Call
// with p.mu held.
func (p *fakeProxy) status(id string) feedback.Status {
	st := feedback.Status{ResponseID: id, Name: feedbackName, State: statePending}
	if s, ok := p.spans[id]; ok {
		st.State, st.SpanID, st.TraceID, st.SpanName, st.Project = stateAnnotated, s.SpanID.String(), s.TraceID.String(), s.Name, s.Project
	}
	return st
}

func fakePhoenix(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "OK") })
	mux.HandleFunc("GET /v1/projects", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"data":[{"name":"default","id":"UHJvamVjdDox"}],"next_cursor":null}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// demoEnv points the demo's exporter at url and keeps it off a real LLM.
func demoEnv(t *testing.T, url string) {
	for _, k := range []string{"OPENAI_API_KEY", "OPENAI_BASE_URL", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "PHOENIX_PROJECT_NAME", "PHOENIX_API_KEY"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
}

func TestRunFeedback(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantThumbs string
	}{
		{name: "--answer y", args: []string{"--answer", "y"}, wantThumbs: "up"},
		{name: "asked on stdin", args: []string{"--feedback"}, stdin: "maybe\nn\n", wantThumbs: "down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy, psrv := newFakeProxy(t)
			phx := fakePhoenix(t)
			demoEnv(t, psrv.URL)
			var out, errOut strings.Builder
			args := append([]string{"--feedback-url", psrv.URL, "--phoenix-url", phx.URL, "--phoenix-ui-url", "http://ui:6006"}, tt.args...)
			code := run(context.Background(), args, os.Getenv, strings.NewReader(tt.stdin), &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
			}

			proxy.mu.Lock()
			defer proxy.mu.Unlock()
			if len(proxy.spans) != 1 {
				t.Fatalf("the proxy indexed %v, want one response id", proxy.spans)
			}
			for id, span := range proxy.spans {
				if span.Name != "chat gpt-4o-mini" {
					t.Errorf("the proxy would annotate %q, want the LLM span", span.Name)
				}
				if proxy.thumbs[id] != tt.wantThumbs {
					t.Errorf("thumbs %q, want %q", proxy.thumbs[id], tt.wantThumbs)
				}
				// The demo does not flush before it sends the feedback.
				if !proxy.feedbackFirst[id] {
					t.Error("the span reached the proxy before the feedback: the demo should not flush first")
				}
				for _, want := range []string{
					"Answer:   South Atlantic Ocean",
					"Are you satisfied? (y/n) ",
					"feedback on " + id + " is pending: the span has not reached the proxy yet",
					"feedback on " + id + " is annotated",
					"Phoenix:  http://ui:6006/redirects/spans/" + span.SpanID.String(),
					"(trace: http://ui:6006/projects/UHJvamVjdDox/traces/" + span.TraceID.String() + ")",
				} {
					if !strings.Contains(out.String(), want) {
						t.Errorf("stdout lacks %q:\n%s", want, &out)
					}
				}
			}
			if tt.stdin != "" && !strings.Contains(out.String(), "Please answer y or n.") {
				t.Errorf("stdout should ask again after \"maybe\":\n%s", &out)
			}
		})
	}
}

func TestRunWithoutFeedback(t *testing.T) {
	proxy, psrv := newFakeProxy(t)
	demoEnv(t, psrv.URL)
	var out, errOut strings.Builder
	// Neither the feedback API nor Phoenix is needed without --feedback.
	code := run(context.Background(), []string{"--feedback-url", "http://127.0.0.1:1"}, os.Getenv, strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, &out, &errOut)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if len(proxy.spans) != 1 || len(proxy.thumbs) != 0 {
		t.Errorf("spans %v thumbs %v, want one span and no feedback", proxy.spans, proxy.thumbs)
	}
	if !strings.Contains(out.String(), "Send feedback by response id: curl -X POST http://127.0.0.1:1/feedback") {
		t.Errorf("stdout:\n%s", &out)
	}
}

func TestRunErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	down := strings.TrimPrefix(closed.URL, "http://")
	_, psrv := newFakeProxy(t)
	phx := fakePhoenix(t)

	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string
	}{
		{name: "bad flag", args: []string{"--answer", "perhaps"}, wantCode: 2, wantErr: "--answer"},
		{
			name: "proxy down", args: []string{"--answer", "y", "--feedback-url", closed.URL, "--phoenix-url", phx.URL},
			wantCode: 1, wantErr: "demo: the proxy is not running on " + down + ": run `make demo`, or start it with `go run ./cmd/proxy`",
		},
		{
			name: "Phoenix down", args: []string{"--answer", "y", "--feedback-url", psrv.URL, "--phoenix-url", closed.URL},
			wantCode: 1, wantErr: "demo: Phoenix is not running on " + down + ": run `make demo`, or start it with `scripts/phoenix.sh start`",
		},
		{
			name: "no answer on stdin", args: []string{"--feedback", "--feedback-url", psrv.URL, "--phoenix-url", phx.URL},
			wantCode: 1, wantErr: "no answer on stdin: answer y or n, or pass --answer y|n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			demoEnv(t, psrv.URL)
			var out, errOut strings.Builder
			code := run(context.Background(), tt.args, os.Getenv, strings.NewReader(tt.stdin), &out, &errOut)
			if code != tt.wantCode || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, &errOut, tt.wantCode, tt.wantErr)
			}
		})
	}
}
