package llmserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
)

// The Anthropic Messages API, POST /v1/messages. The wire shapes follow
// anthropic/types/message.py, usage.py and the raw_*_event.py files of the
// Python SDK (anthropic 2.15) and the API reference's "Streaming Messages".

type anthropicRequest struct {
	Model     *string            `json:"model"`
	MaxTokens *int               `json:"max_tokens"`
	Messages  []anthropicMessage `json:"messages"`
	System    json.RawMessage    `json:"system"`
	Stream    bool               `json:"stream"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// anthropicMessageObject is a Message: the answer, and the message of the
// message_start event (then with no content and a null stop_reason).
type anthropicMessageObject struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []anthropicText `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        anthropicUsage  `json:"usage"`
}

type anthropicText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	CacheCreation            struct {
		Ephemeral5mInputTokens int `json:"ephemeral_5m_input_tokens"`
		Ephemeral1hInputTokens int `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	OutputTokens int    `json:"output_tokens"`
	ServiceTier  string `json:"service_tier"`
}

// anthropicError is the body of an Anthropic error answer:
// {"type":"error","error":{"type":...,"message":...},"request_id":...}.
type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func writeAnthropicError(w http.ResponseWriter, status int, typ, msg string) {
	e := anthropicError{Type: "error", RequestID: w.Header().Get("request-id")}
	e.Error.Type, e.Error.Message = typ, msg
	writeJSON(w, status, e)
}

func anthropicInvalid(w http.ResponseWriter, msg string) {
	writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", msg)
}

// serveAnthropic answers /v1/messages and anything under it.
func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("request-id", "req_01"+s.randomString(22, base62))
	if !s.anthropicAuthorized(w, r) {
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		writeAnthropicError(w, http.StatusNotFound, "not_found_error", "Not Found")
		return
	}
	s.anthropicMessages(w, r)
}

// anthropicAuthorized checks Config.APIKey against x-api-key, the header the
// SDK sends for api_key, or a bearer token (the SDK's auth_token).
func (s *Server) anthropicAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	key, bearer := r.Header.Get("x-api-key"), r.Header.Get("Authorization")
	if key == s.cfg.APIKey || bearer == "Bearer "+s.cfg.APIKey {
		return true
	}
	msg := "invalid x-api-key"
	if key == "" && bearer == "" {
		msg = "x-api-key header is required"
	}
	writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", msg)
	return false
}

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	var req anthropicRequest
	if e := readBody(w, r, &req); e != nil {
		switch {
		case e.tooLarge > 0:
			writeAnthropicError(w, http.StatusRequestEntityTooLarge, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
		case e.readErr != nil:
			anthropicInvalid(w, "Could not read the request body: "+e.readErr.Error())
		case e.field != "":
			anthropicInvalid(w, fmt.Sprintf("%s: Input should be a valid %s", e.field, pydanticTypeName(e.kind)))
		default:
			anthropicInvalid(w, "The request body is not valid JSON: "+e.syntax.Error())
		}
		return
	}
	// Checked in the order of the API's own validation, which names the
	// first missing field.
	switch {
	case req.Model == nil:
		anthropicInvalid(w, "model: Field required")
		return
	case *req.Model == "":
		anthropicInvalid(w, "model: String should have at least 1 character")
		return
	case req.MaxTokens == nil:
		anthropicInvalid(w, "max_tokens: Field required")
		return
	case *req.MaxTokens < 1:
		anthropicInvalid(w, "max_tokens: Input should be greater than or equal to 1")
		return
	case req.Messages == nil:
		anthropicInvalid(w, "messages: Field required")
		return
	case len(req.Messages) == 0:
		anthropicInvalid(w, "messages: at least one message is required")
		return
	}

	inputTokens := replyPriming
	if len(req.System) > 0 && string(req.System) != "null" {
		text, ok := contentText(req.System)
		if !ok {
			anthropicInvalid(w, "system: Input should be a valid list")
			return
		}
		inputTokens += messageOverhead + countTokens(text)
	}
	question, lastText := "", ""
	for i, m := range req.Messages {
		switch m.Role {
		case "user", "assistant":
		case "system":
			anthropicInvalid(w, fmt.Sprintf(`messages.%d.role: Unexpected role "system". The Messages API accepts a top-level `+"`system`"+` parameter, not "system" as an input message role.`, i))
			return
		default:
			anthropicInvalid(w, fmt.Sprintf("messages.%d.role: Input should be 'user' or 'assistant'", i))
			return
		}
		if len(m.Content) == 0 || string(m.Content) == "null" {
			anthropicInvalid(w, fmt.Sprintf("messages.%d.content: Field required", i))
			return
		}
		text, ok := contentText(m.Content)
		if !ok {
			anthropicInvalid(w, fmt.Sprintf("messages.%d.content: Input should be a valid list", i))
			return
		}
		inputTokens += messageOverhead + countTokens(text)
		lastText = text
		if m.Role == "user" {
			question = text
		}
	}
	if question == "" {
		question = lastText
	}

	// Like the real model, stop at max_tokens.
	parts, stopReason := pieces(s.cfg.Answer(question)), "end_turn"
	if len(parts) > *req.MaxTokens {
		parts, stopReason = parts[:*req.MaxTokens], "max_tokens"
	}
	answer := strings.Join(parts, "")
	id := s.newIDIn("msg_01", base62, 6, 22)
	s.record(Call{Provider: ProviderAnthropic, Endpoint: r.URL.Path, ID: id, Model: *req.Model, Stream: req.Stream, Question: question, Answer: answer})

	usage := anthropicUsage{InputTokens: inputTokens, OutputTokens: len(parts), ServiceTier: "standard"}
	msg := anthropicMessageObject{
		ID: id, Type: "message", Role: "assistant", Model: *req.Model,
		Content:    []anthropicText{{Type: "text", Text: answer}},
		StopReason: &stopReason, Usage: usage,
	}
	if !req.Stream {
		writeJSON(w, http.StatusOK, msg)
		return
	}

	// The event flow of "Streaming Messages": message_start (no content yet,
	// stop_reason null), one content block (start, deltas, stop) with a ping
	// after its start, message_delta with the stop reason and the output
	// tokens, message_stop.
	sse := startSSE(w, r)
	start := msg
	start.Content, start.StopReason = []anthropicText{}, nil
	start.Usage.OutputTokens = 1
	ok := sse.send("message_start", anthropicEvent{Type: "message_start", Message: &start}) &&
		sse.send("content_block_start", anthropicEvent{Type: "content_block_start", Index: ptr(0), ContentBlock: &anthropicText{Type: "text", Text: ""}}) &&
		sse.send("ping", anthropicEvent{Type: "ping"})
	for _, p := range parts {
		ok = ok && sse.send("content_block_delta", anthropicEvent{Type: "content_block_delta", Index: ptr(0), Delta: &anthropicDelta{Type: "text_delta", Text: &p}})
	}
	_ = ok &&
		sse.send("content_block_stop", anthropicEvent{Type: "content_block_stop", Index: ptr(0)}) &&
		sse.send("message_delta", anthropicEvent{
			Type:  "message_delta",
			Delta: &anthropicDelta{StopReason: &stopReason, StopSequence: jsonNull},
			Usage: &anthropicDeltaUsage{OutputTokens: len(parts)},
		}) &&
		sse.send("message_stop", anthropicEvent{Type: "message_stop"})
}

// anthropicEvent is any event of a message stream, with its fields in the
// order Anthropic sends them.
type anthropicEvent struct {
	Type         string                  `json:"type"`
	Message      *anthropicMessageObject `json:"message,omitempty"`
	Index        *int                    `json:"index,omitempty"`
	ContentBlock *anthropicText          `json:"content_block,omitempty"`
	Delta        *anthropicDelta         `json:"delta,omitempty"`
	Usage        *anthropicDeltaUsage    `json:"usage,omitempty"`
}

// anthropicDelta is the delta of content_block_delta (a text_delta) or of
// message_delta (stop_reason and stop_sequence, no type).
type anthropicDelta struct {
	Type         string          `json:"type,omitempty"`
	Text         *string         `json:"text,omitempty"`
	StopReason   *string         `json:"stop_reason,omitempty"`
	StopSequence json.RawMessage `json:"stop_sequence,omitempty"`
}

type anthropicDeltaUsage struct {
	OutputTokens int `json:"output_tokens"`
}

func ptr[T any](v T) *T { return &v }

// pydanticTypeName names a Go kind the way the Anthropic API's validation
// messages do ("Input should be a valid list").
func pydanticTypeName(kind reflect.Kind) string {
	switch kind {
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "dictionary"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Float32, reflect.Float64:
		return "number"
	default:
		return "integer"
	}
}
