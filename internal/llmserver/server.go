package llmserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server is an http.Handler that serves the OpenAI endpoints under /v1, the
// Anthropic Messages API at /v1/messages and the Gemini API's generateContent
// under /v1beta/models/. Mount it at the root; BaseURL gives each SDK's base URL.
type Server struct {
	cfg Config

	mu    sync.Mutex
	seq   uint64
	calls []Call
	last  map[Provider]string
	root  string // "http://host:port" when started by Start
}

// Provider names the API a call was made through.
type Provider string

// The providers whose APIs a Server speaks.
const (
	// ProviderOpenAI is /v1/chat/completions and /v1/responses; ids
	// chatcmpl-... and resp_....
	ProviderOpenAI Provider = "openai"
	// ProviderAnthropic is the Messages API, /v1/messages; ids msg_....
	ProviderAnthropic Provider = "anthropic"
	// ProviderGemini is the Gemini API's models/{model}:generateContent and
	// :streamGenerateContent; ids are the responseId of GenerateContentResponse.
	ProviderGemini Provider = "gemini"
)

// Call records one answered completion, in the order ids were issued.
type Call struct {
	Provider Provider
	// Endpoint is the request path: "/v1/chat/completions", "/v1/responses",
	// "/v1/messages" or "/v1beta/models/{model}:generateContent" (or
	// :streamGenerateContent).
	Endpoint string
	// ID is the response id the client received: chatcmpl-... or resp_...
	// (OpenAI), msg_... (Anthropic), the responseId (Gemini).
	ID       string
	Model    string
	Stream   bool
	Question string
	Answer   string
}

// New returns a Server for cfg. It does no I/O.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{cfg: cfg}
}

// Start serves a new Server on addr ("" means 127.0.0.1:0, a free loopback
// port). The listener is bound before Start returns. baseURL is the value for
// the SDK's base_url (OPENAI_BASE_URL): "http://host:port/v1". stop shuts the
// HTTP server down gracefully.
func Start(addr string, cfg Config) (srv *Server, baseURL string, stop func(context.Context) error, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", nil, fmt.Errorf("llmserver: listen on %s: %w", addr, err)
	}
	srv = New(cfg)
	srv.root = "http://" + ln.Addr().String()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	stop = func(ctx context.Context) error {
		err := hs.Shutdown(ctx)
		// Serve returns as soon as Shutdown starts, so this does not block.
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
	return srv, srv.BaseURL(ProviderOpenAI), stop, nil
}

// BaseURL returns the base URL to give p's SDK, for a Server started by
// Start ("" for one made by New): "http://host:port/v1" for OpenAI
// (base_url, OPENAI_BASE_URL), "http://host:port" for Anthropic (base_url,
// ANTHROPIC_BASE_URL) and for google-genai (http_options base_url,
// GOOGLE_GEMINI_BASE_URL), whose SDKs add the API version themselves.
func (s *Server) BaseURL(p Provider) string {
	if s.root == "" {
		return ""
	}
	if p == ProviderOpenAI {
		return s.root + "/v1"
	}
	return s.root
}

// ServeHTTP routes /v1/messages to the Anthropic API, Gemini paths
// (/v1beta/..., and models/{model}:method under /v1 and /v1alpha) to the
// Gemini API, and everything else like api.openai.com: unknown paths and
// methods get 404 "Invalid URL" in the OpenAI error shape. Each API answers
// errors in its own shape.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/messages" || strings.HasPrefix(r.URL.Path, "/v1/messages/"):
		s.serveAnthropic(w, r)
		return
	case isGeminiPath(r.URL.Path):
		s.serveGemini(w, r)
		return
	}
	w.Header().Set("x-request-id", "req_"+s.randomHex(16))
	w.Header().Set("openai-version", "2020-10-01")
	if !s.authorized(w, r) {
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/chat/completions":
		s.chatCompletions(w, r)
	case "POST /v1/responses":
		s.responses(w, r)
	case "GET /v1/models":
		s.listModels(w)
	default:
		if id, ok := strings.CutPrefix(r.URL.Path, "/v1/models/"); ok && id != "" && r.Method == http.MethodGet {
			s.retrieveModel(w, id)
			return
		}
		writeError(w, http.StatusNotFound, apiError{
			Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path),
			Type:    "invalid_request_error",
		})
	}
}

// Calls returns the completions answered so far, oldest first (at most
// Config.MaxCalls of the most recent).
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// LastID returns the id of the most recent completion through any provider,
// or "" if none. With one provider in use it is that provider's last id; see
// LastIDOf when several are.
func (s *Server) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return ""
	}
	return s.calls[len(s.calls)-1].ID
}

// LastIDOf returns the id of the most recent completion through p, or "" if
// none. Unlike Calls it is not bounded by Config.MaxCalls.
func (s *Server) LastIDOf(p Provider) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[p]
}

// LastOpenAIID is LastIDOf(ProviderOpenAI): the last chatcmpl-... or resp_....
func (s *Server) LastOpenAIID() string { return s.LastIDOf(ProviderOpenAI) }

// LastAnthropicID is LastIDOf(ProviderAnthropic): the last msg_... id.
func (s *Server) LastAnthropicID() string { return s.LastIDOf(ProviderAnthropic) }

// LastGeminiID is LastIDOf(ProviderGemini): the last responseId.
func (s *Server) LastGeminiID() string { return s.LastIDOf(ProviderGemini) }

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) >= s.cfg.MaxCalls {
		s.calls = append(s.calls[:0], s.calls[len(s.calls)-s.cfg.MaxCalls+1:]...)
	}
	s.calls = append(s.calls, c)
	if s.last == nil {
		s.last = map[Provider]string{}
	}
	s.last[c.Provider] = c.ID
}

// newID returns prefix followed by hexLen hex digits: a sequence number, then
// random digits. Real ids look random; the sequence number makes ours unique
// whatever Config.Rand returns.
func (s *Server) newID(prefix string, hexLen int) string {
	head := fmt.Sprintf("%08x", s.nextSeq())
	return prefix + head + s.randomHex((hexLen - len(head) + 1) / 2)[:hexLen-len(head)]
}

// newIDIn is newID for ids in another alphabet: prefix, then n characters of
// alphabet, the first seqLen of which encode the sequence number.
func (s *Server) newIDIn(prefix, alphabet string, seqLen, n int) string {
	return prefix + encodeFixed(s.nextSeq(), seqLen, alphabet) + s.randomString(n-seqLen, alphabet)
}

func (s *Server) nextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

func (s *Server) randomBytes(n int) []byte {
	b := make([]byte, n)
	if s.cfg.Rand == nil {
		_, _ = rand.Read(b) // never fails since Go 1.24
	} else {
		s.mu.Lock()
		// A short read leaves zeros; the sequence number keeps ids unique.
		_, _ = io.ReadFull(s.cfg.Rand, b)
		s.mu.Unlock()
	}
	return b
}

func (s *Server) randomHex(nbytes int) string {
	return hex.EncodeToString(s.randomBytes(nbytes))
}

// randomString returns n random characters of alphabet (not quite uniform,
// which does not matter for ids that only have to look real).
func (s *Server) randomString(n int, alphabet string) string {
	b := s.randomBytes(n)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// encodeFixed writes n in base len(alphabet) with exactly width digits, most
// significant first (higher digits are dropped; width 6 in base 62 holds 5.6e10).
func encodeFixed(n uint64, width int, alphabet string) string {
	b := make([]byte, width)
	base := uint64(len(alphabet))
	for i := width - 1; i >= 0; i-- {
		b[i] = alphabet[n%base]
		n /= base
	}
	return string(b)
}

const (
	base62    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	got := r.Header.Get("Authorization")
	if got == "Bearer "+s.cfg.APIKey {
		return true
	}
	msg := "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	if got != "" {
		msg = "Incorrect API key provided."
	}
	writeError(w, http.StatusUnauthorized, apiError{Message: msg, Type: "invalid_request_error", Code: "invalid_api_key"})
	return false
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelCreated is a fixed creation time so that listings are deterministic.
const modelCreated = 1721172741

func (s *Server) listModels(w http.ResponseWriter) {
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, id := range s.cfg.Models {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: modelCreated, OwnedBy: "system"})
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) retrieveModel(w http.ResponseWriter, id string) {
	for _, m := range s.cfg.Models {
		if m == id {
			writeJSON(w, http.StatusOK, model{ID: id, Object: "model", Created: modelCreated, OwnedBy: "system"})
			return
		}
	}
	writeError(w, http.StatusNotFound, apiError{
		Message: fmt.Sprintf("The model '%s' does not exist", id),
		Type:    "invalid_request_error",
		Param:   "model",
		Code:    "model_not_found",
	})
}
