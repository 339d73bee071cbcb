package llmserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// The Gemini API (generativelanguage.googleapis.com) as the google-genai SDK
// calls it: POST /v1beta/models/{model}:generateContent, and
// :streamGenerateContent?alt=sse for a stream. The wire shapes follow the
// REST reference and GenerateContentResponse in google/genai/types.py
// (google-genai 3.6), whose response_id is JSON "responseId".

type geminiRequest struct {
	Contents               []geminiContent `json:"contents"`
	SystemInstruction      *geminiContent  `json:"systemInstruction"`
	SystemInstructionSnake *geminiContent  `json:"system_instruction"`
	GenerationConfig       *struct {
		MaxOutputTokens      *int `json:"maxOutputTokens"`
		MaxOutputTokensSnake *int `json:"max_output_tokens"`
	} `json:"generationConfig"`
}

// geminiContent is a Content. Only text parts carry text we use; others
// (inline data, function calls) are skipped.
type geminiContent struct {
	Role  string `json:"role"`
	Parts []struct {
		Text *string `json:"text"`
	} `json:"parts"`
}

func (c *geminiContent) text() string {
	var texts []string
	for _, p := range c.Parts {
		if p.Text != nil {
			texts = append(texts, *p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

type geminiResponse struct {
	Candidates    []geminiCandidate `json:"candidates"`
	UsageMetadata geminiUsage       `json:"usageMetadata"`
	ModelVersion  string            `json:"modelVersion"`
	ResponseID    string            `json:"responseId"`
}

type geminiCandidate struct {
	Content struct {
		Parts []geminiTextPart `json:"parts"`
		Role  string           `json:"role"`
	} `json:"content"`
	// FinishReason is on the last chunk of a stream only.
	FinishReason string `json:"finishReason,omitempty"`
	Index        int    `json:"index"`
}

type geminiTextPart struct {
	Text string `json:"text"`
}

type geminiUsage struct {
	PromptTokenCount int `json:"promptTokenCount"`
	// CandidatesTokenCount is absent from all but the last chunk of a stream.
	CandidatesTokenCount int                   `json:"candidatesTokenCount,omitempty"`
	TotalTokenCount      int                   `json:"totalTokenCount"`
	PromptTokensDetails  []geminiModalityCount `json:"promptTokensDetails"`
}

type geminiModalityCount struct {
	Modality   string `json:"modality"`
	TokenCount int    `json:"tokenCount"`
}

// geminiError is the body of a Google API error answer:
// {"error":{"code":400,"message":...,"status":"INVALID_ARGUMENT"}}.
type geminiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []any  `json:"details,omitempty"`
	} `json:"error"`
}

func writeGeminiError(w http.ResponseWriter, code int, status, msg string, details ...any) {
	var e geminiError
	e.Error.Code, e.Error.Message, e.Error.Status, e.Error.Details = code, msg, status, details
	writeGeminiJSON(w, code, e)
}

func geminiInvalid(w http.ResponseWriter, msg string) {
	writeGeminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", msg)
}

func writeGeminiJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	body, _ := json.Marshal(v) // only our own types
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// geminiVersions are the API versions google-genai can be told to use
// (http_options api_version); v1beta is its default.
var geminiVersions = []string{"v1beta", "v1", "v1alpha"}

// parseGeminiPath splits /{version}/models/{model}:{method}.
func parseGeminiPath(path string) (model, method string, ok bool) {
	for _, v := range geminiVersions {
		rest, found := strings.CutPrefix(path, "/"+v+"/models/")
		if !found {
			continue
		}
		model, method, found = strings.Cut(rest, ":")
		if !found || model == "" || method == "" || strings.Contains(model, "/") {
			return "", "", false
		}
		return model, method, true
	}
	return "", "", false
}

// isGeminiPath tells Gemini requests from OpenAI ones: everything under
// /v1beta/, and models/{model}:{method} under the other versions (the OpenAI
// API has no colons in its paths).
func isGeminiPath(path string) bool {
	if strings.HasPrefix(path, "/v1beta/") {
		return true
	}
	_, _, ok := parseGeminiPath(path)
	return ok
}

func (s *Server) serveGemini(w http.ResponseWriter, r *http.Request) {
	if !s.geminiAuthorized(w, r) {
		return
	}
	model, method, ok := parseGeminiPath(r.URL.Path)
	if !ok || r.Method != http.MethodPost || (method != "generateContent" && method != "streamGenerateContent") {
		writeGeminiError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("Method not found: %s %s", r.Method, r.URL.Path))
		return
	}
	s.generateContent(w, r, model, method == "streamGenerateContent")
}

// geminiAuthorized checks Config.APIKey against the x-goog-api-key header
// (what google-genai sends) or the key query parameter, answering as Google
// does: 403 without a key, 400 API_KEY_INVALID with a wrong one.
func (s *Server) geminiAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	key := r.Header.Get("x-goog-api-key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	switch key {
	case s.cfg.APIKey:
		return true
	case "":
		writeGeminiError(w, http.StatusForbidden, "PERMISSION_DENIED",
			"Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
	default:
		writeGeminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
			map[string]any{
				"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
				"reason":   "API_KEY_INVALID",
				"domain":   "googleapis.com",
				"metadata": map[string]string{"service": "generativelanguage.googleapis.com"},
			})
	}
	return false
}

func (s *Server) generateContent(w http.ResponseWriter, r *http.Request, model string, stream bool) {
	var req geminiRequest
	if e := readBody(w, r, &req); e != nil {
		switch {
		case e.tooLarge > 0:
			geminiInvalid(w, fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", e.tooLarge))
		case e.readErr != nil:
			geminiInvalid(w, "Could not read the request body: "+e.readErr.Error())
		case e.field != "":
			geminiInvalid(w, fmt.Sprintf("Invalid JSON payload received. Invalid value at '%s' (%s), %s", e.field, jsonTypeName(e.kind), e.got))
		default:
			geminiInvalid(w, "Invalid JSON payload received. Unexpected token.")
		}
		return
	}
	if len(req.Contents) == 0 {
		geminiInvalid(w, "* GenerateContentRequest.contents: contents is not specified\n")
		return
	}
	promptTokens := 0
	system := req.SystemInstruction
	if system == nil {
		system = req.SystemInstructionSnake
	}
	if system != nil {
		promptTokens += countTokens(system.text())
	}
	question, lastText := "", ""
	for i, c := range req.Contents {
		if c.Role != "" && c.Role != "user" && c.Role != "model" {
			geminiInvalid(w, "Please use a valid role: user, model.")
			return
		}
		if len(c.Parts) == 0 {
			geminiInvalid(w, fmt.Sprintf("* GenerateContentRequest.contents[%d].parts: contents.parts must not be empty.\n", i))
			return
		}
		text := c.text()
		promptTokens += countTokens(text)
		lastText = text
		if c.Role != "model" {
			question = text
		}
	}
	if question == "" {
		question = lastText
	}

	parts, finish := pieces(s.cfg.Answer(question)), "STOP"
	if g := req.GenerationConfig; g != nil {
		limit := g.MaxOutputTokens
		if limit == nil {
			limit = g.MaxOutputTokensSnake
		}
		if limit != nil && *limit > 0 && len(parts) > *limit {
			parts, finish = parts[:*limit], "MAX_TOKENS"
		}
	}
	answer := strings.Join(parts, "")
	id := s.newIDIn("", base64URL, 6, 23)
	s.record(Call{Provider: ProviderGemini, Endpoint: r.URL.Path, ID: id, Model: model, Stream: stream, Question: question, Answer: answer})

	// chunk is a response carrying text; final adds the finish reason and
	// the output token count, as the last chunk of a stream does.
	chunk := func(text string, final bool) geminiResponse {
		c := geminiCandidate{Index: 0}
		c.Content.Parts, c.Content.Role = []geminiTextPart{{Text: text}}, "model"
		u := geminiUsage{
			PromptTokenCount: promptTokens, TotalTokenCount: promptTokens,
			PromptTokensDetails: []geminiModalityCount{{Modality: "TEXT", TokenCount: promptTokens}},
		}
		if final {
			c.FinishReason = finish
			u.CandidatesTokenCount = len(parts)
			u.TotalTokenCount += len(parts)
		}
		return geminiResponse{Candidates: []geminiCandidate{c}, UsageMetadata: u, ModelVersion: model, ResponseID: id}
	}
	if !stream {
		writeGeminiJSON(w, http.StatusOK, chunk(answer, true))
		return
	}

	// A stream is one chunk per piece, the last with the finish reason; all
	// share the responseId. With alt=sse they are events (data lines only,
	// CRLF line ends as Google sends them); without, one JSON array.
	chunks := make([]geminiResponse, 0, len(parts))
	for i, p := range parts {
		chunks = append(chunks, chunk(p, i == len(parts)-1))
	}
	if len(chunks) == 0 {
		chunks = append(chunks, chunk("", true))
	}
	if r.URL.Query().Get("alt") == "sse" {
		sse := startSSE(w, r)
		sse.eol = "\r\n"
		for _, c := range chunks {
			if !sse.send("", c) {
				return
			}
		}
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for i, c := range chunks {
		sep := ",\r\n"
		if i == 0 {
			sep = "["
		}
		body, _ := json.Marshal(c)
		if _, err := w.Write(append([]byte(sep), body...)); err != nil {
			return
		}
		_ = rc.Flush()
	}
	_, _ = w.Write([]byte("]"))
}
