package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Finding the span that carries a provider's response id, when the caller has not indexed it
// (another replica saw the span). What Phoenix 20.26.1 offers, and what it costs, is in
// docs/phoenix-lookup.md.

// MaxProjects bounds Projects: a Phoenix with more projects than this is not one the proxy can
// search project by project.
const MaxProjects = 1000

// ErrTooManyProjects is returned by Projects, with the first MaxProjects names, when Phoenix
// has more projects.
var ErrTooManyProjects = fmt.Errorf("phoenix: more than %d projects", MaxProjects)

// projectsPageSize is the page size Projects asks for (Phoenix's default is 100, it has no
// maximum).
const projectsPageSize = 100

// Projects returns the names of Phoenix's projects (GET /v1/projects, every page), newest first
// as Phoenix lists them. Projects made by experiments and dataset evaluators are left out, as
// Phoenix does by default. With more than MaxProjects projects it returns the first MaxProjects
// and ErrTooManyProjects.
func (c *Client) Projects(ctx context.Context) ([]string, error) {
	var names []string
	usedCursors := map[string]bool{}
	cursor := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(projectsPageSize)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Data []struct {
				Name string `json:"name"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/projects", q, nil, &page); err != nil {
			return nil, err
		}
		for _, p := range page.Data {
			if len(names) == MaxProjects {
				return names, ErrTooManyProjects
			}
			names = append(names, p.Name)
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return names, nil
		}
		cursor = *page.NextCursor
		if usedCursors[cursor] {
			return nil, fmt.Errorf("phoenix: GET /v1/projects: next_cursor %q repeats", cursor)
		}
		usedCursors[cursor] = true
	}
}

// MaxResponseIDLen bounds the response ids SpansByResponseID takes. Provider ids are far
// shorter (chatcmpl-… is 38 bytes, resp_… about 55).
const MaxResponseIDLen = 256

// ResponseIDAttribute is the OpenTelemetry GenAI attribute that holds the provider's response id.
const ResponseIDAttribute = "gen_ai.response.id"

// Bounds on the output.value search: candidates are read in pages of lookupPageSize, at most
// maxLookupCandidates in all. Each candidate brings its whole output.value, so pages are small.
const (
	lookupPageSize      = 10
	maxLookupCandidates = 100
)

// CheckResponseID reports whether SpansByResponseID takes id: 1 to MaxResponseIDLen bytes of
// ASCII letters, digits and "-_.:+=~". The id ends up inside a filter expression that Phoenix
// parses (the span filter DSL, a Python expression) and inside a JSON string that must read the
// same in every serializer; these characters need no escaping in either, so an id cannot change
// the meaning of the query. Every provider id seen so far (chatcmpl-…, resp_…, msg_…, Gemini's
// response ids) fits.
func CheckResponseID(id string) error {
	if id == "" {
		return errors.New("phoenix: response id is empty")
	}
	if len(id) > MaxResponseIDLen {
		return fmt.Errorf("phoenix: response id has %d bytes, want at most %d", len(id), MaxResponseIDLen)
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("-_.:+=~", b) >= 0:
		default:
			return fmt.Errorf("phoenix: response id %q: byte %d (%q) is not one of the letters, digits and \"-_.:+=~\" a response id is made of", truncate(id, 64), i, b)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// SpansByResponseID returns the spans of project that carry the provider's response id
// responseID, oldest first within each step, each with trace id, span id, parent id, name and
// start time. No span is an empty list; an unknown project is Phoenix's 404 (*APIError, see
// IsSpanNotFound). responseID is checked with CheckResponseID before anything is sent.
//
// It asks Phoenix in up to two steps, the cheaper first, and every span it returns carries the
// id exactly, whatever Phoenix matched:
//
//  1. GET /v1/projects/{project}/spans?attribute=gen_ai.response.id:"<id>": OpenTelemetry
//     GenAI-convention spans. When this finds spans, they are returned and step 2 is skipped.
//  2. POST /graphql, the project's spans with filterCondition `'"<id>"' in output.value` (a
//     substring match, in pages of 10, at most 100 candidates): OpenInference spans, which have
//     no id attribute; the id is the top-level "id" (OpenAI, Anthropic) or "response_id"
//     (Google GenAI) of the JSON in output.value. A candidate is kept only when that JSON's
//     top-level "id" or "response_id" is responseID. These spans carry only the attribute
//     output.value in Attributes, and SpanKind in upper case ("LLM").
//
// Step 2 reads every span of the project that has an output.value: its cost grows with the
// project (docs/phoenix-lookup.md); callers should rate-limit lookups.
func (c *Client) SpansByResponseID(ctx context.Context, project, responseID string) ([]Span, error) {
	if err := CheckResponseID(responseID); err != nil {
		return nil, err
	}
	spans, err := c.Spans(ctx, project, SpanQuery{
		Attribute: AttributeFilter{Key: ResponseIDAttribute, Value: responseID},
		Limit:     lookupPageSize,
	})
	if err != nil {
		return nil, err
	}
	var found []Span
	for _, s := range spans {
		// Phoenix's match is exact already; this keeps the promise if it ever is not.
		if v, ok := s.Attributes[ResponseIDAttribute].(string); ok && v == responseID {
			found = append(found, s)
		}
	}
	if len(found) > 0 {
		return found, nil
	}
	return c.spansByOutputID(ctx, project, responseID)
}

// spansByOutputQuery asks for one page of a project's spans whose output.value contains a
// string. The project and the filter travel as GraphQL variables, never spliced into the query.
const spansByOutputQuery = `query SpansByOutputID($project: String!, $filter: String!, $first: Int!, $after: String) {
  getProjectByName(name: $project) {
    spans(first: $first, after: $after, filterCondition: $filter) {
      edges { node { spanId name spanKind startTime parentId trace { traceId } output { value } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`

type graphQLRequest struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables"`
}

type spansByOutputAnswer struct {
	Data struct {
		Project *struct {
			Spans struct {
				Edges []struct {
					Node struct {
						SpanID    string    `json:"spanId"`
						Name      string    `json:"name"`
						SpanKind  string    `json:"spanKind"`
						StartTime time.Time `json:"startTime"`
						ParentID  *string   `json:"parentId"`
						Trace     struct {
							TraceID string `json:"traceId"`
						} `json:"trace"`
						Output *struct {
							Value string `json:"value"`
						} `json:"output"`
					} `json:"node"`
				} `json:"edges"`
				PageInfo struct {
					HasNextPage bool    `json:"hasNextPage"`
					EndCursor   *string `json:"endCursor"`
				} `json:"pageInfo"`
			} `json:"spans"`
		} `json:"getProjectByName"`
	} `json:"data"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

// GraphQLError is a GraphQL answer with errors (Phoenix answers them with status 200): a filter
// it rejected, a field it does not know. It is permanent.
type GraphQLError struct {
	Messages []string
}

func (e *GraphQLError) Error() string {
	return "phoenix: POST /graphql: " + truncate(strings.Join(e.Messages, "; "), maxMessageLen)
}

// outputFilter is the span filter (Phoenix's DSL, a Python expression) for spans whose
// output.value contains the id as a JSON string, quotes included, so that "chatcmpl-1" does not
// match "chatcmpl-12". id has passed CheckResponseID: it holds no quote or backslash.
func outputFilter(id string) string {
	return `'"` + id + `"' in output.value`
}

func (c *Client) spansByOutputID(ctx context.Context, project, responseID string) ([]Span, error) {
	var found []Span
	var after any // JSON null on the first page
	for seen := 0; seen < maxLookupCandidates; {
		req := graphQLRequest{Query: spansByOutputQuery, Variables: map[string]any{
			"project": project,
			"filter":  outputFilter(responseID),
			"first":   lookupPageSize,
			"after":   after,
		}}
		var ans spansByOutputAnswer
		if err := c.do(ctx, http.MethodPost, "/graphql", nil, req, &ans); err != nil {
			return nil, err
		}
		if len(ans.Errors) > 0 {
			e := &GraphQLError{}
			for _, m := range ans.Errors {
				e.Messages = append(e.Messages, m.Message)
			}
			return nil, e
		}
		if ans.Data.Project == nil {
			// The REST step found the project; it was deleted since.
			return found, nil
		}
		spans := ans.Data.Project.Spans
		for _, edge := range spans.Edges {
			n := edge.Node
			seen++
			if n.Output == nil || !outputCarriesID(n.Output.Value, responseID) {
				continue
			}
			s := Span{
				Name:       n.Name,
				Context:    SpanContext{TraceID: n.Trace.TraceID, SpanID: n.SpanID},
				StartTime:  n.StartTime,
				SpanKind:   strings.ToUpper(n.SpanKind),
				Attributes: map[string]any{"output.value": n.Output.Value},
			}
			if n.ParentID != nil {
				s.ParentID = *n.ParentID
			}
			found = append(found, s)
		}
		if !spans.PageInfo.HasNextPage || spans.PageInfo.EndCursor == nil || len(spans.Edges) == 0 {
			return found, nil
		}
		after = *spans.PageInfo.EndCursor
	}
	return found, nil
}

// outputCarriesID reports whether output (a span's output.value) is a JSON object whose top-level
// "id" (OpenAI chat completions and responses, Anthropic messages) or "response_id" (Google
// GenAI) is the string id. A substring match is not enough: the id may be quoted in the answer's
// text, or belong to a nested object.
func outputCarriesID(output, id string) bool {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(output), &top); err != nil {
		return false
	}
	for _, key := range []string{"id", "response_id"} {
		var v string
		if raw, ok := top[key]; ok && json.Unmarshal(raw, &v) == nil && v == id {
			return true
		}
	}
	return false
}
