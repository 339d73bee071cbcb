package phoenix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// NoteTarget is what a note is attached to.
type NoteTarget string

// The targets of a note, each with its own route (Phoenix 15.7 and later).
const (
	NoteOnSpan    NoteTarget = "span"
	NoteOnTrace   NoteTarget = "trace"
	NoteOnSession NoteTarget = "session"
)

// Note is free text attached to a span, a trace or a session. Phoenix keeps it as an annotation
// named "note" (the name POST .../…_annotations refuses), annotator HUMAN, the text as its
// explanation. With an empty Identifier every call appends a new note; with one, Phoenix upserts
// on (target, "note", Identifier), so that a note sent again replaces itself.
type Note struct {
	Target NoteTarget
	// ID is the span id (16 hex digits), the trace id (32) or the session id.
	ID string
	// Text is the note. Phoenix trims it and refuses it empty (422).
	Text       string
	Identifier string
}

// AddNote POSTs the note to /v1/span_notes, /v1/trace_notes or /v1/session_notes and returns
// the id of the annotation Phoenix keeps it as. An unknown span, trace or session is a 404
// (IsSpanNotFound).
func (c *Client) AddNote(ctx context.Context, n Note) (string, error) {
	idField := string(n.Target) + "_id"
	switch n.Target {
	case NoteOnSpan, NoteOnTrace, NoteOnSession:
	default:
		return "", fmt.Errorf("phoenix: note target %q: want span, trace or session", n.Target)
	}
	switch {
	case n.ID == "":
		return "", fmt.Errorf("phoenix: note: %s is empty", idField)
	case strings.TrimSpace(n.Text) == "":
		return "", errors.New("phoenix: note: the text is empty (Phoenix refuses blank notes)")
	}
	body := struct {
		Data map[string]string `json:"data"`
	}{map[string]string{idField: n.ID, "note": n.Text, "identifier": n.Identifier}}
	var answer struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	path := "/v1/" + string(n.Target) + "_notes"
	if err := c.do(ctx, http.MethodPost, path, nil, body, &answer); err != nil {
		return "", err
	}
	if answer.Data.ID == "" {
		return "", &UnreadableAnswerError{Err: errors.New("the answer has no id"), method: http.MethodPost, path: path}
	}
	return answer.Data.ID, nil
}
