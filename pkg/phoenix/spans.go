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

// Span is a span as GET /v1/projects/{project}/spans returns it (fields we use; Phoenix also
// sends id, end_time, status_code, status_message and events).
type Span struct {
	Name    string      `json:"name"`
	Context SpanContext `json:"context"`
	// ParentID is empty for a root span (Phoenix sends null).
	ParentID string `json:"parent_id"`
	// StartTime is when the span started (Phoenix sends RFC 3339 with an offset).
	StartTime time.Time `json:"start_time"`
	// SpanKind is the OpenInference span kind (LLM, CHAIN, ..., UNKNOWN). Phoenix moves the
	// attribute openinference.span.kind here, and sets LLM for GenAI-convention chat spans.
	SpanKind string `json:"span_kind"`
	// Attributes are flat, keyed by the dotted OTLP attribute name ("gen_ai.response.id",
	// "llm.input_messages.0.message.role"); arrays stay JSON arrays, numbers are float64.
	// Phoenix adds OpenInference attributes derived from gen_ai.* ones at ingest.
	Attributes map[string]any `json:"attributes"`
}

// SpanContext identifies a span.
type SpanContext struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// SpanQuery filters Spans. Empty fields do not filter.
type SpanQuery struct {
	TraceID string
	SpanID  string
	Name    string
	// Attribute keeps the spans whose attribute Key holds exactly the string Value (Phoenix's
	// attribute=key:value filter, case-sensitive, whole value). The zero value does not filter.
	Attribute AttributeFilter
	// Limit is the page size: 0 means Phoenix's default (100), at most 1000.
	Limit int
}

// AttributeFilter is an exact match on one string attribute of a span.
type AttributeFilter struct {
	// Key is the dotted attribute name, e.g. "gen_ai.response.id". It cannot contain ':'.
	Key string
	// Value is the attribute's whole string value. It is sent JSON-quoted, so that Phoenix
	// compares it as a string even when it looks like a number, a boolean or null (unquoted,
	// Phoenix parses "12345" as an integer and "null" as a 422).
	Value string
}

// param is the value of Phoenix's attribute query parameter: key:"value". Phoenix splits on the
// first ':' and JSON-decodes the rest.
func (f AttributeFilter) param() (string, error) {
	if f.Key == "" {
		return "", errors.New("phoenix: spans: attribute filter: key is empty")
	}
	if strings.Contains(f.Key, ":") {
		return "", fmt.Errorf("phoenix: spans: attribute filter: key %q: want no ':'", f.Key)
	}
	v, err := json.Marshal(f.Value)
	if err != nil {
		return "", fmt.Errorf("phoenix: spans: attribute filter: %w", err)
	}
	return f.Key + ":" + string(v), nil
}

// maxSpansLimit is the largest limit Phoenix takes (more is a 422).
const maxSpansLimit = 1000

// Spans GETs /v1/projects/{project}/spans with the query and returns the first page, newest
// first. An unknown project is a 404 (*APIError); no matching span is an empty list.
func (c *Client) Spans(ctx context.Context, project string, q SpanQuery) ([]Span, error) {
	if q.Limit < 0 || q.Limit > maxSpansLimit {
		return nil, fmt.Errorf("phoenix: spans: limit %d: want 0 (default) to %d", q.Limit, maxSpansLimit)
	}
	path, err := projectPath(project, "spans")
	if err != nil {
		return nil, err
	}
	v := url.Values{}
	if q.TraceID != "" {
		v.Set("trace_id", q.TraceID)
	}
	if q.SpanID != "" {
		v.Set("span_id", q.SpanID)
	}
	if q.Name != "" {
		v.Set("name", q.Name)
	}
	if q.Attribute != (AttributeFilter{}) {
		p, err := q.Attribute.param()
		if err != nil {
			return nil, err
		}
		v.Set("attribute", p)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var page struct {
		Data []Span `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, path, v, nil, &page); err != nil {
		return nil, err
	}
	return page.Data, nil
}

// SessionIDAttribute is the OpenInference attribute that puts a trace in a session.
const SessionIDAttribute = "session.id"

// ErrNoSession is returned by SessionOfTrace when Phoenix holds spans of the trace but none
// carries SessionIDAttribute: the trace is in no session.
var ErrNoSession = errors.New("phoenix: the trace is in no session: none of its spans carries " + SessionIDAttribute)

// sessionSpansLimit bounds the spans SessionOfTrace reads. An app that sets session.id sets it
// on every span it starts in the session's context, the root included.
const sessionSpansLimit = 100

// SessionOfTrace returns the session id of a trace: the session.id attribute of its root span,
// else of the first of its spans that carries one (Phoenix puts a trace in the session of the
// first span it ingests with one; apps set the same value on all). A trace Phoenix holds no span
// of yet is a 404 (IsSpanNotFound), as is an unknown project; spans without the attribute give
// ErrNoSession.
func (c *Client) SessionOfTrace(ctx context.Context, project, traceID string) (string, error) {
	if traceID == "" {
		return "", errors.New("phoenix: session of trace: the trace id is empty")
	}
	spans, err := c.Spans(ctx, project, SpanQuery{TraceID: traceID, Limit: sessionSpansLimit})
	if err != nil {
		return "", err
	}
	if len(spans) == 0 {
		return "", &APIError{StatusCode: http.StatusNotFound, Message: fmt.Sprintf("no span of trace %s in project %s yet", traceID, project),
			method: http.MethodGet, path: "/v1/projects/" + url.PathEscape(project) + "/spans"}
	}
	found := ""
	for _, s := range spans {
		id, _ := s.Attributes[SessionIDAttribute].(string)
		id = strings.TrimSpace(id) // as Phoenix does at ingest
		if id == "" {
			continue
		}
		if s.ParentID == "" {
			return id, nil
		}
		if found == "" {
			found = id
		}
	}
	if found == "" {
		return "", fmt.Errorf("%w (trace %s)", ErrNoSession, traceID)
	}
	return found, nil
}
