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
	// ParentID keeps the children of that span; "null" keeps root spans.
	ParentID string
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
	if q.ParentID != "" {
		v.Set("parent_id", q.ParentID)
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

// SessionOfTrace returns the session id of a trace: the session.id attribute of its root span,
// else of the span spanID of the trace (the LLM span a feedback names: an app that sets a session
// sets it on every span it starts in the session's context). Phoenix puts a trace in the session
// of the first span it ingests with the attribute; apps set one value on all. Each is asked for
// alone, so that the answers stay small whatever the trace holds. A trace whose root and span
// Phoenix holds neither of yet is a 404 (IsSpanNotFound), as is an unknown project; a root or span
// without the attribute gives ErrNoSession.
func (c *Client) SessionOfTrace(ctx context.Context, project, traceID, spanID string) (string, error) {
	if traceID == "" {
		return "", errors.New("phoenix: session of trace: the trace id is empty")
	}
	seen := false
	for _, q := range []SpanQuery{{TraceID: traceID, ParentID: "null", Limit: 1}, {TraceID: traceID, SpanID: spanID, Limit: 1}} {
		if q.SpanID == "" && q.ParentID == "" {
			continue
		}
		spans, err := c.Spans(ctx, project, q)
		if err != nil {
			return "", err
		}
		for _, s := range spans {
			seen = true
			id, _ := s.Attributes[SessionIDAttribute].(string)
			if id = strings.TrimSpace(id); id != "" { // trimmed, as Phoenix does at ingest
				return id, nil
			}
		}
	}
	if !seen {
		return "", &APIError{StatusCode: http.StatusNotFound, Message: fmt.Sprintf("neither the root of trace %s nor its span %s is in project %s yet", traceID, spanID, project),
			method: http.MethodGet, path: "/v1/projects/" + url.PathEscape(project) + "/spans"}
	}
	return "", fmt.Errorf("%w (trace %s)", ErrNoSession, traceID)
}
