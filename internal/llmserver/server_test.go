package llmserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var fixedNow = func() time.Time { return time.Unix(1700000000, 0) }

// zeros is a Config.Rand that makes ids depend on the sequence number only.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func newTestServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	srv := New(cfg)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts
}

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
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

type sseEvent struct {
	Name string
	Data string
}

// readSSE parses a text/event-stream body: "event:" and "data:" lines,
// events separated by blank lines.
func readSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	var events []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sseEvent{}) {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.Data = strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if cur != (sseEvent{}) {
		t.Fatalf("stream ends without a blank line after %+v", cur)
	}
	return events
}

func decode[T any](t *testing.T, data string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

const bouvetChat = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"In which ocean is Bouvet Island?"}]}`

func TestChatCompletions(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, c chatCompletion)
	}{
		{
			name: "canned answer",
			body: bouvetChat,
			check: func(t *testing.T, c chatCompletion) {
				if got := c.Choices[0].Message.Content; got != BouvetAnswer {
					t.Errorf("answer %q, want %q", got, BouvetAnswer)
				}
			},
		},
		{
			name: "echo of the last user message",
			body: `{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"ok"},{"role":"user","content":"second"}]}`,
			check: func(t *testing.T, c chatCompletion) {
				if got := c.Choices[0].Message.Content; got != "You said: second" {
					t.Errorf("answer %q", got)
				}
			},
		},
		{
			name: "content parts",
			body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Where is Bouvet Island?"},{"type":"image_url","image_url":{"url":"x"}}]}]}`,
			check: func(t *testing.T, c chatCompletion) {
				if got := c.Choices[0].Message.Content; got != BouvetAnswer {
					t.Errorf("answer %q", got)
				}
			},
		},
		{
			name: "shape",
			body: bouvetChat,
			check: func(t *testing.T, c chatCompletion) {
				if !strings.HasPrefix(c.ID, "chatcmpl-") || len(c.ID) != len("chatcmpl-")+29 {
					t.Errorf("id %q", c.ID)
				}
				if c.Object != "chat.completion" || c.Model != "gpt-4o-mini" || c.Created != fixedNow().Unix() {
					t.Errorf("object %q model %q created %d", c.Object, c.Model, c.Created)
				}
				if len(c.Choices) != 1 || c.Choices[0].FinishReason != "stop" || c.Choices[0].Message.Role != "assistant" {
					t.Errorf("choices %+v", c.Choices)
				}
				u := c.Usage
				if u.PromptTokens <= 0 || u.CompletionTokens != 3 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
					t.Errorf("usage %+v", u)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, Config{Now: fixedNow})
			resp, body := post(t, ts.URL+"/v1/chat/completions", tt.body)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content-type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			c := decode[chatCompletion](t, string(body))
			tt.check(t, c)
			if srv.LastID() != c.ID {
				t.Errorf("LastID %q, want %q", srv.LastID(), c.ID)
			}
		})
	}
}

func TestChatCompletionsStream(t *testing.T) {
	tests := []struct {
		name         string
		body         string
		includeUsage bool
	}{
		{name: "without usage", body: `{"model":"m","stream":true,"messages":[{"role":"user","content":"Is Bouvet Island cold?"}]}`},
		{name: "with usage", includeUsage: true, body: `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello, world!"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, Config{})
			resp, body := post(t, ts.URL+"/v1/chat/completions", tt.body)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Fatalf("content-type %q", ct)
			}
			events := readSSE(t, body)
			if last := events[len(events)-1]; last.Data != "[DONE]" || last.Name != "" {
				t.Fatalf("last event %+v, want data: [DONE]", last)
			}
			call := srv.Calls()[0]
			var text strings.Builder
			var usage []json.RawMessage
			var finish []string
			for i, ev := range events[:len(events)-1] {
				c := decode[testChunk](t, ev.Data)
				if c.ID != call.ID || c.Object != "chat.completion.chunk" {
					t.Errorf("chunk %d: id %q object %q, want id %q", i, c.ID, c.Object, call.ID)
				}
				if i == 0 && (len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant") {
					t.Errorf("first chunk has no assistant role: %s", ev.Data)
				}
				for _, ch := range c.Choices {
					if ch.Delta.Content != nil {
						text.WriteString(*ch.Delta.Content)
					}
					if ch.FinishReason != nil {
						finish = append(finish, *ch.FinishReason)
					}
				}
				if len(c.Usage) > 0 && string(c.Usage) != "null" {
					usage = append(usage, c.Usage)
				}
				if tt.includeUsage != (len(c.Usage) > 0) {
					t.Errorf("chunk %d: usage key present=%v with include_usage=%v", i, len(c.Usage) > 0, tt.includeUsage)
				}
			}
			if text.String() != call.Answer {
				t.Errorf("streamed text %q, want %q", text.String(), call.Answer)
			}
			if !slices.Equal(finish, []string{"stop"}) {
				t.Errorf("finish reasons %v", finish)
			}
			if tt.includeUsage {
				if len(usage) != 1 {
					t.Fatalf("%d usage chunks, want 1", len(usage))
				}
				u := decode[chatUsage](t, string(usage[0]))
				if u.CompletionTokens != countTokens(call.Answer) || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
					t.Errorf("usage %+v", u)
				}
			} else if len(usage) != 0 {
				t.Errorf("usage sent without include_usage")
			}
		})
	}
}

// testChunk reads a chat.completion.chunk, keeping null and absent usage apart.
type testChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Choices []struct {
		Delta        chunkDelta `json:"delta"`
		FinishReason *string    `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

// testEvent reads any Responses API stream event.
type testEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *response       `json:"response"`
	ItemID         string          `json:"item_id"`
	Item           *outputMessage  `json:"item"`
	Delta          string          `json:"delta"`
	Text           string          `json:"text"`
	Logprobs       json.RawMessage `json:"logprobs"`
}

func TestResponses(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, r response)
	}{
		{
			name: "string input",
			body: `{"model":"gpt-4o-mini","input":"In which ocean is Bouvet Island?"}`,
			check: func(t *testing.T, r response) {
				if got := r.Output[0].Content[0].Text; got != BouvetAnswer {
					t.Errorf("answer %q", got)
				}
			},
		},
		{
			name: "message items and instructions",
			body: `{"model":"m","instructions":"Be brief.","metadata":{"k":"v"},"temperature":0.5,"input":[{"role":"user","content":"old"},{"type":"message","role":"user","content":[{"type":"input_text","text":"new"}]}]}`,
			check: func(t *testing.T, r response) {
				if got := r.Output[0].Content[0].Text; got != "You said: new" {
					t.Errorf("answer %q", got)
				}
				if string(r.Instructions) != `"Be brief."` || string(r.Metadata) != `{"k":"v"}` || r.Temperature != 0.5 {
					t.Errorf("echoed instructions %s metadata %s temperature %v", r.Instructions, r.Metadata, r.Temperature)
				}
			},
		},
		{
			name: "shape",
			body: `{"model":"gpt-4o-mini","input":"hi"}`,
			check: func(t *testing.T, r response) {
				if !strings.HasPrefix(r.ID, "resp_") || r.Object != "response" || r.Status != "completed" || r.CreatedAt != fixedNow().Unix() {
					t.Errorf("id %q object %q status %q created_at %d", r.ID, r.Object, r.Status, r.CreatedAt)
				}
				if len(r.Output) != 1 || !strings.HasPrefix(r.Output[0].ID, "msg_") || r.Output[0].Role != "assistant" {
					t.Errorf("output %+v", r.Output)
				}
				u := r.Usage
				if u == nil || u.InputTokens <= 0 || u.OutputTokens != countTokens("You said: hi") || u.TotalTokens != u.InputTokens+u.OutputTokens {
					t.Errorf("usage %+v", u)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, Config{Now: fixedNow})
			resp, body := post(t, ts.URL+"/v1/responses", tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			r := decode[response](t, string(body))
			tt.check(t, r)
			if srv.LastID() != r.ID {
				t.Errorf("LastID %q, want %q", srv.LastID(), r.ID)
			}
		})
	}
}

func TestResponsesStream(t *testing.T) {
	srv, ts := newTestServer(t, Config{})
	resp, body := post(t, ts.URL+"/v1/responses", `{"model":"m","stream":true,"input":"In which ocean is Bouvet Island?"}`)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content-type %q", ct)
	}
	events := readSSE(t, body)
	call := srv.Calls()[0]

	var names []string
	var text strings.Builder
	var completed response
	for i, ev := range events {
		e := decode[testEvent](t, ev.Data)
		if e.Type != ev.Name {
			t.Errorf("event %d: SSE name %q, type %q", i, ev.Name, e.Type)
		}
		if e.SequenceNumber != i {
			t.Errorf("event %d: sequence_number %d", i, e.SequenceNumber)
		}
		if e.Response != nil && e.Response.ID != call.ID {
			t.Errorf("event %d: response id %q, want %q", i, e.Response.ID, call.ID)
		}
		switch e.Type {
		case "response.output_text.delta":
			text.WriteString(e.Delta)
			if string(e.Logprobs) != "[]" {
				t.Errorf("delta logprobs %s, want []", e.Logprobs)
			}
		case "response.output_text.done":
			if e.Text != call.Answer {
				t.Errorf("done text %q", e.Text)
			}
		case "response.completed":
			completed = *e.Response
		}
		if e.Type != "response.output_text.delta" || len(names) == 0 || names[len(names)-1] != e.Type {
			names = append(names, e.Type)
		}
	}
	want := []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.output_item.done",
		"response.completed",
	}
	if !slices.Equal(names, want) {
		t.Errorf("events (deltas collapsed):\n got %v\nwant %v", names, want)
	}
	if text.String() != BouvetAnswer {
		t.Errorf("deltas %q, want %q", text.String(), BouvetAnswer)
	}
	if completed.Status != "completed" || completed.Usage == nil || completed.Usage.OutputTokens != countTokens(BouvetAnswer) {
		t.Errorf("completed response: status %q usage %+v", completed.Status, completed.Usage)
	}
	if len(completed.Output) != 1 || completed.Output[0].Content[0].Text != BouvetAnswer {
		t.Errorf("completed output %+v", completed.Output)
	}
}

func TestErrors(t *testing.T) {
	type errBody struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	tests := []struct {
		name   string
		cfg    Config
		method string
		path   string
		header http.Header
		body   string
		status int
		param  string
		code   string
	}{
		{name: "bad JSON", path: "/v1/chat/completions", body: `{"model":`, status: 400},
		{name: "missing model", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"hi"}]}`, status: 400, param: "model", code: "missing_required_parameter"},
		{name: "missing messages", path: "/v1/chat/completions", body: `{"model":"m"}`, status: 400, param: "messages", code: "missing_required_parameter"},
		{name: "empty messages", path: "/v1/chat/completions", body: `{"model":"m","messages":[]}`, status: 400, param: "messages", code: "empty_array"},
		{name: "messages not an array", path: "/v1/chat/completions", body: `{"model":"m","messages":"hi"}`, status: 400, param: "messages", code: "invalid_type"},
		{name: "bad content", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"role":"user","content":42}]}`, status: 400, param: "messages[0].content", code: "invalid_type"},
		{name: "stream_options without stream", path: "/v1/chat/completions", body: `{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, status: 400, param: "stream_options"},
		{name: "responses without model", path: "/v1/responses", body: `{"input":"hi"}`, status: 400, param: "model", code: "missing_required_parameter"},
		{name: "responses without input", path: "/v1/responses", body: `{"model":"m"}`, status: 400, param: "input", code: "missing_required_parameter"},
		{name: "responses bad input", path: "/v1/responses", body: `{"model":"m","input":7}`, status: 400, param: "input", code: "invalid_type"},
		{name: "unknown path", path: "/v1/completions/nope", body: `{}`, status: 404},
		{name: "wrong method", method: http.MethodGet, path: "/v1/chat/completions", status: 404},
		{name: "unknown model", method: http.MethodGet, path: "/v1/models/nope", status: 404, param: "model", code: "model_not_found"},
		{name: "no API key", cfg: Config{APIKey: "sk-right"}, path: "/v1/chat/completions", body: bouvetChat, status: 401, code: "invalid_api_key"},
		{name: "wrong API key", cfg: Config{APIKey: "sk-right"}, header: http.Header{"Authorization": {"Bearer sk-wrong"}}, path: "/v1/chat/completions", body: bouvetChat, status: 401, code: "invalid_api_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ts := newTestServer(t, tt.cfg)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, raw)
			}
			if resp.Header.Get("x-request-id") == "" {
				t.Error("no x-request-id header")
			}
			e := decode[errBody](t, string(raw))
			if e.Error.Message == "" || e.Error.Type != "invalid_request_error" {
				t.Errorf("error %+v", e.Error)
			}
			if got := deref(e.Error.Param); got != tt.param {
				t.Errorf("param %q, want %q", got, tt.param)
			}
			if got := deref(e.Error.Code); got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
			if len(srv.Calls()) != 0 {
				t.Errorf("a failed request was recorded: %+v", srv.Calls())
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestAPIKeyAccepted(t *testing.T) {
	_, ts := newTestServer(t, Config{APIKey: "sk-right"})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(bouvetChat))
	req.Header.Set("Authorization", "Bearer sk-right")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestModels(t *testing.T) {
	_, ts := newTestServer(t, Config{Models: []string{"a", "b"}})
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	list := decode[struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}](t, string(raw))
	if list.Object != "list" || len(list.Data) != 2 || list.Data[1].ID != "b" || list.Data[0].Object != "model" {
		t.Errorf("list %+v", list)
	}

	resp2, err := http.Get(ts.URL + "/v1/models/a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	raw, _ = io.ReadAll(resp2.Body)
	if m := decode[model](t, string(raw)); resp2.StatusCode != 200 || m.ID != "a" {
		t.Errorf("retrieve: status %d %+v", resp2.StatusCode, m)
	}
}

// Same request, same answer: with a fixed clock and id randomness, two
// servers answer byte for byte the same.
func TestDeterministic(t *testing.T) {
	for _, path := range []string{"/v1/chat/completions", "/v1/responses"} {
		body := bouvetChat
		if path == "/v1/responses" {
			body = `{"model":"m","stream":true,"input":"In which ocean is Bouvet Island?"}`
		}
		var got [][]byte
		for range 2 {
			_, ts := newTestServer(t, Config{Now: fixedNow, Rand: zeros{}})
			_, b := post(t, ts.URL+path, body)
			got = append(got, b)
		}
		if !bytes.Equal(got[0], got[1]) {
			t.Errorf("%s: answers differ:\n%s\n%s", path, got[0], got[1])
		}
	}
}

func TestIDsUnique(t *testing.T) {
	srv, ts := newTestServer(t, Config{Rand: zeros{}})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			path, body := "/v1/chat/completions", bouvetChat
			if i%2 == 1 {
				path, body = "/v1/responses", `{"model":"m","input":"hi"}`
			}
			resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, c := range srv.Calls() {
		if seen[c.ID] {
			t.Errorf("duplicate id %q", c.ID)
		}
		seen[c.ID] = true
	}
	if len(seen) != 20 {
		t.Errorf("%d ids, want 20", len(seen))
	}
}

func TestCallsBounded(t *testing.T) {
	srv, ts := newTestServer(t, Config{MaxCalls: 2})
	for range 3 {
		post(t, ts.URL+"/v1/chat/completions", bouvetChat)
	}
	calls := srv.Calls()
	if len(calls) != 2 || calls[1].ID != srv.LastID() {
		t.Errorf("calls %+v", calls)
	}
}

func TestPieces(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"", nil},
		{"South Atlantic Ocean", []string{"South", " Atlantic", " Ocean"}},
		{"You said: Hi, there!", []string{"You", " said", ":", " Hi", ",", " there", "!"}},
		{"internationalization", []string{"internat", "ionaliza", "tion"}},
		{"  two  spaces", []string{"  two", "  spaces"}},
	}
	for _, tt := range tests {
		got := pieces(tt.text)
		if !slices.Equal(got, tt.want) {
			t.Errorf("pieces(%q) = %q, want %q", tt.text, got, tt.want)
		}
		if strings.Join(got, "") != tt.text {
			t.Errorf("pieces(%q) do not join back", tt.text)
		}
	}
}

func TestStart(t *testing.T) {
	srv, baseURL, stop, err := Start("", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(baseURL, "http://127.0.0.1:") || !strings.HasSuffix(baseURL, "/v1") {
		t.Errorf("base URL %q", baseURL)
	}
	_, body := post(t, baseURL+"/chat/completions", bouvetChat)
	if c := decode[chatCompletion](t, string(body)); c.ID != srv.LastID() {
		t.Errorf("id %q, LastID %q", c.ID, srv.LastID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Start("256.0.0.1:1", Config{}); err == nil {
		t.Error("Start on a bad address succeeded")
	}
}
