package llmserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	anthropicIDPattern = regexp.MustCompile(`^msg_01[0-9A-Za-z]{22}$`)
	geminiIDPattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{23}$`)
)

const (
	bouvetAnthropic = `{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.","messages":[{"role":"user","content":"In which ocean is Bouvet Island?"}]}`
	bouvetGemini    = `{"contents":[{"role":"user","parts":[{"text":"In which ocean is Bouvet Island?"}]}],"systemInstruction":{"parts":[{"text":"Be brief."}]}}`
	geminiPath      = "/v1beta/models/gemini-2.5-flash:generateContent"
	geminiSSEPath   = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
)

// do sends method path with body and headers and returns the answer.
func do(t *testing.T, method, url, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[http.CanonicalHeaderKey(k)] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// testMessage reads a Message, keeping null and absent fields apart.
type testMessage struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []anthropicText `json:"content"`
	StopReason   json.RawMessage `json:"stop_reason"`
	StopSequence json.RawMessage `json:"stop_sequence"`
	Usage        anthropicUsage  `json:"usage"`
}

func TestAnthropicMessages(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, m testMessage)
	}{
		{
			name: "shape",
			body: bouvetAnthropic,
			check: func(t *testing.T, m testMessage) {
				if !anthropicIDPattern.MatchString(m.ID) {
					t.Errorf("id %q", m.ID)
				}
				if m.Type != "message" || m.Role != "assistant" || m.Model != "claude-sonnet-4-5" {
					t.Errorf("type %q role %q model %q", m.Type, m.Role, m.Model)
				}
				if len(m.Content) != 1 || m.Content[0] != (anthropicText{Type: "text", Text: BouvetAnswer}) {
					t.Errorf("content %+v", m.Content)
				}
				if string(m.StopReason) != `"end_turn"` || string(m.StopSequence) != "null" {
					t.Errorf("stop_reason %s stop_sequence %s", m.StopReason, m.StopSequence)
				}
				if u := m.Usage; u.InputTokens <= 0 || u.OutputTokens != 3 || u.ServiceTier != "standard" {
					t.Errorf("usage %+v", u)
				}
			},
		},
		{
			name: "content blocks and system blocks",
			body: `{"model":"m","max_tokens":50,"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":"old"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"text","text":"new"},{"type":"image","source":{}}]}]}`,
			check: func(t *testing.T, m testMessage) {
				if m.Content[0].Text != "You said: new" {
					t.Errorf("answer %q", m.Content[0].Text)
				}
			},
		},
		{
			name: "max_tokens cuts the answer",
			body: `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"one two three"}]}`,
			check: func(t *testing.T, m testMessage) {
				if m.Content[0].Text != "You said" || string(m.StopReason) != `"max_tokens"` || m.Usage.OutputTokens != 2 {
					t.Errorf("text %q stop_reason %s usage %+v", m.Content[0].Text, m.StopReason, m.Usage)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, Config{})
			resp, body := do(t, http.MethodPost, ts.URL+"/v1/messages", tt.body, http.Header{"anthropic-version": {"2023-06-01"}, "x-api-key": {"any"}})
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content-type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if !strings.HasPrefix(resp.Header.Get("request-id"), "req_") || resp.Header.Get("openai-version") != "" {
				t.Errorf("headers %v", resp.Header)
			}
			m := decode[testMessage](t, string(body))
			tt.check(t, m)
			call := srv.Calls()[0]
			if call.Provider != ProviderAnthropic || call.Endpoint != "/v1/messages" || call.ID != m.ID || call.Answer != m.Content[0].Text {
				t.Errorf("call %+v", call)
			}
			if srv.LastAnthropicID() != m.ID || srv.LastID() != m.ID || srv.LastOpenAIID() != "" || srv.LastGeminiID() != "" {
				t.Errorf("LastAnthropicID %q LastID %q LastOpenAIID %q LastGeminiID %q, want %q",
					srv.LastAnthropicID(), srv.LastID(), srv.LastOpenAIID(), srv.LastGeminiID(), m.ID)
			}
		})
	}
}

// testAnthropicEvent reads any event of a message stream.
type testAnthropicEvent struct {
	Type    string       `json:"type"`
	Message *testMessage `json:"message"`
	Index   *int         `json:"index"`
	Block   *struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	} `json:"content_block"`
	Delta map[string]json.RawMessage `json:"delta"`
	Usage map[string]json.RawMessage `json:"usage"`
}

func TestAnthropicStream(t *testing.T) {
	srv, ts := newTestServer(t, Config{})
	resp, body := post(t, ts.URL+"/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"In which ocean is Bouvet Island?"}]}`)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content-type %q: %s", ct, body)
	}
	if bytes.Contains(body, []byte("\r")) {
		t.Error("Anthropic streams end lines with LF only")
	}
	call := srv.Calls()[0]
	var names []string
	var text strings.Builder
	for i, ev := range readSSE(t, body) {
		e := decode[testAnthropicEvent](t, ev.Data)
		if e.Type != ev.Name {
			t.Errorf("event %d: SSE name %q, type %q", i, ev.Name, e.Type)
		}
		if !strings.HasPrefix(ev.Data, `{"type":`) {
			t.Errorf("event %d does not start with its type: %s", i, ev.Data)
		}
		switch e.Type {
		case "message_start":
			m := e.Message
			if m == nil || m.ID != call.ID || m.Type != "message" || m.Role != "assistant" || m.Model != "claude-sonnet-4-5" ||
				len(m.Content) != 0 || string(m.StopReason) != "null" || m.Usage.InputTokens <= 0 {
				t.Errorf("message_start %s", ev.Data)
			}
		case "content_block_start":
			if e.Index == nil || *e.Index != 0 || e.Block == nil || e.Block.Type != "text" || e.Block.Text == nil || *e.Block.Text != "" {
				t.Errorf("content_block_start %s", ev.Data)
			}
		case "content_block_delta":
			if e.Index == nil || *e.Index != 0 || string(e.Delta["type"]) != `"text_delta"` {
				t.Errorf("content_block_delta %s", ev.Data)
			}
			text.WriteString(decode[string](t, string(e.Delta["text"])))
		case "content_block_stop":
			if e.Index == nil || *e.Index != 0 {
				t.Errorf("content_block_stop %s", ev.Data)
			}
		case "message_delta":
			if string(e.Delta["stop_reason"]) != `"end_turn"` || string(e.Delta["stop_sequence"]) != "null" || string(e.Usage["output_tokens"]) != "3" {
				t.Errorf("message_delta %s", ev.Data)
			}
		}
		if e.Type != "content_block_delta" || names[len(names)-1] != e.Type {
			names = append(names, e.Type)
		}
	}
	want := []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
	if !slices.Equal(names, want) {
		t.Errorf("events (deltas collapsed):\n got %v\nwant %v", names, want)
	}
	if text.String() != BouvetAnswer || call.Answer != BouvetAnswer || !call.Stream {
		t.Errorf("deltas %q, call %+v", text.String(), call)
	}
	if !anthropicIDPattern.MatchString(call.ID) || srv.LastAnthropicID() != call.ID {
		t.Errorf("id %q, LastAnthropicID %q", call.ID, srv.LastAnthropicID())
	}
}

func TestAnthropicErrors(t *testing.T) {
	type errBody struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	tests := []struct {
		name    string
		cfg     Config
		method  string
		path    string
		header  http.Header
		body    string
		status  int
		errType string
		message string // a part of the message
	}{
		{name: "bad JSON", body: `{"model":`, status: 400, message: "not valid JSON"},
		{name: "missing model", body: `{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, status: 400, message: "model: Field required"},
		{name: "missing max_tokens", body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, status: 400, message: "max_tokens: Field required"},
		{name: "zero max_tokens", body: `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, status: 400, message: "max_tokens: Input should be greater than or equal to 1"},
		{name: "missing messages", body: `{"model":"m","max_tokens":10}`, status: 400, message: "messages: Field required"},
		{name: "empty messages", body: `{"model":"m","max_tokens":10,"messages":[]}`, status: 400, message: "at least one message is required"},
		{name: "messages not a list", body: `{"model":"m","max_tokens":10,"messages":"hi"}`, status: 400, message: "messages: Input should be a valid list"},
		{name: "system role", body: `{"model":"m","max_tokens":10,"messages":[{"role":"system","content":"hi"}]}`, status: 400, message: `messages.0.role: Unexpected role "system"`},
		{name: "unknown role", body: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"a"},{"role":"bot","content":"hi"}]}`, status: 400, message: "messages.1.role: Input should be 'user' or 'assistant'"},
		{name: "bad content", body: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":42}]}`, status: 400, message: "messages.0.content"},
		{name: "missing content", body: `{"model":"m","max_tokens":10,"messages":[{"role":"user"}]}`, status: 400, message: "messages.0.content: Field required"},
		{name: "bad system", body: `{"model":"m","max_tokens":10,"system":7,"messages":[{"role":"user","content":"hi"}]}`, status: 400, message: "system:"},
		{name: "unknown path", path: "/v1/messages/batches", body: `{}`, status: 404, errType: "not_found_error"},
		{name: "wrong method", method: http.MethodGet, status: 404, errType: "not_found_error"},
		{name: "no API key", cfg: Config{APIKey: "sk-right"}, body: bouvetAnthropic, status: 401, errType: "authentication_error", message: "x-api-key header is required"},
		{name: "wrong API key", cfg: Config{APIKey: "sk-right"}, header: http.Header{"x-api-key": {"sk-wrong"}}, body: bouvetAnthropic, status: 401, errType: "authentication_error", message: "invalid x-api-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, tt.cfg)
			method, path := cmpOr(tt.method, http.MethodPost), cmpOr(tt.path, "/v1/messages")
			resp, raw := do(t, method, ts.URL+path, tt.body, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, raw)
			}
			e := decode[errBody](t, string(raw))
			if e.Type != "error" || e.Error.Type != cmpOr(tt.errType, "invalid_request_error") || !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("error %s", raw)
			}
			if e.RequestID == "" || e.RequestID != resp.Header.Get("request-id") {
				t.Errorf("request_id %q, header %q", e.RequestID, resp.Header.Get("request-id"))
			}
			if len(srv.Calls()) != 0 || srv.LastAnthropicID() != "" {
				t.Errorf("a failed request was recorded: %+v", srv.Calls())
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestAnthropicAPIKeyAccepted(t *testing.T) {
	_, ts := newTestServer(t, Config{APIKey: "sk-right"})
	for _, h := range []http.Header{{"x-api-key": {"sk-right"}}, {"Authorization": {"Bearer sk-right"}}} {
		if resp, body := do(t, http.MethodPost, ts.URL+"/v1/messages", bouvetAnthropic, h); resp.StatusCode != http.StatusOK {
			t.Errorf("%v: status %d: %s", h, resp.StatusCode, body)
		}
	}
}

// testGeminiResponse reads a GenerateContentResponse, keeping absent fields
// apart.
type testGeminiResponse struct {
	Candidates []struct {
		Content struct {
			Parts []map[string]json.RawMessage `json:"parts"`
			Role  string                       `json:"role"`
		} `json:"content"`
		FinishReason *string `json:"finishReason"`
		Index        *int    `json:"index"`
	} `json:"candidates"`
	UsageMetadata map[string]json.RawMessage `json:"usageMetadata"`
	ModelVersion  string                     `json:"modelVersion"`
	ResponseID    string                     `json:"responseId"`
}

func (r testGeminiResponse) text(t *testing.T) string {
	t.Helper()
	if len(r.Candidates) != 1 || len(r.Candidates[0].Content.Parts) != 1 {
		t.Fatalf("candidates %+v", r.Candidates)
	}
	return decode[string](t, string(r.Candidates[0].Content.Parts[0]["text"]))
}

func usageInt(t *testing.T, u map[string]json.RawMessage, key string) int {
	t.Helper()
	if _, ok := u[key]; !ok {
		return -1
	}
	return decode[int](t, string(u[key]))
}

func TestGeminiGenerateContent(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		body  string
		check func(t *testing.T, r testGeminiResponse)
	}{
		{
			name: "shape",
			path: geminiPath,
			body: bouvetGemini,
			check: func(t *testing.T, r testGeminiResponse) {
				if r.text(t) != BouvetAnswer {
					t.Errorf("answer %q", r.text(t))
				}
				c := r.Candidates[0]
				if c.Content.Role != "model" || c.FinishReason == nil || *c.FinishReason != "STOP" || c.Index == nil || *c.Index != 0 {
					t.Errorf("candidate %+v", c)
				}
				if !geminiIDPattern.MatchString(r.ResponseID) || r.ModelVersion != "gemini-2.5-flash" {
					t.Errorf("responseId %q modelVersion %q", r.ResponseID, r.ModelVersion)
				}
				u := r.UsageMetadata
				p, c3, tot := usageInt(t, u, "promptTokenCount"), usageInt(t, u, "candidatesTokenCount"), usageInt(t, u, "totalTokenCount")
				if p != countTokens(BouvetQuestion)+countTokens("Be brief.") || c3 != 3 || tot != p+c3 {
					t.Errorf("usage %v", u)
				}
			},
		},
		{
			name: "last user turn, snake_case, other API version",
			path: "/v1/models/gemini-2.0-flash:generateContent",
			body: `{"contents":[{"parts":[{"text":"old"}]},{"role":"model","parts":[{"text":"ok"}]},{"role":"user","parts":[{"text":"new"},{"inlineData":{"mimeType":"image/png","data":""}}]}],"system_instruction":{"parts":[{"text":"x"}]}}`,
			check: func(t *testing.T, r testGeminiResponse) {
				if r.text(t) != "You said: new" || r.ModelVersion != "gemini-2.0-flash" {
					t.Errorf("answer %q modelVersion %q", r.text(t), r.ModelVersion)
				}
			},
		},
		{
			name: "maxOutputTokens cuts the answer",
			path: geminiPath,
			body: `{"contents":[{"parts":[{"text":"one two three"}]}],"generationConfig":{"maxOutputTokens":2}}`,
			check: func(t *testing.T, r testGeminiResponse) {
				if r.text(t) != "You said" || *r.Candidates[0].FinishReason != "MAX_TOKENS" || usageInt(t, r.UsageMetadata, "candidatesTokenCount") != 2 {
					t.Errorf("answer %q finish %q usage %v", r.text(t), *r.Candidates[0].FinishReason, r.UsageMetadata)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, Config{})
			resp, body := do(t, http.MethodPost, ts.URL+tt.path, tt.body, http.Header{"x-goog-api-key": {"any"}})
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d, content-type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			r := decode[testGeminiResponse](t, string(body))
			tt.check(t, r)
			call := srv.Calls()[0]
			if call.Provider != ProviderGemini || call.Endpoint != strings.Split(tt.path, "?")[0] || call.ID != r.ResponseID || call.Stream || call.Model != r.ModelVersion {
				t.Errorf("call %+v", call)
			}
			if srv.LastGeminiID() != r.ResponseID || srv.LastID() != r.ResponseID || srv.LastAnthropicID() != "" {
				t.Errorf("LastGeminiID %q LastID %q, want %q", srv.LastGeminiID(), srv.LastID(), r.ResponseID)
			}
		})
	}
}

func TestGeminiStream(t *testing.T) {
	srv, ts := newTestServer(t, Config{})
	resp, body := post(t, ts.URL+geminiSSEPath, bouvetGemini)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content-type %q: %s", ct, body)
	}
	if !bytes.HasPrefix(body, []byte("data: {")) || !bytes.HasSuffix(body, []byte("}\r\n\r\n")) || bytes.Count(body, []byte("\n")) != bytes.Count(body, []byte("\r\n")) {
		t.Errorf("not CRLF data-only SSE: %q", body)
	}
	call := srv.Calls()[0]
	events := readSSE(t, body)
	var text strings.Builder
	for i, ev := range events {
		if ev.Name != "" {
			t.Errorf("event %d has a name %q", i, ev.Name)
		}
		r := decode[testGeminiResponse](t, ev.Data)
		text.WriteString(r.text(t))
		if r.ResponseID != call.ID || r.ModelVersion != "gemini-2.5-flash" {
			t.Errorf("chunk %d: responseId %q modelVersion %q, want %q", i, r.ResponseID, r.ModelVersion, call.ID)
		}
		last := i == len(events)-1
		if c := r.Candidates[0]; (c.FinishReason != nil) != last || (last && *c.FinishReason != "STOP") || c.Content.Role != "model" {
			t.Errorf("chunk %d: candidate %s", i, ev.Data)
		}
		u := r.UsageMetadata
		p, c, tot := usageInt(t, u, "promptTokenCount"), usageInt(t, u, "candidatesTokenCount"), usageInt(t, u, "totalTokenCount")
		if p <= 0 || (last && (c != 3 || tot != p+3)) || (!last && (c != -1 || tot != p)) {
			t.Errorf("chunk %d: usage %v", i, u)
		}
	}
	if len(events) != 3 || text.String() != BouvetAnswer || call.Answer != BouvetAnswer || !call.Stream {
		t.Errorf("%d chunks, text %q, call %+v", len(events), text.String(), call)
	}
	if !geminiIDPattern.MatchString(call.ID) || srv.LastGeminiID() != call.ID {
		t.Errorf("id %q, LastGeminiID %q", call.ID, srv.LastGeminiID())
	}

	// Without alt=sse, the chunks come as one JSON array.
	_, body = post(t, ts.URL+"/v1beta/models/gemini-2.5-flash:streamGenerateContent", bouvetGemini)
	arr := decode[[]testGeminiResponse](t, string(body))
	if len(arr) != 3 || arr[0].ResponseID != srv.LastGeminiID() || arr[0].ResponseID == call.ID {
		t.Errorf("array stream %s", body)
	}
}

func TestGeminiErrors(t *testing.T) {
	type errBody struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	tests := []struct {
		name    string
		cfg     Config
		method  string
		path    string
		header  http.Header
		body    string
		status  int
		gstatus string
		message string
		reason  string
	}{
		{name: "bad JSON", body: `{"contents":`, status: 400, message: "Invalid JSON payload received."},
		{name: "contents not a list", body: `{"contents":"hi"}`, status: 400, message: "Invalid JSON payload received."},
		{name: "missing contents", body: `{}`, status: 400, message: "contents is not specified"},
		{name: "empty contents", body: `{"contents":[]}`, status: 400, message: "contents is not specified"},
		{name: "bad role", body: `{"contents":[{"role":"system","parts":[{"text":"hi"}]}]}`, status: 400, message: "Please use a valid role: user, model."},
		{name: "no parts", body: `{"contents":[{"role":"user","parts":[]}]}`, status: 400, message: "contents[0].parts: contents.parts must not be empty"},
		{name: "unknown method", path: "/v1beta/models/gemini-2.5-flash:countTokens", body: `{}`, status: 404, gstatus: "NOT_FOUND"},
		{name: "unknown path", path: "/v1beta/files", body: `{}`, status: 404, gstatus: "NOT_FOUND"},
		{name: "wrong method", method: http.MethodGet, status: 404, gstatus: "NOT_FOUND"},
		{name: "no API key", cfg: Config{APIKey: "k"}, body: bouvetGemini, status: 403, gstatus: "PERMISSION_DENIED", message: "unregistered callers"},
		{name: "wrong API key header", cfg: Config{APIKey: "k"}, header: http.Header{"x-goog-api-key": {"bad"}}, body: bouvetGemini, status: 400, message: "API key not valid", reason: "API_KEY_INVALID"},
		{name: "wrong API key param", cfg: Config{APIKey: "k"}, path: geminiPath + "?key=bad", body: bouvetGemini, status: 400, message: "API key not valid", reason: "API_KEY_INVALID"},
		{name: "OpenAI key is not a Gemini key", cfg: Config{APIKey: "k"}, header: http.Header{"Authorization": {"Bearer k"}}, body: bouvetGemini, status: 403, gstatus: "PERMISSION_DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, tt.cfg)
			method, path := cmpOr(tt.method, http.MethodPost), cmpOr(tt.path, geminiPath)
			resp, raw := do(t, method, ts.URL+path, tt.body, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, raw)
			}
			e := decode[errBody](t, string(raw)).Error
			if e.Code != tt.status || e.Status != cmpOr(tt.gstatus, "INVALID_ARGUMENT") || !strings.Contains(e.Message, tt.message) {
				t.Errorf("error %s", raw)
			}
			if tt.reason != "" && (len(e.Details) != 1 || e.Details[0].Reason != tt.reason) {
				t.Errorf("details %s", raw)
			}
			if len(srv.Calls()) != 0 || srv.LastGeminiID() != "" {
				t.Errorf("a failed request was recorded: %+v", srv.Calls())
			}
		})
	}
}

func TestGeminiAPIKeyAccepted(t *testing.T) {
	_, ts := newTestServer(t, Config{APIKey: "k"})
	for _, tc := range []struct {
		path   string
		header http.Header
	}{
		{geminiPath, http.Header{"x-goog-api-key": {"k"}}},
		{geminiPath + "?key=k", nil},
		{geminiSSEPath + "&key=k", nil},
	} {
		if resp, body := do(t, http.MethodPost, ts.URL+tc.path, bouvetGemini, tc.header); resp.StatusCode != http.StatusOK {
			t.Errorf("%s %v: status %d: %s", tc.path, tc.header, resp.StatusCode, body)
		}
	}
}

// Each provider's last id is kept apart from the others', and ids are
// distinct across providers even when the random part is constant.
func TestLastIDOf(t *testing.T) {
	srv, ts := newTestServer(t, Config{Rand: zeros{}, MaxCalls: 1})
	if srv.LastID() != "" || srv.LastIDOf(ProviderAnthropic) != "" {
		t.Fatal("ids before any call")
	}
	_, b := post(t, ts.URL+"/v1/chat/completions", bouvetChat)
	openaiID := decode[chatCompletion](t, string(b)).ID
	_, b = post(t, ts.URL+"/v1/messages", bouvetAnthropic)
	anthropicID := decode[testMessage](t, string(b)).ID
	_, b = post(t, ts.URL+geminiPath, bouvetGemini)
	geminiID := decode[testGeminiResponse](t, string(b)).ResponseID
	_, b = post(t, ts.URL+"/v1/messages", bouvetAnthropic)
	anthropicID2 := decode[testMessage](t, string(b)).ID

	if anthropicID == anthropicID2 || !anthropicIDPattern.MatchString(anthropicID2) || !geminiIDPattern.MatchString(geminiID) {
		t.Errorf("ids %q %q %q", anthropicID, anthropicID2, geminiID)
	}
	got := map[Provider]string{
		ProviderOpenAI:    srv.LastOpenAIID(),
		ProviderAnthropic: srv.LastAnthropicID(),
		ProviderGemini:    srv.LastGeminiID(),
	}
	want := map[Provider]string{ProviderOpenAI: openaiID, ProviderAnthropic: anthropicID2, ProviderGemini: geminiID}
	for p, id := range want {
		if got[p] != id || srv.LastIDOf(p) != id {
			t.Errorf("%s: last id %q / %q, want %q", p, got[p], srv.LastIDOf(p), id)
		}
	}
	// LastID is the most recent of all; LastIDOf outlives Config.MaxCalls.
	if srv.LastID() != anthropicID2 || len(srv.Calls()) != 1 {
		t.Errorf("LastID %q, calls %+v", srv.LastID(), srv.Calls())
	}
}

// Same request, same answer, for the new APIs too.
func TestDeterministicProviders(t *testing.T) {
	for _, tc := range []struct{ path, body string }{
		{"/v1/messages", bouvetAnthropic},
		{"/v1/messages", strings.Replace(bouvetAnthropic, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)},
		{geminiPath, bouvetGemini},
		{geminiSSEPath, bouvetGemini},
	} {
		var got [][]byte
		for range 2 {
			_, ts := newTestServer(t, Config{Now: fixedNow, Rand: zeros{}})
			_, b := post(t, ts.URL+tc.path, tc.body)
			got = append(got, b)
		}
		if !bytes.Equal(got[0], got[1]) {
			t.Errorf("%s: answers differ:\n%s\n%s", tc.path, got[0], got[1])
		}
	}
}

func TestBaseURL(t *testing.T) {
	if u := New(Config{}).BaseURL(ProviderAnthropic); u != "" {
		t.Errorf("BaseURL of an unstarted server %q", u)
	}
	srv, baseURL, stop, err := Start("", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	root := strings.TrimSuffix(baseURL, "/v1")
	if srv.BaseURL(ProviderOpenAI) != baseURL || srv.BaseURL(ProviderAnthropic) != root || srv.BaseURL(ProviderGemini) != root {
		t.Errorf("base URLs %q %q %q (Start gave %q)", srv.BaseURL(ProviderOpenAI), srv.BaseURL(ProviderAnthropic), srv.BaseURL(ProviderGemini), baseURL)
	}
	// The SDKs add /v1/messages and /v1beta/models/... to these.
	if resp, body := post(t, srv.BaseURL(ProviderAnthropic)+"/v1/messages", bouvetAnthropic); resp.StatusCode != http.StatusOK {
		t.Errorf("anthropic: %d %s", resp.StatusCode, body)
	}
	if resp, body := post(t, srv.BaseURL(ProviderGemini)+geminiPath, bouvetGemini); resp.StatusCode != http.StatusOK {
		t.Errorf("gemini: %d %s", resp.StatusCode, body)
	}
}
