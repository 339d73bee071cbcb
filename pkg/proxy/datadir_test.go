package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDataDir runs the proxy twice over one data directory: feedback
// pending at the first shutdown and a span indexed before it are there at
// the second start, and both resolve.
func TestDataDir(t *testing.T) {
	fp := &fakePhoenix{t: t, spans: map[string]bool{}}
	phx := httptest.NewServer(fp)
	defer phx.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	start := func(logs io.Writer) *Proxy {
		t.Helper()
		cfg := localConfig(phx.URL)
		cfg.DataDir = dir
		p, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return p
	}
	do := func(method, url, contentType string, body []byte) (int, string) {
		t.Helper()
		return doRequest(t, ctx, client, method, url, contentType, body)
	}
	export := func(p *Proxy, responseID string) {
		t.Helper()
		pb, err := ptraceotlp.NewExportRequestFromTraces(chatTraces(responseID)).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		if code, body := do("POST", "http://"+p.Addrs().OTLPHTTP+"/v1/traces", "application/x-protobuf", pb); code != http.StatusOK {
			t.Fatalf("OTLP export: %d %s", code, body)
		}
	}
	get := func(p *Proxy, responseID string) feedback.ResponseState {
		t.Helper()
		_, body := do("GET", "http://"+p.Addrs().Feedback+"/feedback/"+responseID, "", nil)
		var l feedback.ResponseState
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			t.Fatalf("GET /feedback/%s: %v: %s", responseID, err, body)
		}
		return l
	}

	// First life: a span goes through; feedback comes for a response whose
	// span never does.
	logs := &lockedBuffer{}
	p := start(logs)
	export(p, "chatcmpl-before")
	code, body := do("POST", "http://"+p.Addrs().Feedback+"/feedback", "application/json", []byte(`{"response_id":"chatcmpl-later","thumbs":"down"}`))
	if code != http.StatusAccepted || !strings.Contains(body, `"state":"pending"`) {
		t.Fatalf("POST /feedback: %d %s", code, body)
	}
	client.CloseIdleConnections()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="feedback pending at shutdown persisted in the data directory; it resumes at the next start" component=feedback count=1`) {
		t.Errorf("shutdown log:\n%s", logs.String())
	}

	// Second life.
	logs = &lockedBuffer{}
	p = start(logs)
	defer func() { _ = p.Shutdown(ctx) }()
	if !strings.Contains(logs.String(), `msg="data directory opened"`) || !strings.Contains(logs.String(), "index_entries=1 feedback_pending=1") {
		t.Errorf("start log:\n%s", logs.String())
	}
	if l := get(p, "chatcmpl-later"); len(l.Feedback) != 1 || l.Feedback[0].State != feedback.Pending {
		t.Fatalf("restored feedback: %+v", l)
	}
	// The span indexed before the restart resolves feedback sent after it.
	if l := get(p, "chatcmpl-before"); !l.Indexed {
		t.Errorf("chatcmpl-before is not indexed after the restart: %+v", l)
	}
	code, body = do("POST", "http://"+p.Addrs().Feedback+"/feedback", "application/json", []byte(`{"response_id":"chatcmpl-before","thumbs":"up"}`))
	if code != http.StatusAccepted || !strings.Contains(body, `"state":"annotated"`) {
		t.Errorf("POST /feedback for a span indexed before the restart: %d %s", code, body)
	}
	// The pending feedback's span comes now.
	export(p, "chatcmpl-later")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l := get(p, "chatcmpl-later")
		if len(l.Feedback) == 1 && l.Feedback[0].State == feedback.Annotated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restored feedback not annotated after 10s: %+v", l)
		}
	}

	// A second proxy on the same directory is refused, and leaves nothing
	// bound.
	cfg := localConfig(phx.URL)
	cfg.DataDir = dir
	other, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(ctx); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("a second proxy on the data directory: Start = %v", err)
	}
	if a := other.Addrs(); a.Feedback != "" || a.Admin != "" {
		t.Errorf("the refused proxy bound %+v", a)
	}
}

// A state.db cut to nothing does not stop the proxy: it starts, and
// /readyz and the metrics say the file was damaged and what it cost.
func TestDamagedStateFile(t *testing.T) {
	fp := &fakePhoenix{t: t, spans: map[string]bool{}}
	phx := httptest.NewServer(fp)
	defer phx.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, store.FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := localConfig(phx.URL)
	cfg.DataDir = dir
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start with an empty state.db: %v", err)
	}
	defer func() { _ = p.Shutdown(ctx) }()
	client := &http.Client{Timeout: 10 * time.Second}
	code, body := doRequest(t, ctx, client, "GET", "http://"+p.Addrs().Admin+"/readyz", "", nil)
	if code != http.StatusOK || !strings.HasPrefix(body, "ready\n") || !strings.Contains(body, "warning: the data file was damaged") {
		t.Errorf("/readyz: %d %q; want ready and a warning about the data file", code, body)
	}
	_, metrics := doRequest(t, ctx, client, "GET", "http://"+p.Addrs().Admin+"/metrics", "", nil)
	if !strings.Contains(metrics, "feedbackproxy_store_damaged_total 1") {
		t.Errorf("metrics do not count the damaged file:\n%s", metrics)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, store.FileName+".damaged-*"))
	if len(matches) != 1 {
		t.Errorf("damaged files kept: %v, want one", matches)
	}
}
