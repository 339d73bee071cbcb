package llmserver

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// The wire shapes below follow openai/types/responses/response.py and the
// response_*_event.py files of the Python SDK (openai 3.51).

type responsesRequest struct {
	Model              *string         `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       json.RawMessage `json:"instructions"`
	Stream             bool            `json:"stream"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Metadata           json.RawMessage `json:"metadata"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Store              *bool           `json:"store"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
}

// inputItem is one element of an array input. Only messages carry text we
// use; other items (function call outputs, reasoning) are skipped.
type inputItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type response struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          int64           `json:"created_at"`
	Status             string          `json:"status"`
	Background         bool            `json:"background"`
	CompletedAt        *int64          `json:"completed_at"`
	Error              json.RawMessage `json:"error"`
	IncompleteDetails  json.RawMessage `json:"incomplete_details"`
	Instructions       json.RawMessage `json:"instructions"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	MaxToolCalls       json.RawMessage `json:"max_tool_calls"`
	Model              string          `json:"model"`
	Output             []outputMessage `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Reasoning          struct {
		Effort  json.RawMessage `json:"effort"`
		Summary json.RawMessage `json:"summary"`
	} `json:"reasoning"`
	ServiceTier string  `json:"service_tier"`
	Store       bool    `json:"store"`
	Temperature float64 `json:"temperature"`
	Text        struct {
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
		Verbosity string `json:"verbosity"`
	} `json:"text"`
	ToolChoice  string          `json:"tool_choice"`
	Tools       []struct{}      `json:"tools"`
	TopLogprobs int             `json:"top_logprobs"`
	TopP        float64         `json:"top_p"`
	Truncation  string          `json:"truncation"`
	Usage       *responseUsage  `json:"usage"`
	User        json.RawMessage `json:"user"`
	Metadata    json.RawMessage `json:"metadata"`
}

type outputMessage struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Content []outputText `json:"content"`
	Role    string       `json:"role"`
}

type outputText struct {
	Type        string     `json:"type"`
	Annotations []struct{} `json:"annotations"`
	Logprobs    []struct{} `json:"logprobs"`
	Text        string     `json:"text"`
}

type responseUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens     int `json:"cached_tokens"`
		CacheWriteTokens int `json:"cache_write_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

func (s *Server) responses(w http.ResponseWriter, r *http.Request) {
	var req responsesRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Model == nil || *req.Model == "" {
		writeError(w, http.StatusBadRequest, missingParam("model"))
		return
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		writeError(w, http.StatusBadRequest, missingParam("input"))
		return
	}
	question, inputTokens, errParam := readInput(req.Input)
	if errParam != "" {
		writeError(w, http.StatusBadRequest, invalidType(errParam, "a string or an array of input items"))
		return
	}
	if len(req.Instructions) > 0 && string(req.Instructions) != "null" {
		text, ok := contentText(req.Instructions)
		if !ok {
			writeError(w, http.StatusBadRequest, invalidType("instructions", "a string"))
			return
		}
		inputTokens += messageOverhead + countTokens(text)
	}

	answer := s.cfg.Answer(question)
	id := s.newID("resp_", 50)
	msgID := s.newID("msg_", 50)
	created := s.cfg.Now().Unix()
	s.record(Call{Provider: ProviderOpenAI, Endpoint: r.URL.Path, ID: id, Model: *req.Model, Stream: req.Stream, Question: question, Answer: answer})

	usage := &responseUsage{InputTokens: inputTokens, OutputTokens: countTokens(answer)}
	usage.TotalTokens = usage.InputTokens + usage.OutputTokens

	resp := newResponse(id, created, *req.Model, req)
	done := outputMessage{
		ID: msgID, Type: "message", Status: "completed", Role: "assistant",
		Content: []outputText{newOutputText(answer)},
	}
	complete := func() {
		resp.Status = "completed"
		resp.CompletedAt = &created
		resp.Output = []outputMessage{done}
		resp.Usage = usage
	}

	if !req.Stream {
		complete()
		writeJSON(w, http.StatusOK, resp)
		return
	}

	// The event sequence of a streamed text answer, as documented in the
	// API reference ("Streaming events") and typed in the SDK's
	// ResponseStreamEvent union.
	sse := startSSE(w, r)
	seq := 0
	emit := func(typ string, fields map[string]any) bool {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		return sse.send(typ, fields)
	}
	item := func(status string, content []outputText) outputMessage {
		return outputMessage{ID: msgID, Type: "message", Status: status, Role: "assistant", Content: content}
	}
	// inPart adds the coordinates of the one text part to an event's fields.
	inPart := func(fields map[string]any) map[string]any {
		fields["item_id"], fields["output_index"], fields["content_index"] = msgID, 0, 0
		return fields
	}

	ok := emit("response.created", map[string]any{"response": resp}) &&
		emit("response.in_progress", map[string]any{"response": resp}) &&
		emit("response.output_item.added", map[string]any{"output_index": 0, "item": item("in_progress", []outputText{})}) &&
		emit("response.content_part.added", inPart(map[string]any{"part": newOutputText("")}))
	for _, p := range pieces(answer) {
		ok = ok && emit("response.output_text.delta", inPart(map[string]any{"delta": p, "logprobs": []struct{}{}}))
	}
	ok = ok &&
		emit("response.output_text.done", inPart(map[string]any{"text": answer, "logprobs": []struct{}{}})) &&
		emit("response.content_part.done", inPart(map[string]any{"part": newOutputText(answer)})) &&
		emit("response.output_item.done", map[string]any{"output_index": 0, "item": done})
	if ok {
		complete()
		emit("response.completed", map[string]any{"response": resp})
	}
}

func newResponse(id string, created int64, model string, req responsesRequest) response {
	resp := response{
		ID: id, Object: "response", CreatedAt: created, Status: "in_progress",
		Error: jsonNull, IncompleteDetails: jsonNull, Instructions: jsonNull, MaxToolCalls: jsonNull,
		Model: model, Output: []outputMessage{}, ParallelToolCalls: true,
		MaxOutputTokens: req.MaxOutputTokens, PreviousResponseID: req.PreviousResponseID,
		ServiceTier: "default", Store: true, Temperature: 1, ToolChoice: "auto", Tools: []struct{}{},
		TopP: 1, Truncation: "disabled", User: jsonNull, Metadata: json.RawMessage("{}"),
	}
	resp.Reasoning.Effort, resp.Reasoning.Summary = jsonNull, jsonNull
	resp.Text.Format.Type, resp.Text.Verbosity = "text", "medium"
	if len(req.Instructions) > 0 {
		resp.Instructions = req.Instructions
	}
	if len(req.Metadata) > 0 && string(req.Metadata) != "null" {
		resp.Metadata = req.Metadata
	}
	if req.Store != nil {
		resp.Store = *req.Store
	}
	if req.Temperature != nil {
		resp.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		resp.TopP = *req.TopP
	}
	return resp
}

func newOutputText(text string) outputText {
	return outputText{Type: "output_text", Annotations: []struct{}{}, Logprobs: []struct{}{}, Text: text}
}

// readInput returns the question (the last user message, else the last text)
// and an input token estimate. errParam names the offending field when raw is
// not a string or an array of items.
func readInput(raw json.RawMessage) (question string, tokens int, errParam string) {
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return text, messageOverhead + countTokens(text) + replyPriming, ""
	}
	var items []inputItem
	if err := json.Unmarshal(raw, &items); err != nil {
		return "", 0, "input"
	}
	tokens = replyPriming
	lastText := ""
	for i, it := range items {
		if it.Type != "" && it.Type != "message" {
			continue
		}
		text, ok := contentText(it.Content)
		if !ok {
			return "", 0, fmt.Sprintf("input[%d].content", i)
		}
		tokens += messageOverhead + countTokens(text)
		lastText = text
		if it.Role == "user" {
			question = text
		}
	}
	if question == "" {
		question = lastText
	}
	return question, tokens, ""
}
