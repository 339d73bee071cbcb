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

// Server is an http.Handler that serves the OpenAI endpoints under /v1.
// Mount it at the root: the SDK's base URL is the server's URL plus "/v1".
type Server struct {
	cfg Config

	mu    sync.Mutex
	seq   uint64
	calls []Call
}

// Call records one answered completion, in the order ids were issued.
type Call struct {
	// Endpoint is the request path, "/v1/chat/completions" or "/v1/responses".
	Endpoint string
	// ID is the response id the client received: chatcmpl-... or resp_....
	ID       string
	Model    string
	Stream   bool
	Question string
	Answer   string
}

// New returns a Server for cfg. It does no I/O.
func New(cfg Config) *Server {
	return &Server{cfg: cfg.withDefaults()}
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
	return srv, "http://" + ln.Addr().String() + "/v1", stop, nil
}

// ServeHTTP routes like api.openai.com: unknown paths and methods get 404
// "Invalid URL" in the OpenAI error shape.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

// LastID returns the id of the most recent completion, or "" if none.
func (s *Server) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return ""
	}
	return s.calls[len(s.calls)-1].ID
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) >= s.cfg.MaxCalls {
		s.calls = append(s.calls[:0], s.calls[len(s.calls)-s.cfg.MaxCalls+1:]...)
	}
	s.calls = append(s.calls, c)
}

// newID returns prefix followed by hexLen hex digits: a sequence number, then
// random digits. Real ids look random; the sequence number makes ours unique
// whatever Config.Rand returns.
func (s *Server) newID(prefix string, hexLen int) string {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	head := fmt.Sprintf("%08x", seq)
	return prefix + head + s.randomHex((hexLen - len(head) + 1) / 2)[:hexLen-len(head)]
}

func (s *Server) randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if s.cfg.Rand == nil {
		_, _ = rand.Read(b) // never fails since Go 1.24
	} else {
		s.mu.Lock()
		// A short read leaves zeros; the sequence number keeps ids unique.
		_, _ = io.ReadFull(s.cfg.Rand, b)
		s.mu.Unlock()
	}
	return hex.EncodeToString(b)
}

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
