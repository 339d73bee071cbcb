package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The httptest servers here answer with bodies a real Phoenix 20.26.1 gave
// (testdata/lookup/*.json; capture.py there says how they were captured and how to capture them
// again). The recorded end-to-end lookups are TestVCRSpansByResponseID and TestVCRProjects.

func lookupAnswer(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "lookup", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lookupServer answers REST requests with rest and POST /graphql with the graphql bodies in turn
// (the last one again when they run out), and records what it was asked.
type lookupServer struct {
	mu       sync.Mutex
	rest     string
	graphql  []string
	queries  []string         // raw query of each REST request
	requests []graphQLRequest // each GraphQL request
}

func (s *lookupServer) client(t *testing.T) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/graphql" {
			var req graphQLRequest
			body, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(body, &req); err != nil || r.Method != http.MethodPost {
				t.Errorf("GraphQL request %s %s: %v", r.Method, body, err)
			}
			s.requests = append(s.requests, req)
			i := min(len(s.requests), len(s.graphql)) - 1
			_, _ = io.WriteString(w, s.graphql[i])
			return
		}
		s.queries = append(s.queries, r.URL.RawQuery)
		_, _ = io.WriteString(w, s.rest)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckResponseID(t *testing.T) {
	tests := []struct {
		name, id string
		wantErr  string
	}{
		{name: "chat completion", id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"},
		{name: "responses", id: "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"},
		{name: "anthropic", id: "msg_01XFDUDYJgAACzvnptvVoYEL"},
		{name: "gemini", id: "2_1hZ4jjI9KYmNAPl6fXyAk"},
		{name: "all allowed punctuation", id: "a-b_c.d:e+f=g~h"},
		{name: "longest", id: strings.Repeat("a", MaxResponseIDLen)},
		{name: "empty", id: "", wantErr: "empty"},
		{name: "too long", id: strings.Repeat("a", MaxResponseIDLen+1), wantErr: "at most 256"},
		{name: "single quote", id: "x' in output.value or 'a", wantErr: "byte 1"},
		{name: "double quote", id: `x" in output.value or "a`, wantErr: "byte 1"},
		{name: "backslash", id: `chatcmpl-\`, wantErr: "byte 9"},
		{name: "space", id: "chatcmpl- 1", wantErr: "byte 9"},
		{name: "newline", id: "chatcmpl-1\n", wantErr: "byte 10"},
		{name: "percent", id: "chatcmpl-%", wantErr: "byte 9"},
		{name: "slash", id: "a/b", wantErr: "byte 1"},
		{name: "brace", id: "{id}", wantErr: "byte 0"},
		{name: "non-ASCII", id: "chatcmpl-é", wantErr: "byte 9"},
		{name: "NUL", id: "a\x00", wantErr: "byte 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckResponseID(tt.id)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckResponseID: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckResponseID: err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// An id that could change the meaning of Phoenix's filter expression (the DSL is a Python
// expression; `or True` would match every span) never reaches Phoenix.
func TestSpansByResponseIDRejectsInjection(t *testing.T) {
	s := &lookupServer{rest: lookupAnswer(t, "rest_miss"), graphql: []string{lookupAnswer(t, "graphql_hit")}}
	c := s.client(t)
	for _, id := range []string{
		`x"' in output.value or True or '"`,
		`x' in output.value or 'a`,
		`x") or True or ("`,
		`chatcmpl-1\' in output.value`,
		"chatcmpl-1\x00",
		"",
		strings.Repeat("a", MaxResponseIDLen+1),
	} {
		spans, err := c.SpansByResponseID(context.Background(), "p", id)
		if err == nil || spans != nil {
			t.Errorf("id %q: spans %v, err %v; want an error", id, spans, err)
		}
		if IsRetryable(err) {
			t.Errorf("id %q: a rejected id must not be retryable: %v", id, err)
		}
	}
	if len(s.queries) != 0 || len(s.requests) != 0 {
		t.Errorf("Phoenix was asked %d REST and %d GraphQL requests, want none", len(s.queries), len(s.requests))
	}
}

func TestSpansByResponseIDRESTHit(t *testing.T) {
	s := &lookupServer{rest: lookupAnswer(t, "rest_hit")}
	c := s.client(t)
	spans, err := c.SpansByResponseID(context.Background(), "phoenix-client-vcr", genAIResponseID)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 || spans[0].Context.SpanID != spanGenAI || spans[0].ParentID != spanRoot ||
		!spans[0].StartTime.Equal(time.Unix(seedStartUnixSec, 1e6)) {
		t.Fatalf("spans = %+v", spans)
	}
	// The value is JSON-quoted, so Phoenix compares it as a string whatever it looks like.
	if want := "attribute=gen_ai.response.id%3A%22" + genAIResponseID + "%22&limit=10"; len(s.queries) != 1 || s.queries[0] != want {
		t.Errorf("REST queries = %q, want [%q]", s.queries, want)
	}
	if len(s.requests) != 0 {
		t.Errorf("a REST hit still asked GraphQL %d times", len(s.requests))
	}
}

// The REST answer is checked too: a span whose gen_ai.response.id is not the id asked for is
// dropped, and the lookup goes on to output.value.
func TestSpansByResponseIDRESTAnswerChecked(t *testing.T) {
	s := &lookupServer{rest: lookupAnswer(t, "rest_hit"), graphql: []string{lookupAnswer(t, "graphql_hit")}}
	c := s.client(t)
	spans, err := c.SpansByResponseID(context.Background(), "phoenix-client-vcr", openInferRespID)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 || spans[0].Context.SpanID != spanOpenInfer {
		t.Fatalf("spans = %+v, want only %s", spans, spanOpenInfer)
	}
}

func TestSpansByResponseIDOutputValue(t *testing.T) {
	s := &lookupServer{rest: lookupAnswer(t, "rest_miss"), graphql: []string{lookupAnswer(t, "graphql_hit")}}
	c := s.client(t)
	spans, err := c.SpansByResponseID(context.Background(), "phoenix-client-vcr", openInferRespID)
	if err != nil {
		t.Fatal(err)
	}
	want := Span{
		Name:      "ChatCompletion",
		Context:   SpanContext{TraceID: seedTraceID, SpanID: spanOpenInfer},
		ParentID:  spanRoot,
		StartTime: time.Unix(seedStartUnixSec, 2e6),
		SpanKind:  "LLM",
	}
	if len(spans) != 1 {
		t.Fatalf("spans = %+v, want one", spans)
	}
	got := spans[0]
	if got.Name != want.Name || got.Context != want.Context || got.ParentID != want.ParentID ||
		!got.StartTime.Equal(want.StartTime) || got.SpanKind != want.SpanKind {
		t.Errorf("span = %+v, want %+v", got, want)
	}
	if v, _ := got.Attributes["output.value"].(string); !strings.Contains(v, openInferRespID) {
		t.Errorf("output.value = %q", v)
	}

	// The id travels as a variable inside the filter, quoted; the query text is constant.
	if len(s.requests) != 1 {
		t.Fatalf("%d GraphQL requests, want 1", len(s.requests))
	}
	req := s.requests[0]
	if req.Query != spansByOutputQuery {
		t.Errorf("query = %q, want the constant spansByOutputQuery", req.Query)
	}
	wantVars := map[string]any{
		"project": "phoenix-client-vcr",
		"filter":  `'"` + openInferRespID + `"' in output.value`,
		"first":   float64(lookupPageSize),
		"after":   nil,
	}
	for k, w := range wantVars {
		if req.Variables[k] != w {
			t.Errorf("variable %s = %#v, want %#v", k, req.Variables[k], w)
		}
	}
}

// Phoenix's substring match finds a span whose output.value holds the id only nested (a tool
// call's id); it is not the span that carries the response id.
func TestSpansByResponseIDNestedIDDropped(t *testing.T) {
	s := &lookupServer{rest: lookupAnswer(t, "rest_miss"), graphql: []string{lookupAnswer(t, "graphql_nested_only")}}
	c := s.client(t)
	spans, err := c.SpansByResponseID(context.Background(), "phoenix-client-vcr", nestedOnlyID)
	if err != nil || len(spans) != 0 {
		t.Fatalf("spans = %+v, err = %v; want none", spans, err)
	}
	if len(s.requests) != 1 {
		t.Errorf("%d GraphQL requests, want 1", len(s.requests))
	}
}

// Pages are followed with Phoenix's endCursor, and no further than maxLookupCandidates.
func TestSpansByResponseIDPagesBounded(t *testing.T) {
	page := lookupAnswer(t, "graphql_page_has_next")
	var ans spansByOutputAnswer
	if err := json.Unmarshal([]byte(page), &ans); err != nil || ans.Data.Project == nil {
		t.Fatalf("graphql_page_has_next.json: %v", err)
	}
	info := ans.Data.Project.Spans.PageInfo
	if !info.HasNextPage || info.EndCursor == nil || len(ans.Data.Project.Spans.Edges) != 2 {
		t.Fatalf("graphql_page_has_next.json is not a full page with a next one: %+v", info)
	}
	// Phoenix answering that page again and again: the lookup stops after 100 candidates.
	s := &lookupServer{rest: lookupAnswer(t, "rest_miss"), graphql: []string{page}}
	c := s.client(t)
	if _, err := c.SpansByResponseID(context.Background(), "phoenix-client-vcr", "chatcmpl-vcr0001"); err != nil {
		t.Fatal(err)
	}
	if want := maxLookupCandidates / 2; len(s.requests) != want {
		t.Errorf("%d GraphQL requests, want %d", len(s.requests), want)
	}
	if len(s.requests) > 1 && s.requests[1].Variables["after"] != *info.EndCursor {
		t.Errorf("second page after = %#v, want %q", s.requests[1].Variables["after"], *info.EndCursor)
	}
}

func TestSpansByResponseIDGraphQLError(t *testing.T) {
	s := &lookupServer{rest: lookupAnswer(t, "rest_miss"), graphql: []string{lookupAnswer(t, "graphql_filter_error")}}
	c := s.client(t)
	_, err := c.SpansByResponseID(context.Background(), "phoenix-client-vcr", openInferRespID)
	var gqlErr *GraphQLError
	if !errors.As(err, &gqlErr) || IsRetryable(err) {
		t.Fatalf("err = %v, want a permanent *GraphQLError", err)
	}
	if want := "phoenix: POST /graphql: unterminated string literal at character 1"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestOutputCarriesID(t *testing.T) {
	tests := []struct {
		name, output string
		want         bool
	}{
		{"top-level id", `{"id":"chatcmpl-1","object":"chat.completion"}`, true},
		{"id last, spaces", `{"choices": [], "id": "chatcmpl-1"}`, true},
		{"google response_id", `{"candidates":[],"response_id":"chatcmpl-1"}`, true},
		{"other id", `{"id":"chatcmpl-2"}`, false},
		{"prefix", `{"id":"chatcmpl-12"}`, false},
		{"nested only", `{"id":"x","choices":[{"id":"chatcmpl-1"}]}`, false},
		{"quoted in text", `{"id":"x","text":"\"chatcmpl-1\""}`, false},
		{"id as key", `{"chatcmpl-1":1}`, false},
		{"number id", `{"id":1}`, false},
		{"array", `[{"id":"chatcmpl-1"}]`, false},
		{"not JSON", `id: chatcmpl-1`, false},
		{"empty", ``, false},
		{"escaped in JSON", `{"id":"chatcmpl\u002d1"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := outputCarriesID(tt.output, "chatcmpl-1"); got != tt.want {
				t.Errorf("outputCarriesID(%s) = %v, want %v", tt.output, got, tt.want)
			}
		})
	}
}

func TestProjectsPages(t *testing.T) {
	pages := map[string]string{
		"limit=100":                     lookupAnswer(t, "projects_page1"),
		"cursor=UHJvamVjdDox&limit=100": lookupAnswer(t, "projects_page2"),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.RawQuery]
		if r.URL.Path != "/v1/projects" || !ok {
			t.Errorf("unexpected request %s", r.URL)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	names, err := c.Projects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "phoenix-client-vcr,default" {
		t.Errorf("names = %q", names)
	}
}

func TestProjectsBounded(t *testing.T) {
	var requests int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		var page struct {
			Data []map[string]string `json:"data"`
			Next string              `json:"next_cursor"`
		}
		for range projectsPageSize {
			page.Data = append(page.Data, map[string]string{"name": "p"})
		}
		page.Next = "c" + string(rune('a'+requests%26)) + strings.Repeat("x", requests)
		_ = json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	names, err := c.Projects(context.Background())
	if !errors.Is(err, ErrTooManyProjects) || len(names) != MaxProjects {
		t.Errorf("got %d names, err %v; want %d and ErrTooManyProjects", len(names), err, MaxProjects)
	}
	if want := MaxProjects/projectsPageSize + 1; requests != want {
		t.Errorf("%d requests, want %d", requests, want)
	}
}

func TestProjectsRepeatedCursor(t *testing.T) {
	c := statusServer(t, 200, nil, `{"data":[{"name":"a"}],"next_cursor":"same"}`)
	if _, err := c.Projects(context.Background()); err == nil || !strings.Contains(err.Error(), "repeats") {
		t.Errorf("err = %v, want a repeated cursor error", err)
	}
}

func TestAttributeFilterParam(t *testing.T) {
	tests := []struct {
		name    string
		f       AttributeFilter
		want    string
		wantErr string
	}{
		{name: "string", f: AttributeFilter{Key: "gen_ai.response.id", Value: "chatcmpl-1"}, want: `gen_ai.response.id:"chatcmpl-1"`},
		{name: "looks like a number", f: AttributeFilter{Key: "user.id", Value: "12345"}, want: `user.id:"12345"`},
		{name: "null", f: AttributeFilter{Key: "k", Value: "null"}, want: `k:"null"`},
		{name: "quotes escaped", f: AttributeFilter{Key: "k", Value: `a"b\c`}, want: `k:"a\"b\\c"`},
		{name: "colon in value", f: AttributeFilter{Key: "session.id", Value: "s:1"}, want: `session.id:"s:1"`},
		{name: "empty value", f: AttributeFilter{Key: "k"}, want: `k:""`},
		{name: "no key", f: AttributeFilter{Value: "v"}, wantErr: "key is empty"},
		{name: "colon in key", f: AttributeFilter{Key: "a:b", Value: "v"}, wantErr: "want no ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.param()
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
			case err != nil || got != tt.want:
				t.Errorf("param() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
