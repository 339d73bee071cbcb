package feedback

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// target is what one attempt writes to: the response's span, its trace, or
// the session of its trace, by the id Phoenix knows it by.
type target struct {
	kind Target
	id   string
}

// targetOf returns what r's vote is written to. A session is asked of
// Phoenix the first time (see sessionOf).
func (s *Service) targetOf(ctx context.Context, r *record) (target, error) {
	switch r.key.target {
	case TargetTrace:
		return target{TargetTrace, r.span.TraceID.String()}, nil
	case TargetSession:
		id, err := s.sessionOf(ctx, s.ann.(TargetAnnotator), r) // Submit took the target only with one
		return target{TargetSession, id}, err
	}
	return target{TargetSpan, r.span.SpanID.String()}, nil
}

// orderKey names what the Ordering orders votes on: for a span, the
// feedback's key as before targets existed; for a trace or a session,
// what Phoenix upserts on (the trace or session, name and identifier),
// whichever of its response ids each vote was sent by.
func (t target) orderKey(k key) string {
	if t.kind == TargetSpan {
		return orderKey(k)
	}
	h := sha256.New()
	for _, part := range []string{string(t.kind), t.id, k.name, k.identifier} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// maxTargetClaims bounds the trace and session targets whose newest vote
// the service remembers; a target forgotten is ordered by the Ordering
// alone (with replicas), or not at all.
const maxTargetClaims = 10_000

// claimTarget reports whether r's vote, received at voted, may be written
// to t: no newer vote of the same name and identifier was claimed for t,
// through another of its response ids, whose record is keyed apart. A
// trace is reached by the ids of all its LLM calls, a session by those of
// all its traces: without the claim, a vote held back waiting for its span
// could overwrite a newer one written meanwhile. Spans need none: a span
// has one response id, and its key orders its votes.
func (s *Service) claimTarget(t target, r *record, voted time.Time) bool {
	if t.kind == TargetSpan {
		return true
	}
	claim := string(t.kind) + "\x00" + t.id + "\x00" + r.key.name + "\x00" + r.key.identifier
	s.mu.Lock()
	defer s.mu.Unlock()
	if newest, ok := s.targets.Get(claim); ok && newest.After(voted) {
		return false
	}
	s.targets.Add(claim, voted)
	return true
}

// write makes one attempt at a vote of r on t: the annotation (ann, made
// for the span, moved to the trace or session t names), then its comment
// as a note on t. It returns the id of the annotation, or of the note for
// a comment alone. Both upsert, so that an attempt made again after a
// failure of either writes nothing twice.
func (s *Service) write(ctx context.Context, r *record, t target, ann *phoenix.SpanAnnotation, comment *string) ([]string, error) {
	var ids []string
	var err error
	if ann != nil {
		switch t.kind {
		case TargetSpan:
			ids, err = s.ann.AnnotateSpans(ctx, []phoenix.SpanAnnotation{*ann})
		case TargetTrace:
			ids, err = s.ann.(TargetAnnotator).AnnotateTraces(ctx, []phoenix.TraceAnnotation{{
				TraceID: t.id, Name: ann.Name, AnnotatorKind: ann.AnnotatorKind,
				Result: ann.Result, Metadata: ann.Metadata, Identifier: ann.Identifier,
			}})
		case TargetSession:
			ids, err = s.ann.(TargetAnnotator).AnnotateSessions(ctx, []phoenix.SessionAnnotation{{
				SessionID: t.id, Name: ann.Name, AnnotatorKind: ann.AnnotatorKind,
				Result: ann.Result, Metadata: ann.Metadata, Identifier: ann.Identifier,
			}})
		}
	}
	// An annotation whose answer could not be read is stored (see
	// settle): its comment is written all the same.
	if (err != nil && !phoenix.IsUnreadableAnswer(err)) || comment == nil {
		return ids, err
	}
	annErr := err
	noteTarget := map[Target]phoenix.NoteTarget{TargetSpan: phoenix.NoteOnSpan, TargetTrace: phoenix.NoteOnTrace, TargetSession: phoenix.NoteOnSession}[t.kind]
	id, err := s.ann.(TargetAnnotator).AddNote(ctx, phoenix.Note{Target: noteTarget, ID: t.id, Text: *comment, Identifier: noteIdentifier(r.key)})
	switch {
	case err != nil && ann != nil:
		return nil, fmt.Errorf("the annotation was written, its comment was not: %w", err)
	case err != nil:
		return nil, err
	case ann == nil:
		return []string{id}, nil
	}
	return ids, annErr
}

// sessionOf returns the session of r's trace, asking Phoenix the first
// time: the proxy sees the session.id attribute only on the spans it
// passes through, which need not include the one it indexed.
func (s *Service) sessionOf(ctx context.Context, ta TargetAnnotator, r *record) (string, error) {
	s.mu.Lock()
	session := r.session
	s.mu.Unlock()
	if session != "" {
		return session, nil
	}
	session, err := ta.SessionOfTrace(ctx, r.span.Project, r.span.TraceID.String(), r.span.SpanID.String())
	if phoenix.IsUnreadableAnswer(err) {
		// Nothing was written: the lookup's answer, not an annotation's,
		// could not be read. Tried again, not counted as stored.
		return "", &lookupError{msg: "looking up the trace's session: " + err.Error()}
	}
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.uncountLocked(r)
	r.session = session
	s.countLocked(r)
	s.mu.Unlock()
	return session, nil
}

// lookupError is a lookup that failed in a way worth trying again, before
// anything was written. It keeps only the text of its cause, so that the
// cause's kind (an unreadable answer, which means stored for a write)
// does not leak into how the attempt is judged.
type lookupError struct{ msg string }

func (e *lookupError) Error() string { return e.msg }

// noteIdentifier is the identifier of the note a feedback's comment is
// written as: one note per name and identifier on a target, so that a new
// comment replaces the last one, as a new vote replaces the last vote.
// Escaped so that two keys cannot give the same identifier.
func noteIdentifier(k key) string {
	esc := strings.NewReplacer("%", "%25", "/", "%2F")
	return "feedback/" + esc.Replace(k.name) + "/" + esc.Replace(k.identifier)
}
