package feedback_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

const (
	keyA = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	keyB = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
)

func keys(t *testing.T, lines ...string) *token.Keys {
	t.Helper()
	k, err := token.ParseKeys([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mint(t *testing.T, k *token.Keys, c token.Claims) string {
	t.Helper()
	if c.Expires.IsZero() {
		c.Expires = time.Now().Add(time.Hour)
	}
	tok, err := k.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenConfig is an API with a server token and per-response tokens of
// keyA (and keyB, to verify, when rotated).
func tokenConfig(t *testing.T, k *token.Keys) feedback.Config {
	cfg := apiConfig()
	cfg.Token = "s3cret"
	cfg.Tokens = k
	return cfg
}

func TestTokenPost(t *testing.T) {
	tests := []struct {
		name string
		// tok makes the token with keyA (signing) at the bubble's now.
		tok      func(t *testing.T, ka *token.Keys) string
		verifier []string // the key file the proxy verifies with; default keyA
		body     string   // default a thumbs up on chatcmpl-1 by user-7, token in the header
		inBody   bool     // the token in the body's token field instead of the header
		wantCode int
		wantMsg  string
	}{
		{name: "valid, in the header", wantCode: http.StatusAccepted},
		{name: "valid, in the body (sendBeacon)", inBody: true, wantCode: http.StatusAccepted},
		{name: "valid, the identifier taken from the token", body: `{"response_id":"chatcmpl-1","thumbs":"up"}`, wantCode: http.StatusAccepted},
		{name: "valid, any identifier", tok: func(t *testing.T, ka *token.Keys) string {
			return mint(t, ka, token.Claims{ResponseID: "chatcmpl-1"})
		}, wantCode: http.StatusAccepted},
		{name: "expired", tok: func(t *testing.T, ka *token.Keys) string {
			tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1", Expires: time.Now().Add(time.Second)})
			time.Sleep(2 * time.Second)
			return tok
		}, wantCode: http.StatusUnauthorized, wantMsg: "expired"},
		{name: "tampered", tok: func(t *testing.T, ka *token.Keys) string {
			tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1"})
			b := []byte(tok)
			i := len(b) - 5
			b[i] ^= 'A' ^ 'B'
			if b[i] == tok[i] {
				b[i]++
			}
			return string(b)
		}, wantCode: http.StatusUnauthorized},
		{name: "wrong response", tok: func(t *testing.T, ka *token.Keys) string {
			return mint(t, ka, token.Claims{ResponseID: "chatcmpl-2"})
		}, wantCode: http.StatusForbidden, wantMsg: "another response"},
		{name: "wrong identifier", tok: func(t *testing.T, ka *token.Keys) string {
			return mint(t, ka, token.Claims{ResponseID: "chatcmpl-1", Identifier: "user-8"})
		}, wantCode: http.StatusForbidden, wantMsg: "another identifier"},
		{name: "wrong name", tok: func(t *testing.T, ka *token.Keys) string {
			return mint(t, ka, token.Claims{ResponseID: "chatcmpl-1", Names: []string{"helpfulness"}})
		}, wantCode: http.StatusForbidden, wantMsg: "name"},
		{name: "a token naming none: another name than the user's vote", body: `{"response_id":"chatcmpl-1","label":"wrong","identifier":"user-7","name":"correctness"}`,
			wantCode: http.StatusForbidden, wantMsg: "allows \"user feedback\" only"},
		{name: "not HUMAN", body: `{"response_id":"chatcmpl-1","thumbs":"up","identifier":"user-7","annotator_kind":"LLM"}`,
			wantCode: http.StatusForbidden, wantMsg: "HUMAN"},
		{name: "rotated: the old key still verifies", verifier: []string{keyB, keyA}, wantCode: http.StatusAccepted},
		{name: "retired key", verifier: []string{keyB}, wantCode: http.StatusUnauthorized, wantMsg: "unknown key"},
		{name: "garbage", tok: func(*testing.T, *token.Keys) string { return "not-a-token" }, wantCode: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka := keys(t, keyA)
			verifier := ka
			if tt.verifier != nil {
				verifier = keys(t, tt.verifier...)
			}
			inBubble(t, tokenConfig(t, verifier), []answer{accept}, func(t *testing.T, h *harness) {
				h.indexSpan("chatcmpl-1", 1)
				var tok string
				if tt.tok != nil {
					tok = tt.tok(t, ka)
				} else {
					tok = mint(t, ka, token.Claims{ResponseID: "chatcmpl-1", Identifier: "user-7"})
				}
				body := tt.body
				if body == "" {
					body = `{"response_id":"chatcmpl-1","thumbs":"up","identifier":"user-7"}`
				}
				var header []string
				if tt.inBody {
					b, _ := json.Marshal(tok)
					body = strings.TrimSuffix(body, "}") + `,"token":` + string(b) + `}`
				} else {
					header = []string{"Authorization", "Bearer " + tok}
				}
				rec := h.serve("POST", "/feedback", body, header...)
				if rec.Code != tt.wantCode {
					t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
				}
				if tt.wantCode == http.StatusAccepted {
					if st := h.svc.Lookup("chatcmpl-1"); len(st) != 1 || st[0].Identifier != "user-7" {
						t.Errorf("kept %+v, want one feedback by user-7", st)
					}
					return
				}
				if field, msg := apiErr(t, rec); !strings.Contains(msg, tt.wantMsg) || (tt.wantCode == http.StatusForbidden && field != "token") {
					t.Errorf("error %q: %q, want a message with %q", field, msg, tt.wantMsg)
				}
				if len(h.svc.Lookup("chatcmpl-1")) != 0 {
					t.Error("a refused feedback was kept")
				}
			})
		})
	}
}

// A token votes again within its scope: the last vote is the one kept.
func TestTokenVotesAgain(t *testing.T) {
	ka := keys(t, keyA)
	inBubble(t, tokenConfig(t, ka), []answer{accept}, func(t *testing.T, h *harness) {
		h.indexSpan("chatcmpl-1", 1)
		tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1", Identifier: "user-7"})
		for _, thumbs := range []string{"up", "down"} {
			rec := h.serve("POST", "/feedback", `{"response_id":"chatcmpl-1","thumbs":"`+thumbs+`","identifier":"user-7"}`, "Authorization", "Bearer "+tok)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("%s: status %d: %s", thumbs, rec.Code, rec.Body)
			}
		}
		calls := h.ann.Calls()
		if len(calls) != 2 || labelOf(calls[1].ann) != "thumbs-down" {
			t.Errorf("calls = %+v, want up then down", calls)
		}
		// GET with the token: the page sees its user's vote, and only that.
		h.submit(t, vote("chatcmpl-1", "up", identifier("user-8")), vote("chatcmpl-1", "up"))
		rec := h.serve("GET", "/feedback/chatcmpl-1", "", "Authorization", "Bearer "+tok)
		var ans struct {
			Feedback []feedback.Status `json:"feedback"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ans) != nil || len(ans.Feedback) != 1 || ans.Feedback[0].Identifier != "user-7" {
			t.Errorf("GET with the token: %d %s, want user-7's feedback only", rec.Code, rec.Body)
		}
		if rec := h.serve("GET", "/feedback/chatcmpl-2", "", "Authorization", "Bearer "+tok); rec.Code != http.StatusForbidden {
			t.Errorf("GET of another response with the token: %d, want 403", rec.Code)
		}
	})
}

// A batch: the items the token does not cover are rejected, the others taken.
func TestTokenBatch(t *testing.T) {
	ka := keys(t, keyA)
	inBubble(t, tokenConfig(t, ka), []answer{accept}, func(t *testing.T, h *harness) {
		tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1"})
		rec := h.serve("POST", "/feedback", `[{"response_id":"chatcmpl-1","thumbs":"up"},{"response_id":"chatcmpl-2","thumbs":"up"}]`, "Authorization", "Bearer "+tok)
		var ans struct {
			Accepted, Rejected int
			Items              []struct {
				Error *feedback.FieldError `json:"error"`
			}
		}
		if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &ans) != nil || ans.Accepted != 1 || ans.Rejected != 1 ||
			ans.Items[1].Error == nil || ans.Items[1].Error.Field != "[1].token" || !strings.Contains(ans.Items[1].Error.Message, "403") {
			t.Errorf("batch: %d %s", rec.Code, rec.Body)
		}
	})
}

type fakeLimiter struct {
	mu   sync.Mutex
	seen map[string]int
}

// TokenWait lets two requests of a token through, then asks for 1.5 s.
func (l *fakeLimiter) TokenWait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[key]++
	if l.seen[key] > 2 {
		return 1500 * time.Millisecond
	}
	return 0
}

func TestTokenRate(t *testing.T) {
	ka := keys(t, keyA)
	cfg := tokenConfig(t, ka)
	lim := &fakeLimiter{seen: map[string]int{}}
	cfg.TokenLimiter = lim
	inBubble(t, cfg, []answer{accept}, func(t *testing.T, h *harness) {
		tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1"})
		var codes []int
		for range 3 {
			rec := h.serve("POST", "/feedback", `{"response_id":"chatcmpl-1","thumbs":"up"}`, "Authorization", "Bearer "+tok)
			codes = append(codes, rec.Code)
			if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "2" {
				t.Errorf("Retry-After = %q, want 2 (1.5 s rounded up)", rec.Header().Get("Retry-After"))
			}
		}
		if codes[0] != 202 || codes[1] != 202 || codes[2] != 429 {
			t.Errorf("codes = %v, want 202 202 429", codes)
		}
		// In a batch too: each item refused, and the answer says when to retry.
		rec := h.serve("POST", "/feedback", `[{"response_id":"chatcmpl-1","thumbs":"up"}]`, "Authorization", "Bearer "+tok)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" {
			t.Errorf("batch past the rate: %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		// The server token is not rate limited per token.
		if rec := h.serve("POST", "/feedback", `{"response_id":"chatcmpl-1","thumbs":"up"}`, "Authorization", "Bearer s3cret"); rec.Code != 202 {
			t.Errorf("server token: %d", rec.Code)
		}
		if len(lim.seen) != 1 || lim.seen[func() string {
			for k := range lim.seen {
				return k
			}
			return ""
		}()] != 4 {
			t.Errorf("limiter saw %d keys, want the one token", len(lim.seen))
		}
		for k := range lim.seen {
			if strings.Contains(tok, k) || len(k) > 32 {
				t.Errorf("limiter key %q is the token or too long", k)
			}
		}
	})
}

func TestTokenMint(t *testing.T) {
	auth := []string{"Authorization", "Bearer s3cret"}
	tests := []struct {
		name     string
		body     string
		header   []string
		wantCode int
		wantTTL  time.Duration
		field    string
	}{
		{"default ttl", `{"response_id":"chatcmpl-1","identifier":"user-7"}`, auth, http.StatusCreated, token.DefaultTTL, ""},
		{"ttl as a duration", `{"response_id":"chatcmpl-1","ttl":"30m"}`, auth, http.StatusCreated, 30 * time.Minute, ""},
		{"ttl in seconds", `{"response_id":"chatcmpl-1","ttl":90,"names":["user feedback"]}`, auth, http.StatusCreated, 90 * time.Second, ""},
		{"ttl too long", `{"response_id":"chatcmpl-1","ttl":"999h"}`, auth, http.StatusBadRequest, 0, "ttl"},
		{"ttl garbage", `{"response_id":"chatcmpl-1","ttl":"soon"}`, auth, http.StatusBadRequest, 0, "ttl"},
		{"no response id", `{"identifier":"u"}`, auth, http.StatusBadRequest, 0, "response_id"},
		{"unknown field", `{"response_id":"r","scope":"all"}`, auth, http.StatusBadRequest, 0, "scope"},
		{"a field in another case", `{"Response_ID":"r"}`, auth, http.StatusBadRequest, 0, "Response_ID"},
		{"garbage after the object", `{"response_id":"r"} garbage`, auth, http.StatusBadRequest, 0, ""},
		{"a token too long: no field named", `{"response_id":"` + strings.Repeat("r", 256) + `","identifier":"` + strings.Repeat("i", 256) + `","names":["` + strings.Repeat("n", 256) + `","` + strings.Repeat("m", 256) + `","` + strings.Repeat("o", 256) + `","` + strings.Repeat("p", 256) + `","` + strings.Repeat("q", 256) + `"]}`, auth, http.StatusBadRequest, 0, ""},
		{"a name refused", `{"response_id":"r","names":["a",""]}`, auth, http.StatusBadRequest, 0, "names[1]"},
		{"no server token", `{"response_id":"chatcmpl-1"}`, nil, http.StatusUnauthorized, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka := keys(t, keyA)
			inBubble(t, tokenConfig(t, ka), []answer{accept}, func(t *testing.T, h *harness) {
				rec := h.serve("POST", "/feedback/tokens", tt.body, tt.header...)
				if rec.Code != tt.wantCode {
					t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
				}
				if tt.wantCode != http.StatusCreated {
					if field, _ := apiErr(t, rec); field != tt.field {
						t.Errorf("field %q, want %q", field, tt.field)
					}
					return
				}
				var ans struct {
					Token     string    `json:"token"`
					ExpiresAt time.Time `json:"expires_at"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
					t.Fatal(err)
				}
				if got := time.Until(ans.ExpiresAt); got > tt.wantTTL || got < tt.wantTTL-time.Second {
					t.Errorf("expires in %s, want %s", got, tt.wantTTL)
				}
				// The minted token works.
				rec = h.serve("POST", "/feedback", `{"response_id":"chatcmpl-1","thumbs":"up","identifier":"user-7"}`, "Authorization", "Bearer "+ans.Token)
				if rec.Code != http.StatusAccepted {
					t.Errorf("POST with the minted token: %d %s", rec.Code, rec.Body)
				}
			})
		})
	}
	t.Run("without keys: 501", func(t *testing.T) {
		inBubble(t, apiConfig(), nil, func(t *testing.T, h *harness) {
			if rec := h.serve("POST", "/feedback/tokens", `{"response_id":"r"}`); rec.Code != http.StatusNotImplemented {
				t.Errorf("status %d, want 501", rec.Code)
			}
		})
	})
}

// An API without a server token is open, but a token presented to it is
// checked: a page learns that its token was refused.
func TestTokenCheckedWhenOpen(t *testing.T) {
	ka := keys(t, keyA)
	cfg := apiConfig()
	cfg.Tokens = ka
	inBubble(t, cfg, []answer{accept}, func(t *testing.T, h *harness) {
		tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1"})
		for _, tc := range []struct {
			header   []string
			body     string
			wantCode int
		}{
			{nil, `{"response_id":"chatcmpl-1","thumbs":"up"}`, http.StatusAccepted},
			{[]string{"Authorization", "Bearer " + tok}, `{"response_id":"chatcmpl-1","thumbs":"up"}`, http.StatusAccepted},
			{[]string{"Authorization", "Bearer " + tok + "x"}, `{"response_id":"chatcmpl-1","thumbs":"up"}`, http.StatusUnauthorized},
			{nil, `{"response_id":"chatcmpl-1","thumbs":"up","token":"` + tok + `x"}`, http.StatusUnauthorized},
			{[]string{"Authorization", "Bearer " + tok}, `{"response_id":"chatcmpl-2","thumbs":"up"}`, http.StatusForbidden},
		} {
			if rec := h.serve("POST", "/feedback", tc.body, tc.header...); rec.Code != tc.wantCode {
				t.Errorf("%v %s: %d, want %d: %s", tc.header, tc.body, rec.Code, tc.wantCode, rec.Body)
			}
		}
	})
}

// A token bound to no identifier reads only the feedback without one: the
// identifiers of others are often user ids.
func TestTokenGetUnbound(t *testing.T) {
	ka := keys(t, keyA)
	inBubble(t, tokenConfig(t, ka), []answer{accept}, func(t *testing.T, h *harness) {
		h.submit(t, vote("chatcmpl-1", "up", identifier("user-8")), vote("chatcmpl-1", "down"))
		tok := mint(t, ka, token.Claims{ResponseID: "chatcmpl-1"})
		rec := h.serve("GET", "/feedback/chatcmpl-1", "", "Authorization", "Bearer "+tok)
		var ans struct {
			Feedback []feedback.Status `json:"feedback"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ans) != nil || len(ans.Feedback) != 1 || ans.Feedback[0].Identifier != "" {
			t.Errorf("GET with an unbound token: %d %s, want the feedback without identifier only", rec.Code, rec.Body)
		}
	})
}
