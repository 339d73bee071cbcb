package feedback

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Feedback is one piece of feedback on a response, as POST /feedback takes it.
type Feedback struct {
	// ResponseID is the provider's id of the response: "chatcmpl-...",
	// "resp_...", or a correlation key the operator indexes.
	ResponseID string `json:"response_id"`
	// Thumbs is "up" or "down": label thumbs-up / thumbs-down with score 1 / 0.
	Thumbs      string   `json:"thumbs,omitempty"`
	Label       *string  `json:"label,omitempty"`
	Score       *float64 `json:"score,omitempty"`
	Explanation *string  `json:"explanation,omitempty"`
	// Name is the annotation name; "" means DefaultName.
	Name string `json:"name,omitempty"`
	// Identifier tells annotations of the same name apart: one per user when
	// it is the user's id. Phoenix keeps one annotation per (span, name,
	// identifier), so a later vote replaces an earlier one.
	Identifier string `json:"identifier,omitempty"`
	// Metadata goes to the annotation's metadata, with "response_id" set
	// to ResponseID. At most MaxMetadataBytes as JSON.
	Metadata      map[string]any `json:"metadata,omitempty"`
	AnnotatorKind string         `json:"annotator_kind,omitempty"`
	// Target is what the vote is about: the LLM span that produced the
	// response (TargetSpan, the default), its whole trace (TargetTrace:
	// an answer built from several LLM calls, voted on by any of their
	// response ids), or the session the trace belongs to (TargetSession:
	// the conversation, where the app sets session.id).
	Target Target `json:"target,omitempty"`
	// Comment is free text the user wrote. It is written as a Phoenix note
	// on the target, beside the annotation, and replaced by the next
	// comment of the same name and identifier.
	Comment *string `json:"comment,omitempty"`
}

// Target is what a feedback annotates.
type Target string

// The targets of a feedback. Each is reached from the response id's span:
// the span itself, its trace, or the session of its trace.
const (
	TargetSpan    Target = "span"
	TargetTrace   Target = "trace"
	TargetSession Target = "session"
)

// Defaults and bounds of a Feedback.
const (
	DefaultName          = "user feedback"
	DefaultAnnotatorKind = "HUMAN"
	MaxResponseIDLen     = 256
	MaxNameLen           = 256
	MaxLabelLen          = 256
	MaxIdentifierLen     = 256
	MaxExplanationLen    = 16 << 10
	MaxCommentLen        = 16 << 10
	MaxMetadataBytes     = 16 << 10 // of its JSON encoding
)

// FieldError is a problem with one field of a feedback.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// normalize checks f and fills in the defaults: thumbs becomes a label and
// a score, the name and annotator kind their defaults. A normalized feedback
// normalizes to itself.
func (f *Feedback) normalize() *FieldError {
	switch {
	case f.ResponseID == "":
		return fieldErr("response_id", "required: the provider's response id, e.g. chatcmpl-... or resp_...")
	case len(f.ResponseID) > MaxResponseIDLen:
		return fieldErr("response_id", "at most %d bytes, got %d", MaxResponseIDLen, len(f.ResponseID))
	}
	if err := checkText("name", f.Name, MaxNameLen); err != nil {
		return err
	}
	if err := checkText("identifier", f.Identifier, MaxIdentifierLen); err != nil {
		return err
	}
	if f.Label != nil {
		if err := checkText("label", *f.Label, MaxLabelLen); err != nil {
			return err
		}
	}
	if f.Explanation != nil {
		if err := checkText("explanation", *f.Explanation, MaxExplanationLen); err != nil {
			return err
		}
	}
	if f.Comment != nil {
		if err := checkText("comment", *f.Comment, MaxCommentLen); err != nil {
			return err
		}
		if strings.TrimSpace(*f.Comment) == "" {
			// Phoenix trims notes and refuses them empty.
			return fieldErr("comment", "expected some text; leave the field out for no comment")
		}
	}
	switch f.Target {
	case "":
		f.Target = TargetSpan
	case TargetSpan, TargetTrace, TargetSession:
	default:
		return fieldErr("target", `expected "span", "trace" or "session", got %q`, f.Target)
	}
	if f.Score != nil && (math.IsNaN(*f.Score) || math.IsInf(*f.Score, 0)) {
		return fieldErr("score", "expected a finite number")
	}
	switch f.Thumbs {
	case "":
	case "up", "down":
		if f.Label != nil || f.Score != nil {
			return fieldErr("thumbs", `give either thumbs or label/score: thumbs sets label and score itself`)
		}
		label, score := "thumbs-up", 1.0
		if f.Thumbs == "down" {
			label, score = "thumbs-down", 0.0
		}
		// Thumbs is spent: clearing it makes normalize idempotent, so that
		// Submit can check what the API already checked.
		f.Label, f.Score, f.Thumbs = &label, &score, ""
	default:
		return fieldErr("thumbs", `expected "up" or "down", got %q`, f.Thumbs)
	}
	if f.Label == nil && f.Score == nil && f.Explanation == nil && f.Comment == nil {
		return fieldErr("thumbs", "a feedback needs at least one of thumbs, label, score, explanation or comment")
	}
	switch f.Name {
	case "":
		f.Name = DefaultName
	case "note":
		// Phoenix reserves this name for its own notes and answers 400.
		return fieldErr("name", `"note" is reserved by Phoenix; choose another name`)
	}
	switch f.AnnotatorKind {
	case "":
		f.AnnotatorKind = DefaultAnnotatorKind
	case "HUMAN", "LLM", "CODE":
	default:
		return fieldErr("annotator_kind", `expected "HUMAN", "LLM" or "CODE", got %q`, f.AnnotatorKind)
	}
	return nil
}

func checkText(field, s string, max int) *FieldError {
	if len(s) > max {
		return fieldErr(field, "at most %d bytes, got %d", max, len(s))
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "expected valid UTF-8 text")
	}
	return nil
}

// State is where a feedback is in its life.
type State string

// The states of a feedback. Pending is the only one that changes.
const (
	// Pending: waiting for its span, or for Phoenix to accept the annotation.
	Pending State = "pending"
	// Annotated: Phoenix confirmed the annotation. When it answered 2xx
	// with a body that could not be read, the annotation is stored as far
	// as anyone can tell: AnnotationID is empty and Reason says so.
	Annotated State = "annotated"
	// Failed: Phoenix refused the annotation for good (auth, validation).
	Failed State = "failed"
	// Expired: neither the span nor Phoenix's acceptance came in time.
	Expired State = "expired"
	// Superseded: another replica took a newer vote for the same response,
	// name and identifier (see Ordering); that one is written, this one
	// is not.
	Superseded State = "superseded"
)

// Status is what the API says of one feedback.
type Status struct {
	ResponseID string `json:"response_id"`
	Name       string `json:"name"`
	Identifier string `json:"identifier"`
	Target     Target `json:"target"`
	State      State  `json:"state"`
	TraceID    string `json:"trace_id,omitempty"`
	SpanID     string `json:"span_id,omitempty"`
	Project    string `json:"project,omitempty"`
	SpanName   string `json:"span_name,omitempty"`
	// SessionID is the session annotated, once known (target session).
	SessionID    string    `json:"session_id,omitempty"`
	AnnotationID string    `json:"annotation_id,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Attempts     int       `json:"attempts"`
	ReceivedAt   time.Time `json:"received_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}
