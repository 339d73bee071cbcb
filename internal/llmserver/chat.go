package llmserver

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// The wire shapes below follow openai/types/chat/chat_completion.py and
// chat_completion_chunk.py of the Python SDK (openai 3.51).

type chatRequest struct {
	Model         *string       `json:"model"`
	Messages      []chatMessage `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             chatUsage    `json:"usage"`
	ServiceTier       string       `json:"service_tier"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatAnswer      `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatAnswer struct {
	Role        string          `json:"role"`
	Content     string          `json:"content"`
	Refusal     json.RawMessage `json:"refusal"`
	Annotations []struct{}      `json:"annotations"`
}

type chatUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
		AudioTokens  int `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens          int `json:"reasoning_tokens"`
		AudioTokens              int `json:"audio_tokens"`
		AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
}

type chatChunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	ServiceTier       string          `json:"service_tier"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []chunkChoice   `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int             `json:"index"`
	Delta        chunkDelta      `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chunkDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

var jsonNull = json.RawMessage("null")

// systemFingerprint is constant: the backend never changes.
const systemFingerprint = "fp_llmserver"

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Model == nil || *req.Model == "" {
		writeError(w, http.StatusBadRequest, missingParam("model"))
		return
	}
	if req.Messages == nil {
		writeError(w, http.StatusBadRequest, missingParam("messages"))
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, apiError{
			Message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
			Type:    "invalid_request_error",
			Param:   "messages",
			Code:    "empty_array",
		})
		return
	}
	if req.StreamOptions != nil && !req.Stream {
		writeError(w, http.StatusBadRequest, apiError{
			Message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
			Type:    "invalid_request_error",
			Param:   "stream_options",
		})
		return
	}

	question, promptTokens := "", replyPriming
	lastText := ""
	for i, m := range req.Messages {
		text, ok := contentText(m.Content)
		if !ok {
			writeError(w, http.StatusBadRequest, invalidType(fmt.Sprintf("messages[%d].content", i), "a string or an array of content parts"))
			return
		}
		promptTokens += messageOverhead + countTokens(text)
		lastText = text
		if m.Role == "user" {
			question = text
		}
	}
	if question == "" {
		question = lastText
	}

	answer := s.cfg.Answer(question)
	id := s.newID("chatcmpl-", 29)
	created := s.cfg.Now().Unix()
	s.record(Call{Provider: ProviderOpenAI, Endpoint: r.URL.Path, ID: id, Model: *req.Model, Stream: req.Stream, Question: question, Answer: answer})

	usage := chatUsage{PromptTokens: promptTokens, CompletionTokens: countTokens(answer)}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens

	if !req.Stream {
		writeJSON(w, http.StatusOK, chatCompletion{
			ID:      id,
			Object:  "chat.completion",
			Created: created,
			Model:   *req.Model,
			Choices: []chatChoice{{
				Message:      chatAnswer{Role: "assistant", Content: answer, Refusal: jsonNull, Annotations: []struct{}{}},
				Logprobs:     jsonNull,
				FinishReason: "stop",
			}},
			Usage:             usage,
			ServiceTier:       "default",
			SystemFingerprint: systemFingerprint,
		})
		return
	}

	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	chunk := func(choices []chunkChoice) chatChunk {
		c := chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: created, Model: *req.Model,
			ServiceTier: "default", SystemFingerprint: systemFingerprint, Choices: choices,
		}
		// With include_usage, OpenAI sends "usage": null on every chunk but
		// the last; without it, no usage key at all.
		if includeUsage {
			c.Usage = jsonNull
		}
		return c
	}
	delta := func(d chunkDelta, finish *string) []chunkChoice {
		return []chunkChoice{{Delta: d, Logprobs: jsonNull, FinishReason: finish}}
	}

	sse := startSSE(w, r)
	empty := ""
	if !sse.send("", chunk(delta(chunkDelta{Role: "assistant", Content: &empty}, nil))) {
		return
	}
	for _, p := range pieces(answer) {
		if !sse.send("", chunk(delta(chunkDelta{Content: &p}, nil))) {
			return
		}
	}
	stop := "stop"
	if !sse.send("", chunk(delta(chunkDelta{}, &stop))) {
		return
	}
	if includeUsage {
		last := chunk([]chunkChoice{})
		last.Usage, _ = json.Marshal(usage)
		if !sse.send("", last) {
			return
		}
	}
	sse.sendRaw("", []byte("[DONE]"))
}
