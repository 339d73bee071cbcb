package feedback

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// Tokens verifies and mints per-response tokens (pkg/token): credentials a
// web page may hold, each good for feedback on one response only.
// *token.Keys is one.
type Tokens interface {
	Verify(tok string, now time.Time) (token.Claims, error)
	Mint(c token.Claims) (string, error)
}

// TokenLimiter bounds the requests one per-response token may make. It is
// asked once per request a valid token authorizes, with a short digest of
// the token, and returns how long the caller must wait (0: go ahead).
type TokenLimiter interface {
	TokenWait(key string) time.Duration
}

// refusal is why a request's per-response token does not let it through.
type refusal struct {
	code int // 401: no valid token; 403: a valid one that does not cover the request; 429: its rate is used up
	msg  string
	wait time.Duration // 429: how long to wait
}

// write answers the refusal.
func (rf *refusal) write(w http.ResponseWriter) {
	switch rf.code {
	case http.StatusUnauthorized:
		unauthorized(w, "%s", rf.msg)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(rf.wait)))
		writeError(w, rf.code, "token", "%s", rf.msg)
	default:
		writeError(w, rf.code, "token", "%s", rf.msg)
	}
}

// admits decides whether a feedback may be taken: with the server token
// (server), always; with a per-response token (tok, the item's, else cred,
// the header's), within the token's scope; with none, only when the API is
// open. A token presented to an open API is checked all the same: a page
// must learn that its token was refused rather than have it ignored.
func (s *Service) admits(server bool, cred, tok string, f *Feedback) *refusal {
	if server {
		return nil
	}
	if tok == "" {
		tok = cred
	}
	if s.open() && (tok == "" || s.cfg.Tokens == nil) {
		return nil
	}
	return s.checkToken(tok, f)
}

// checkToken checks that the per-response token tok allows f: nil when it
// does. A feedback without an identifier takes the token's, so that a page
// need not repeat what its token says.
func (s *Service) checkToken(tok string, f *Feedback) *refusal {
	c, rf := s.verify(tok)
	if rf != nil {
		return rf
	}
	if f.Identifier == "" {
		f.Identifier = c.Identifier
	}
	if err := c.Allows(f.ResponseID, f.Identifier, f.Name); err != nil {
		s.metrics.tokenRefused.WithLabelValues("out_of_scope").Inc()
		return &refusal{code: http.StatusForbidden, msg: err.Error()}
	}
	if len(c.Names) == 0 && f.Name != DefaultName {
		// A token that names no annotation is for the user's vote, not for
		// every name: else a page could overwrite an evaluator's
		// annotation (its name, identifier "") with its own.
		s.metrics.tokenRefused.WithLabelValues("out_of_scope").Inc()
		return &refusal{code: http.StatusForbidden, msg: fmt.Sprintf("%v %q: a token that names none allows %q only", token.ErrWrongName, f.Name, DefaultName)}
	}
	if f.AnnotatorKind != DefaultAnnotatorKind {
		// A page speaks for its user, never for an evaluator.
		s.metrics.tokenRefused.WithLabelValues("out_of_scope").Inc()
		return &refusal{code: http.StatusForbidden, msg: fmt.Sprintf("a per-response token sends HUMAN feedback only, not %s", f.AnnotatorKind)}
	}
	if s.cfg.TokenLimiter != nil {
		// The limiter counts its own refusals.
		if wait := s.cfg.TokenLimiter.TokenWait(tokenKey(tok)); wait > 0 {
			return &refusal{code: http.StatusTooManyRequests, wait: wait,
				msg: fmt.Sprintf("this token sent too many requests; retry in %d s", retryAfterSeconds(wait))}
		}
	}
	return nil
}

func retryAfterSeconds(wait time.Duration) int {
	return int((wait + time.Second - 1) / time.Second)
}

// verify checks tok and returns its claims, or why it is refused.
func (s *Service) verify(tok string) (token.Claims, *refusal) {
	switch {
	case tok == "":
		return token.Claims{}, &refusal{code: http.StatusUnauthorized, msg: "no credential: send the server token or a per-response token as Authorization: Bearer <token>, or a per-response token in the body's token field"}
	case s.cfg.Tokens == nil:
		return token.Claims{}, &refusal{code: http.StatusUnauthorized, msg: "the credential is not the server token, and this proxy takes no per-response tokens (no --token-keys-file): send the server token as Authorization: Bearer <token>"}
	}
	c, err := s.cfg.Tokens.Verify(tok, time.Now())
	if err != nil {
		s.metrics.tokenRefused.WithLabelValues(tokenReason(err)).Inc()
		return token.Claims{}, &refusal{code: http.StatusUnauthorized, msg: "per-response token refused: " + err.Error()}
	}
	return c, nil
}

// tokenReason names why a token was refused, for the metric.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, token.ErrExpired):
		return "expired"
	case errors.Is(err, token.ErrUnknownKey):
		return "unknown_key"
	case errors.Is(err, token.ErrBadSignature):
		return "bad_signature"
	}
	return "malformed"
}

// tokenKey is what a token's requests are counted under: a digest, so that
// the limiter holds 22 bytes a token, not up to token.MaxLen.
func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// mintRequest is the body of POST /feedback/tokens.
type mintRequest struct {
	ResponseID string   `json:"response_id"`
	Identifier string   `json:"identifier,omitempty"`
	Names      []string `json:"names,omitempty"`
	// TTL is how long the token lives: a Go duration ("30m", "3h") or a
	// number of seconds; absent means token.DefaultTTL.
	TTL json.RawMessage `json:"ttl,omitempty"`
}

// mintAnswer is the answer of POST /feedback/tokens.
type mintAnswer struct {
	Token      string    `json:"token"`
	ResponseID string    `json:"response_id"`
	Identifier string    `json:"identifier,omitempty"`
	Names      []string  `json:"names,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// handleMint mints a per-response token. It takes the server token (when
// one is set): minting is the app's backend's job, never a page's.
func (s *Service) handleMint(w http.ResponseWriter, r *http.Request) {
	if !s.open() && !s.isServerToken(bearer(r)) {
		unauthorized(w, "POST /feedback/tokens needs the server token as Authorization: Bearer <token>")
		return
	}
	if s.cfg.Tokens == nil {
		writeError(w, http.StatusNotImplemented, "", "this proxy mints no per-response tokens: start it with --token-keys-file")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMintBodyBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			writeError(w, http.StatusRequestEntityTooLarge, "", "the body is over the limit of %d bytes", maxMintBodyBytes)
		} else {
			writeError(w, http.StatusBadRequest, "", "cannot read the body: %v", err)
		}
		return
	}
	var req mintRequest
	if ferr := decodeStrict(body, &req, mintFields); ferr != nil {
		writeError(w, http.StatusBadRequest, ferr.Field, "%s", ferr.Message)
		return
	}
	ttl, ferr := parseTTL(req.TTL)
	if ferr != nil {
		writeError(w, http.StatusBadRequest, ferr.Field, "%s", ferr.Message)
		return
	}
	claims := token.Claims{ResponseID: req.ResponseID, Identifier: req.Identifier, Names: req.Names, Expires: time.Now().Add(ttl)}
	tok, err := s.cfg.Tokens.Mint(claims)
	if err != nil {
		writeError(w, http.StatusBadRequest, mintField(err), "%s", strings.TrimPrefix(err.Error(), token.ErrInvalidClaims.Error()+": "))
		return
	}
	c, _ := s.cfg.Tokens.Verify(tok, time.Now())
	writeJSON(w, http.StatusCreated, mintAnswer{Token: tok, ResponseID: c.ResponseID, Identifier: c.Identifier, Names: c.Names, ExpiresAt: c.Expires.UTC()})
}

// maxMintBodyBytes caps a POST /feedback/tokens body.
const maxMintBodyBytes = 64 << 10

// mintFields are the fields of a mint request.
var mintFields = []string{"response_id", "identifier", "names", "ttl"}

// mintField names the request field a Mint error is about: pkg/token's
// errors start with the claim they refuse ("response_id: required",
// "names[2]: ..."), or name none (the whole token too long).
func mintField(err error) string {
	msg := strings.TrimPrefix(err.Error(), token.ErrInvalidClaims.Error()+": ")
	claim, _, ok := strings.Cut(msg, ": ")
	if !ok {
		return ""
	}
	base, _, _ := strings.Cut(claim, "[")
	switch base {
	case "response_id", "identifier", "names":
		return claim
	case "expires":
		return "ttl"
	}
	return ""
}

// parseTTL reads the ttl of a mint request.
func parseTTL(raw json.RawMessage) (time.Duration, *FieldError) {
	if len(raw) == 0 || string(raw) == "null" {
		return token.DefaultTTL, nil
	}
	var ttl time.Duration
	var text string
	if json.Unmarshal(raw, &text) == nil {
		d, err := time.ParseDuration(text)
		if err != nil {
			return 0, fieldErr("ttl", `expected a duration such as "30m" or "3h", or a number of seconds; got %q`, text)
		}
		ttl = d
	} else {
		secs, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return 0, fieldErr("ttl", `expected a duration such as "30m" or "3h", or a number of seconds; got %s`, raw)
		}
		ttl = time.Duration(secs * float64(time.Second))
	}
	if ttl < time.Second || ttl > token.MaxTTL {
		return 0, fieldErr("ttl", "expected 1s to %s, got %s", token.MaxTTL, ttl)
	}
	return ttl, nil
}
