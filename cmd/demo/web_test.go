package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

const testKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestParseWebOptions(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.txt")
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, o *webOptions, err error)
	}{
		{
			name: "defaults, the keys from the proxy's variable",
			env:  map[string]string{"FEEDBACK_PROXY_TOKEN_KEYS_FILE": keysFile},
			check: func(t *testing.T, o *webOptions, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.addr != defaultWebAddr || o.feedbackURL != defaultFeedbackURL || o.widgetURL != defaultFeedbackURL+"/widget.js" || o.tokenKeysFile != keysFile ||
					o.tokenTTL != token.DefaultTTL || o.model != defaultModel {
					t.Errorf("got %+v", o)
				}
			},
		},
		{
			name: "flags and DEMO_ variables",
			args: []string{"--addr", "127.0.0.1:0", "--feedback-url", "http://127.0.0.1:9/", "--token-ttl", "10m"},
			env:  map[string]string{"DEMO_TOKEN_KEYS_FILE": keysFile, "FEEDBACK_PROXY_TOKEN_KEYS_FILE": "other"},
			check: func(t *testing.T, o *webOptions, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if o.addr != "127.0.0.1:0" || o.feedbackURL != "http://127.0.0.1:9" || o.tokenKeysFile != keysFile || o.tokenTTL != 10*time.Minute {
					t.Errorf("got %+v", o)
				}
			},
		},
		{
			name: "the widget from elsewhere",
			args: []string{"--token-keys-file", keysFile, "--widget-url", "https://cdn.example.com/widget.js"},
			check: func(t *testing.T, o *webOptions, err error) {
				if err != nil || o.widgetURL != "https://cdn.example.com/widget.js" {
					t.Errorf("got %+v, %v", o, err)
				}
			},
		},
		{
			name:  "a bad widget URL",
			args:  []string{"--token-keys-file", keysFile, "--widget-url", "/widget.js"},
			check: wantErr(`--widget-url "/widget.js": expected an http:// or https:// URL`),
		},
		{
			name:  "no keys file",
			check: wantErr("--token-keys-file: expected the proxy's token keys file"),
		},
		{
			name:  "a bad feedback URL",
			args:  []string{"--token-keys-file", keysFile, "--feedback-url", "localhost:8080"},
			check: wantErr(`--feedback-url "localhost:8080": expected an http:// or https:// URL`),
		},
		{
			name:  "a bad address",
			args:  []string{"--token-keys-file", keysFile, "--addr", "8090"},
			check: wantErr(`--addr "8090": expected host:port`),
		},
		{
			name:  "a zero TTL",
			args:  []string{"--token-keys-file", keysFile, "--token-ttl", "0s"},
			check: wantErr("--token-ttl 0s: expected a positive duration"),
		},
		{
			name:  "a stray argument",
			args:  []string{"--token-keys-file", keysFile, "now"},
			check: wantErr(`unexpected arguments ["now"]`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseWebOptions(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			tt.check(t, o, err)
		})
	}
}

func wantErr(prefix string) func(t *testing.T, o *webOptions, err error) {
	return func(t *testing.T, o *webOptions, err error) {
		t.Helper()
		if err == nil || !strings.HasPrefix(err.Error(), prefix) {
			t.Fatalf("error %v, want one starting with %q", err, prefix)
		}
	}
}

// webFixture is the page's backend on an httptest server, with the
// built-in LLM and spans recorded in memory.
type webFixture struct {
	srv    *httptest.Server
	keys   *token.Keys
	llm    *llmserver.Server
	spans  *tracetest.InMemoryExporter
	client *http.Client
	now    time.Time
}

func newWebFixture(t *testing.T) *webFixture {
	t.Helper()
	llmSrv, base := startLLM(t, llmserver.Config{})
	return newWebFixtureWith(t, llmSrv, base)
}

func newWebFixtureWith(t *testing.T, llmSrv *llmserver.Server, base string) *webFixture {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	keys, err := token.ParseKeys([]byte(testKey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	tracer := tp.Tracer(tracerName)
	app, err := newWebApp(webConfig{
		Model:       "gpt-4o-mini",
		FeedbackURL: "http://127.0.0.1:18080",
		Keys:        keys,
		TokenTTL:    30 * time.Minute,
		Tracer:      tracer,
		LLM:         newLLM(tracer, base, option.WithAPIKey("k"), option.WithMaxRetries(0)),
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:         func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.handler())
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	t.Cleanup(client.CloseIdleConnections)
	return &webFixture{srv: srv, keys: keys, llm: llmSrv, spans: exp, client: client, now: now}
}

func (f *webFixture) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := f.client.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *webFixture) ask(t *testing.T, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := f.client.Post(f.srv.URL+"/api/ask", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (f *webFixture) user(t *testing.T) string {
	t.Helper()
	for _, c := range f.client.Jar.Cookies(mustURL(t, f.srv.URL)) {
		if c.Name == userCookie {
			return c.Value
		}
	}
	return ""
}

func TestWebPage(t *testing.T) {
	f := newWebFixture(t)
	resp, body := f.get(t, "/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	nonce := regexp.MustCompile(`<script src="http://127\.0\.0\.1:18080/widget\.js" nonce="([A-Za-z0-9_-]{22})" defer>`).FindStringSubmatch(body)
	if nonce == nil {
		t.Fatalf("the page does not load the widget from the proxy with a nonce:\n%s", body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{
		"default-src 'none'",
		"script-src 'self' http://127.0.0.1:18080;",
		"connect-src 'self' http://127.0.0.1:18080;",
		"style-src 'self' 'nonce-" + nonce[1] + "';",
	} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	uid := f.user(t)
	if !validUserID(uid) || !strings.Contains(body, "<code>"+uid+"</code>") {
		t.Errorf("user cookie %q, not on the page", uid)
	}
	// A second visit keeps the user, and gets a fresh nonce.
	_, body2 := f.get(t, "/")
	if f.user(t) != uid {
		t.Errorf("the user changed from %s to %s", uid, f.user(t))
	}
	if strings.Contains(body2, nonce[1]) {
		t.Error("the nonce did not change between two visits")
	}

	resp, js := f.get(t, "/static/app.js")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(js, "FeedbackWidget.mount") {
		t.Errorf("GET /static/app.js answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := f.get(t, "/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing answered %d, want 404", resp.StatusCode)
	}
}

func TestWebAsk(t *testing.T) {
	f := newWebFixture(t)
	resp, body := f.ask(t, `{"question": "Which ocean contains Bouvet Island?"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/ask answered %d %s", resp.StatusCode, body)
	}
	var a askAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	uid := f.user(t)
	if a.Answer != llmserver.BouvetAnswer || a.ResponseID != f.llm.LastID() || a.Identifier != uid || !validUserID(uid) ||
		a.FeedbackEndpoint != "http://127.0.0.1:18080" || !a.TokenExpires.Equal(f.now.Add(30*time.Minute)) {
		t.Errorf("answer %+v (user %s, response %s)", a, uid, f.llm.LastID())
	}

	// The token allows exactly this: a vote on this answer, as this user,
	// under the default name.
	c, err := f.keys.Verify(a.Token, f.now)
	if err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	if err := c.Allows(a.ResponseID, uid, feedbackName); err != nil {
		t.Errorf("the token does not allow the user's vote: %v", err)
	}
	if c.Allows(a.ResponseID, "web-0000000000000000", feedbackName) == nil ||
		c.Allows("chatcmpl-other", uid, feedbackName) == nil ||
		c.Allows(a.ResponseID, uid, "correctness") == nil {
		t.Errorf("the token allows more than the user's vote on this answer: %+v", c)
	}
	if _, err := f.keys.Verify(a.Token, f.now.Add(31*time.Minute)); err == nil {
		t.Error("the token is valid after its TTL")
	}

	// The answer is traced as the CLI demo's, with the user on the chain.
	spans := spansByName(t, f.spans)
	chain, llmSpan := spans["answer question"], spans["chat gpt-4o-mini"]
	if v := attrMap(chain.Attributes)["user.id"]; v.AsString() != uid {
		t.Errorf("the chain span's user.id is %q, want %s", v.AsString(), uid)
	}
	if v := attrMap(llmSpan.Attributes)[attrGenAIResponseID]; v.AsString() != a.ResponseID {
		t.Errorf("the LLM span's response id is %q, want %s", v.AsString(), a.ResponseID)
	}

	// The same browser asks again: the same user.
	if resp, body := f.ask(t, `{"question": "And which continent is nearest?"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("second ask: %d %s", resp.StatusCode, body)
	} else if err := json.Unmarshal(body, &a); err != nil || a.Identifier != uid {
		t.Errorf("second ask as %q, want %s", a.Identifier, uid)
	}
}

func TestWebAskRefuses(t *testing.T) {
	f := newWebFixture(t)
	tests := []struct {
		name, body string
		field      string
		message    string
	}{
		{"not JSON", `question=hi`, "", `expected a JSON object {"question": "..."}`},
		{"no question", `{}`, "question", "expected a question"},
		{"blank question", `{"question": "  "}`, "question", "expected a question"},
		{"too long", `{"question": "` + strings.Repeat("x", maxQuestionBytes+1) + `"}`, "question", "expected UTF-8 text of at most 2000 bytes"},
		{"too large", `{"question": "` + strings.Repeat("x", maxAskBody) + `"}`, "", "of at most 16384 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.ask(t, tt.body)
			var e struct {
				Error struct {
					Status  int    `json:"status"`
					Field   string `json:"field"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if resp.StatusCode != http.StatusBadRequest || e.Error.Status != 400 || e.Error.Field != tt.field || !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("answered %d %s, want 400 on field %q saying %q", resp.StatusCode, body, tt.field, tt.message)
			}
		})
	}
	if n := len(f.llm.Calls()); n != 0 {
		t.Errorf("the LLM was called %d times for refused questions", n)
	}
}

func TestWebAskLLMDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	f := newWebFixtureWith(t, nil, down.URL)
	resp, body := f.ask(t, `{"question": "Anyone there?"}`)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "the LLM did not answer") {
		t.Errorf("answered %d %s, want 502 saying the LLM did not answer", resp.StatusCode, body)
	}
}

// TestRunWebServes runs the subcommand as a user would, on a free port,
// until its context ends.
func TestRunWebServes(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(keysFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/widget.js" {
			_, _ = io.WriteString(w, "// widget")
			return
		}
		http.NotFound(w, r)
	}))
	defer proxy.Close()
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": proxy.URL, // the spans are refused: reported, not fatal
		"OTEL_BSP_SCHEDULE_DELAY":     "10",
	}
	getenv := func(k string) string { return env[k] }

	ctx, cancel := context.WithCancel(context.Background())
	out, outW := io.Pipe()
	done := make(chan int, 1)
	stderr := &syncWriter{w: &strings.Builder{}}
	go func() {
		done <- run(ctx, []string{"web", "--addr", "127.0.0.1:0", "--feedback-url", proxy.URL, "--token-keys-file", keysFile}, getenv, strings.NewReader(""), outW, stderr)
		outW.Close()
	}()
	lines := make(chan string, 10)
	go func() {
		b := make([]byte, 4096)
		var acc string
		for {
			n, err := out.Read(b)
			acc += string(b[:n])
			for {
				i := strings.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	first := <-lines
	page, ok := strings.CutPrefix(first, "Demo page: ")
	if !ok {
		cancel()
		t.Fatalf("first line %q, want the page's URL", first)
	}
	resp, err := http.Post(page+"api/ask", "application/json", strings.NewReader(`{"question":"Where is Bouvet Island?"}`))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), llmserver.BouvetAnswer) {
		t.Errorf("POST /api/ask answered %d %s", resp.StatusCode, b)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	for range lines {
	}
	if code := <-done; code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("a warning although the proxy serves /widget.js:\n%s", stderr.String())
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// syncWriter serializes the writes of the exporter's goroutine and the
// command's.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.(*strings.Builder).String()
}

// TestWebPageWidgetElsewhere: a widget served from another origin than the
// proxy's is allowed by the page's policy too.
func TestWebPageWidgetElsewhere(t *testing.T) {
	app, err := newWebApp(webConfig{
		FeedbackURL: "http://127.0.0.1:18080",
		WidgetURL:   "https://cdn.example.com/fb/widget.js",
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	app.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self' http://127.0.0.1:18080 https://cdn.example.com;") {
		t.Errorf("Content-Security-Policy %q does not allow both origins", csp)
	}
	if !strings.Contains(rec.Body.String(), `<script src="https://cdn.example.com/fb/widget.js" nonce=`) {
		t.Errorf("the page does not load the widget from its URL:\n%s", rec.Body.String())
	}
}
