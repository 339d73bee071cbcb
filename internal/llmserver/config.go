package llmserver

import (
	"io"
	"strings"
	"time"
)

// Config configures a Server. The zero value is ready to use.
type Config struct {
	// Models are the ids listed by GET /v1/models. Requests may name any model;
	// the answer echoes the requested name. Empty means DefaultModels.
	Models []string

	// Answer returns the assistant's text for the last user message. It must be
	// deterministic for the server to be. Nil means DefaultAnswer.
	Answer func(question string) string

	// APIKey, when set, is the only key accepted, as each API takes it:
	// OpenAI a bearer token (else 401 invalid_api_key), Anthropic x-api-key
	// or a bearer token (else 401 authentication_error), Gemini
	// x-goog-api-key or ?key= (else 403 without a key, 400 API_KEY_INVALID
	// with a wrong one). Empty accepts any key, or none.
	APIKey string

	// Now stamps created/created_at. Nil means time.Now.
	Now func() time.Time

	// Rand is the source of the random part of ids. A sequence number is part
	// of every id too, so ids stay unique even with a constant reader. Nil
	// means crypto/rand.
	Rand io.Reader

	// MaxCalls bounds the history kept for Calls. Zero (or less) means 1024.
	MaxCalls int
}

// DefaultModels are listed by GET /v1/models when Config.Models is empty.
var DefaultModels = []string{"gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini"}

// BouvetQuestion and BouvetAnswer are the canned exchange of DefaultAnswer,
// for demos and tests that want a known answer.
const (
	BouvetQuestion = "In which ocean is Bouvet Island?"
	BouvetAnswer   = "South Atlantic Ocean"
)

// DefaultAnswer answers BouvetAnswer to any question that mentions Bouvet
// Island and otherwise repeats the question back.
func DefaultAnswer(question string) string {
	if strings.Contains(strings.ToLower(question), "bouvet island") {
		return BouvetAnswer
	}
	q := strings.TrimSpace(question)
	if q == "" {
		return "You said nothing."
	}
	return "You said: " + q
}

// withDefaults returns c with its zero fields set to their defaults. Rand
// stays nil: randomBytes reads crypto/rand itself.
func (c Config) withDefaults() Config {
	if len(c.Models) == 0 {
		c.Models = DefaultModels
	}
	if c.Answer == nil {
		c.Answer = DefaultAnswer
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = 1024
	}
	return c
}
