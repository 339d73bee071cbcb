package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/envflag"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// `demo web` serves a chat page: the browser asks a question, the demo's
// backend asks the LLM (traced into the proxy as the CLI demo does), mints a
// per-response token for the answer and returns both; the page shows the
// answer with the proxy's feedback widget (/widget.js) under it, and the
// widget sends the vote to the proxy straight from the browser.

// webFiles are the page (an html/template) and its script and style.
//
//go:embed web
var webFiles embed.FS

const (
	defaultWebAddr = "127.0.0.1:8090"
	// userCookie holds the browser's user id, the identifier of its votes:
	// with it, a changed vote replaces the earlier one in Phoenix.
	userCookie = "demo_user"
	// maxQuestionBytes bounds a question; maxAskBody the request around it.
	maxQuestionBytes = 2000
	maxAskBody       = 16 << 10
	// askTimeout bounds one LLM call.
	askTimeout = time.Minute
)

type webOptions struct {
	addr string
	// feedbackURL is the proxy's feedback listener as the browser reaches
	// it: the widget's script and the votes go there.
	feedbackURL string
	// widgetURL is where the page loads widget.js from: the proxy's by
	// default.
	widgetURL     string
	tokenKeysFile string
	tokenTTL      time.Duration
	model         string
}

func parseWebOptions(args []string, getenv func(string) string, out io.Writer) (*webOptions, error) {
	o := &webOptions{}
	fs := flag.NewFlagSet("demo web", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.addr, "addr", defaultWebAddr, "where the page listens (host:port; port 0 picks a free one)")
	fs.StringVar(&o.feedbackURL, "feedback-url", defaultFeedbackURL, "the proxy's feedback listener as the browser reaches it: the page loads /widget.js from it and the votes go to its POST /feedback")
	fs.StringVar(&o.widgetURL, "widget-url", "", "where the page loads the widget's script from (default: <feedback-url>/widget.js)")
	fs.StringVar(&o.tokenKeysFile, "token-keys-file", "", "the proxy's token keys file, to mint a token for each answer (default: FEEDBACK_PROXY_TOKEN_KEYS_FILE)")
	fs.DurationVar(&o.tokenTTL, "token-ttl", token.DefaultTTL, "how long an answer's token lets the page vote")
	fs.StringVar(&o.model, "model", defaultModel, "model to ask")
	fs.Usage = func() {
		fmt.Fprintf(out, `demo web serves a chat page on --addr. Each question goes to the demo's own
backend (POST /api/ask), which asks the LLM through the official OpenAI Go SDK,
traced into the feedback proxy as the command-line demo is, and answers with a
per-response token minted with the proxy's keys. The page shows the answer with
the proxy's feedback widget under it (<script src="<feedback-url>/widget.js">),
which sends thumbs up or down straight from the browser.

The proxy must share the keys and allow the page's origin:
  proxy --token-keys-file keys.txt --cors-allowed-origins http://%s
A key file is one key a line, e.g.: openssl rand -hex 32 > keys.txt

LLM and spans as for the demo (see demo --help): the built-in OpenAI-compatible
server unless OPENAI_API_KEY or OPENAI_BASE_URL is set; OTEL_EXPORTER_OTLP_*.
Every flag can also be set by the environment variable %s<FLAG>, e.g. %s.

Flags:
`, defaultWebAddr, envPrefix, envName("addr"))
		fs.PrintDefaults()
	}
	if err := envflag.Parse(fs, args, envPrefix, getenv); err != nil {
		return nil, err
	}
	if o.tokenKeysFile == "" {
		o.tokenKeysFile = getenv("FEEDBACK_PROXY_TOKEN_KEYS_FILE")
	}
	if o.tokenKeysFile == "" {
		return nil, errors.New("--token-keys-file: expected the proxy's token keys file (the proxy's --token-keys-file), to mint a token for each answer")
	}
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return nil, fmt.Errorf("--addr %q: expected host:port, e.g. %s", o.addr, defaultWebAddr)
	}
	p, err := url.Parse(o.feedbackURL)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return nil, fmt.Errorf("--feedback-url %q: expected an http:// or https:// URL", o.feedbackURL)
	}
	o.feedbackURL = strings.TrimRight(o.feedbackURL, "/")
	if o.widgetURL == "" {
		o.widgetURL = o.feedbackURL + "/widget.js"
	}
	if p, err := url.Parse(o.widgetURL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return nil, fmt.Errorf("--widget-url %q: expected an http:// or https:// URL", o.widgetURL)
	}
	if o.tokenTTL <= 0 {
		return nil, fmt.Errorf("--token-ttl %s: expected a positive duration, e.g. %s", o.tokenTTL, token.DefaultTTL)
	}
	if strings.TrimSpace(o.model) == "" {
		return nil, errors.New("--model: expected a model name, e.g. " + defaultModel)
	}
	return o, nil
}

func runWeb(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseWebOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo web:", err)
		return 2
	}
	if err := serveWeb(ctx, o, getenv, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "demo web:", err)
		return 1
	}
	return 0
}

// serveWeb runs the page until ctx ends.
func serveWeb(ctx context.Context, o *webOptions, getenv func(string) string, stdout, stderr io.Writer) error {
	keys, err := token.LoadKeys(o.tokenKeysFile)
	if err != nil {
		return fmt.Errorf("--token-keys-file: %w", err)
	}
	tp, target, err := newTracerProvider(ctx, getenv)
	if err != nil {
		return err
	}
	var once sync.Once
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		fmt.Fprintf(stderr, "demo web: exporting spans to %s: %v\n", target, err)
		once.Do(func() {
			fmt.Fprintln(stderr, "demo web: is the proxy running? OTEL_EXPORTER_OTLP_ENDPOINT moves the endpoint")
		})
	}))
	defer func() {
		// The spans of the last answers leave now.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			fmt.Fprintf(stderr, "demo web: exporting spans to %s: %v\n", target, err)
		}
	}()

	d := &demo{getenv: getenv}
	llmBase, llmOpts, llmDesc, stopLLM, err := d.chooseLLM()
	if err != nil {
		return err
	}
	defer stopLLM()

	tracer := tp.Tracer(tracerName)
	app, err := newWebApp(webConfig{
		Model:       o.model,
		FeedbackURL: o.feedbackURL,
		WidgetURL:   o.widgetURL,
		Keys:        keys,
		TokenTTL:    o.tokenTTL,
		Tracer:      tracer,
		LLM:         newLLM(tracer, llmBase, llmOpts...),
		Log:         slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", o.addr, err)
	}
	srv := &http.Server{Handler: app.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	// Checked before the page's address is printed, so that whoever waits
	// for it (a script, a test) sees the warning first, if any.
	if err := checkWidget(ctx, o.widgetURL); err != nil {
		fmt.Fprintf(stderr, "demo web: warning: %v; the page will show answers without the thumbs\n", err)
	}
	origin := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "Demo page: %s/\n", origin)
	fmt.Fprintf(stdout, "           LLM: %s; spans to %s; votes to %s\n", llmDesc, target, o.feedbackURL)
	fmt.Fprintf(stdout, "           the proxy needs: --token-keys-file %s --cors-allowed-origins %s\n", o.tokenKeysFile, origin)

	select {
	case err = <-errc:
		return fmt.Errorf("serving %s: %w", origin, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// checkWidget makes sure the page will find the widget's script.
func checkWidget(ctx context.Context, widgetURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, widgetURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("no answer from %s (%v): start the proxy, or point --feedback-url at its feedback listener", widgetURL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s answered HTTP %d: is --feedback-url the proxy's feedback listener?", widgetURL, resp.StatusCode)
	}
	return nil
}

// webConfig is what the page's backend needs; every field is required.
type webConfig struct {
	Model string
	// FeedbackURL is the proxy's feedback listener, as the browser reaches
	// it.
	FeedbackURL string
	// WidgetURL is widget.js; "" means FeedbackURL + "/widget.js".
	WidgetURL string
	Keys      *token.Keys
	TokenTTL  time.Duration
	Tracer    trace.Tracer
	LLM       *llm
	Log       *slog.Logger
	// Now is the clock of the tokens' expiry; nil means time.Now.
	Now func() time.Time
}

// webApp is the page's backend. It is safe for concurrent use.
type webApp struct {
	cfg    webConfig
	page   *template.Template
	static http.Handler
	// scriptSources are the origins of FeedbackURL and WidgetURL, for the
	// page's Content-Security-Policy.
	scriptSources string
}

func newWebApp(cfg webConfig) (*webApp, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WidgetURL == "" {
		cfg.WidgetURL = cfg.FeedbackURL + "/widget.js"
	}
	var origins []string
	for _, s := range []string{cfg.FeedbackURL, cfg.WidgetURL} {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("URL %q: expected an http:// or https:// URL", s)
		}
		if o := u.Scheme + "://" + u.Host; !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	page, err := template.ParseFS(webFiles, "web/index.html")
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		return nil, err
	}
	return &webApp{
		cfg:           cfg,
		page:          page,
		static:        http.StripPrefix("/static/", http.FileServerFS(static)),
		scriptSources: strings.Join(origins, " "),
	}, nil
}

func (a *webApp) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.servePage)
	mux.Handle("GET /static/", a.static)
	mux.HandleFunc("POST /api/ask", a.serveAsk)
	return mux
}

// pageData fills web/index.html.
type pageData struct {
	Nonce            string
	WidgetURL        string
	FeedbackEndpoint string
	Question         string
	Identifier       string
}

func (a *webApp) servePage(w http.ResponseWriter, r *http.Request) {
	uid := a.userID(w, r)
	nonce := randomString(16)
	h := w.Header()
	// The page runs only its own script and the widget's, talks only to
	// itself and to the proxy, and lets the widget's one <style> element in
	// by the nonce the widget copies from its <script> tag.
	h.Set("Content-Security-Policy", fmt.Sprintf(
		"default-src 'none'; script-src 'self' %[1]s; connect-src 'self' %[1]s; style-src 'self' 'nonce-%[2]s'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
		a.scriptSources, nonce))
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	err := a.page.Execute(w, pageData{
		Nonce:            nonce,
		WidgetURL:        a.cfg.WidgetURL,
		FeedbackEndpoint: a.cfg.FeedbackURL,
		Question:         question,
		Identifier:       uid,
	})
	if err != nil {
		a.cfg.Log.Error("rendering the page", "err", err)
	}
}

// askRequest is the body of POST /api/ask.
type askRequest struct {
	Question string `json:"question"`
}

// askAnswer is what the page gets back: the answer, and what the widget
// needs to vote on it.
type askAnswer struct {
	Answer           string    `json:"answer"`
	ResponseID       string    `json:"response_id"`
	Model            string    `json:"model"`
	Token            string    `json:"token"`
	TokenExpires     time.Time `json:"token_expires"`
	Identifier       string    `json:"identifier"`
	FeedbackEndpoint string    `json:"feedback_endpoint"`
}

func (a *webApp) serveAsk(w http.ResponseWriter, r *http.Request) {
	var req askRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAskBody))
	if err := dec.Decode(&req); err != nil {
		webError(w, http.StatusBadRequest, "", "expected a JSON object {\"question\": \"...\"} of at most %d bytes: %v", maxAskBody, err)
		return
	}
	q := strings.TrimSpace(req.Question)
	switch {
	case q == "":
		webError(w, http.StatusBadRequest, "question", "expected a question")
		return
	case len(q) > maxQuestionBytes || !utf8.ValidString(q):
		webError(w, http.StatusBadRequest, "question", "expected UTF-8 text of at most %d bytes", maxQuestionBytes)
		return
	}
	uid := a.userID(w, r)

	ctx, cancel := context.WithTimeout(r.Context(), askTimeout)
	defer cancel()
	rep, err := askInChain(ctx, a.cfg.Tracer, a.cfg.LLM, a.cfg.Model, q, attribute.String("user.id", uid))
	if err != nil {
		a.cfg.Log.Warn("asking the LLM", "err", err)
		webError(w, http.StatusBadGateway, "", "the LLM did not answer: %v", err)
		return
	}
	expires := a.cfg.Now().Add(a.cfg.TokenTTL)
	// The token lets this browser vote on this answer, as this user, under
	// the name the proxy writes by default, until it expires; nothing else.
	tok, err := a.cfg.Keys.Mint(token.Claims{
		ResponseID: rep.ResponseID,
		Identifier: uid,
		Names:      []string{feedbackName},
		Expires:    expires,
	})
	if err != nil {
		a.cfg.Log.Error("minting a token", "response_id", rep.ResponseID, "err", err)
		webError(w, http.StatusInternalServerError, "", "could not mint a feedback token: %v", err)
		return
	}
	a.cfg.Log.Info("answered", "response_id", rep.ResponseID, "user", uid, "trace_id", rep.TraceID, "span_id", rep.SpanID)
	w.Header().Set("Cache-Control", "no-store")
	writeWebJSON(w, http.StatusOK, askAnswer{
		Answer:           rep.Answer,
		ResponseID:       rep.ResponseID,
		Model:            rep.Model,
		Token:            tok,
		TokenExpires:     expires.UTC(),
		Identifier:       uid,
		FeedbackEndpoint: a.cfg.FeedbackURL,
	})
}

// userID returns the browser's user id from its cookie, or gives it one.
func (a *webApp) userID(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(userCookie); err == nil && validUserID(c.Value) {
		return c.Value
	}
	uid := "web-" + randomHex(8)
	http.SetCookie(w, &http.Cookie{
		Name:     userCookie,
		Value:    uid,
		Path:     "/",
		MaxAge:   365 * 24 * 60 * 60,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	// The cookie is set on this answer; the same request reads it too.
	r.AddCookie(&http.Cookie{Name: userCookie, Value: uid})
	return uid
}

func validUserID(s string) bool {
	rest, ok := strings.CutPrefix(s, "web-")
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// webError answers as the proxy does: {"error": {"status", "field", "message"}}.
func webError(w http.ResponseWriter, code int, field, format string, args ...any) {
	var body struct {
		Error struct {
			Status  int    `json:"status"`
			Field   string `json:"field,omitempty"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Status, body.Error.Field, body.Error.Message = code, field, fmt.Sprintf(format, args...)
	writeWebJSON(w, code, body)
}

func writeWebJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
