package phoenix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Annotator kinds Phoenix accepts; anything else is a 422.
const (
	AnnotatorLLM   = "LLM"
	AnnotatorCode  = "CODE"
	AnnotatorHuman = "HUMAN"
)

// Result is what an annotation says. Phoenix stores and returns each part as null when absent.
type Result struct {
	Label       *string  `json:"label,omitempty"`
	Score       *float64 `json:"score,omitempty"`
	Explanation *string  `json:"explanation,omitempty"`
}

// SpanAnnotation annotates one span. Phoenix upserts on (Name, span, Identifier): with the
// empty Identifier a later annotation replaces the earlier one and gets the same id back; a
// per-user Identifier keeps one annotation per user. The name "note" is reserved (400).
type SpanAnnotation struct {
	// SpanID is the OpenTelemetry span id as Phoenix stores it: 16 lowercase hex digits.
	// Phoenix compares it as a string, so upper case does not match (404).
	SpanID        string         `json:"span_id"`
	Name          string         `json:"name"`
	AnnotatorKind string         `json:"annotator_kind"` // LLM, CODE, HUMAN
	Result        Result         `json:"result"`
	Metadata      map[string]any `json:"metadata,omitempty"`
	Identifier    string         `json:"identifier"`
}

// TraceAnnotation annotates one trace; see SpanAnnotation for the upsert rule.
type TraceAnnotation struct {
	// TraceID is the OpenTelemetry trace id: 32 lowercase hex digits.
	TraceID       string         `json:"trace_id"`
	Name          string         `json:"name"`
	AnnotatorKind string         `json:"annotator_kind"` // LLM, CODE, HUMAN
	Result        Result         `json:"result"`
	Metadata      map[string]any `json:"metadata,omitempty"`
	Identifier    string         `json:"identifier"`
}

// SessionAnnotation annotates one session, the traces whose spans carry the OpenInference
// attribute session.id with the same value; see SpanAnnotation for the upsert rule. Phoenix
// 12.0 and later.
type SessionAnnotation struct {
	// SessionID is the value of session.id, as the app set it.
	SessionID     string         `json:"session_id"`
	Name          string         `json:"name"`
	AnnotatorKind string         `json:"annotator_kind"` // LLM, CODE, HUMAN
	Result        Result         `json:"result"`
	Metadata      map[string]any `json:"metadata,omitempty"`
	Identifier    string         `json:"identifier"`
}

// StoredSpanAnnotation is a span annotation as Phoenix returns it.
type StoredSpanAnnotation struct {
	// ID is Phoenix's opaque id: a relay global id, base64 of "SpanAnnotation:<row id>", the
	// same string AnnotateSpans returned.
	ID            string         `json:"id"`
	SpanID        string         `json:"span_id"`
	Name          string         `json:"name"`
	AnnotatorKind string         `json:"annotator_kind"`
	Result        Result         `json:"result"`
	Identifier    string         `json:"identifier"`
	Metadata      map[string]any `json:"metadata"`
}

// AnnotateSpans POSTs /v1/span_annotations?sync=true and returns the annotation ids Phoenix
// assigned, in order. An empty anns sends nothing.
//
// With sync=true Phoenix checks the spans first: if any span of the batch is unknown, it rejects
// the whole batch with 404 (IsSpanNotFound). Without it Phoenix would answer 200 at once, queue
// the annotations in memory and drop them silently if the span does not show up in time.
func (c *Client) AnnotateSpans(ctx context.Context, anns []SpanAnnotation) ([]string, error) {
	if len(anns) == 0 {
		return nil, nil
	}
	for i, a := range anns {
		if err := checkAnnotation("span_id", a.SpanID, a.Name, a.AnnotatorKind); err != nil {
			return nil, fmt.Errorf("phoenix: span annotation %d: %w", i, err)
		}
	}
	return c.annotate(ctx, "/v1/span_annotations", anns, len(anns))
}

// AnnotateTraces POSTs /v1/trace_annotations?sync=true and returns the annotation ids Phoenix
// assigned, in order. An empty anns sends nothing. An unknown trace is a 404 for the whole batch.
func (c *Client) AnnotateTraces(ctx context.Context, anns []TraceAnnotation) ([]string, error) {
	if len(anns) == 0 {
		return nil, nil
	}
	for i, a := range anns {
		if err := checkAnnotation("trace_id", a.TraceID, a.Name, a.AnnotatorKind); err != nil {
			return nil, fmt.Errorf("phoenix: trace annotation %d: %w", i, err)
		}
	}
	return c.annotate(ctx, "/v1/trace_annotations", anns, len(anns))
}

// AnnotateSessions POSTs /v1/session_annotations?sync=true and returns the annotation ids
// Phoenix assigned, in order. An empty anns sends nothing. A session Phoenix does not know is a
// 404 for the whole batch (IsSpanNotFound): sessions are looked up by session id across all
// projects.
func (c *Client) AnnotateSessions(ctx context.Context, anns []SessionAnnotation) ([]string, error) {
	if len(anns) == 0 {
		return nil, nil
	}
	for i, a := range anns {
		if err := checkAnnotation("session_id", a.SessionID, a.Name, a.AnnotatorKind); err != nil {
			return nil, fmt.Errorf("phoenix: session annotation %d: %w", i, err)
		}
	}
	return c.annotate(ctx, "/v1/session_annotations", anns, len(anns))
}

func checkAnnotation(idField, id, name, kind string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s is empty", idField)
	case name == "":
		return errors.New("name is empty")
	}
	switch kind {
	case AnnotatorLLM, AnnotatorCode, AnnotatorHuman:
		return nil
	}
	return fmt.Errorf("annotator_kind %q: want LLM, CODE or HUMAN", kind)
}

// annotate posts {"data": anns} synchronously and expects {"data":[{"id":...}, ...]}, one id per
// annotation. A 2xx answer that does not hold them is an unreadable answer (IsUnreadableAnswer):
// Phoenix stored the annotations, it did not say under which ids.
func (c *Client) annotate(ctx context.Context, path string, anns any, n int) ([]string, error) {
	var answer struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	body := struct {
		Data any `json:"data"`
	}{anns}
	if err := c.do(ctx, http.MethodPost, path, url.Values{"sync": {"true"}}, body, &answer); err != nil {
		return nil, err
	}
	unreadable := func(format string, args ...any) error {
		return &UnreadableAnswerError{Err: fmt.Errorf(format, args...), method: http.MethodPost, path: path}
	}
	if len(answer.Data) != n {
		return nil, unreadable("sent %d annotations, got %d ids back", n, len(answer.Data))
	}
	ids := make([]string, n)
	for i, d := range answer.Data {
		if d.ID == "" {
			return nil, unreadable("answer %d has no id", i)
		}
		ids[i] = d.ID
	}
	return ids, nil
}

// maxSpanIDs is the most span_ids Phoenix takes in one span_annotations query (more is a 422).
const maxSpanIDs = 1000

// annotationsPageSize is the page size asked for; Phoenix's default is 10, its maximum 10000.
const annotationsPageSize = 1000

// SpanAnnotations GETs /v1/projects/{project}/span_annotations?span_ids=... and returns every
// annotation of those spans, newest first, following Phoenix's pages. Phoenix's 404 (none of the
// spans known yet in the project, or no such project) is returned as an *APIError with
// StatusCode 404; spans that exist but have no annotations give an empty list. Empty span ids
// are ignored and duplicates sent once; no ids sends nothing.
func (c *Client) SpanAnnotations(ctx context.Context, project string, spanIDs []string) ([]StoredSpanAnnotation, error) {
	ids := make([]string, 0, len(spanIDs))
	seen := make(map[string]bool, len(spanIDs))
	for _, id := range spanIDs {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	if len(ids) > maxSpanIDs {
		return nil, fmt.Errorf("phoenix: span annotations: %d span ids, Phoenix takes at most %d at once", len(ids), maxSpanIDs)
	}
	path, err := projectPath(project, "span_annotations")
	if err != nil {
		return nil, err
	}

	var all []StoredSpanAnnotation
	usedCursors := map[string]bool{}
	cursor := ""
	for {
		q := url.Values{"span_ids": ids, "limit": {strconv.Itoa(annotationsPageSize)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Data       []StoredSpanAnnotation `json:"data"`
			NextCursor *string                `json:"next_cursor"`
		}
		if err := c.do(ctx, http.MethodGet, path, q, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Data...)
		if page.NextCursor == nil || *page.NextCursor == "" {
			return all, nil
		}
		cursor = *page.NextCursor
		if usedCursors[cursor] {
			return nil, fmt.Errorf("phoenix: GET %s: next_cursor %q repeats", path, cursor)
		}
		usedCursors[cursor] = true
	}
}
