package feedback_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// fakeTargets plays Phoenix for every target: each call is recorded as one
// line ("trace <trace id> <name>/<identifier> <label>", "note span <id>
// <identifier> <text>", ...), and answered by sessionErrs (for
// SessionOfTrace, in turn, the last repeating) or with an id.
type fakeTargets struct {
	fakeAnnotator

	mu          sync.Mutex
	lines       []string
	annErr      error // the first annotation's answer, when set
	session     string
	sessionErrs []error
	sessionAsks int
}

func (f *fakeTargets) record(line string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, line)
	return fmt.Sprintf("id-%d", len(f.lines))
}

func (f *fakeTargets) Lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lines)
}

func label(r phoenix.Result) string {
	if r.Label == nil {
		return "<nil>"
	}
	return *r.Label
}

func (f *fakeTargets) AnnotateSpans(ctx context.Context, anns []phoenix.SpanAnnotation) ([]string, error) {
	a := anns[0]
	id := f.record(fmt.Sprintf("span %s %s/%s %s", a.SpanID, a.Name, a.Identifier, label(a.Result)))
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.annErr; err != nil {
		f.annErr = nil
		return nil, err
	}
	return []string{id}, nil
}

func (f *fakeTargets) AnnotateTraces(ctx context.Context, anns []phoenix.TraceAnnotation) ([]string, error) {
	a := anns[0]
	return []string{f.record(fmt.Sprintf("trace %s %s/%s %s", a.TraceID, a.Name, a.Identifier, label(a.Result)))}, nil
}

func (f *fakeTargets) AnnotateSessions(ctx context.Context, anns []phoenix.SessionAnnotation) ([]string, error) {
	a := anns[0]
	return []string{f.record(fmt.Sprintf("session %s %s/%s %s", a.SessionID, a.Name, a.Identifier, label(a.Result)))}, nil
}

func (f *fakeTargets) AddNote(ctx context.Context, n phoenix.Note) (string, error) {
	return f.record(fmt.Sprintf("note %s %s %s %s", n.Target, n.ID, n.Identifier, n.Text)), nil
}

func (f *fakeTargets) SessionOfTrace(ctx context.Context, project, traceID, spanID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.sessionAsks
	f.sessionAsks++
	if len(f.sessionErrs) > 0 {
		if err := f.sessionErrs[min(n, len(f.sessionErrs)-1)]; err != nil {
			return "", err
		}
	}
	if project != "support" || traceID != span(1).TraceID.String() || spanID != span(1).SpanID.String() {
		return "", fmt.Errorf("asked for the session of trace %s in %s", traceID, project)
	}
	return f.session, nil
}

func newTargetsService(t *testing.T, ann *fakeTargets) (*feedback.Service, *index.Index) {
	t.Helper()
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.MaxAge = 10 * time.Minute // past the grace a session is waited for
	svc, err := feedback.New(cfg, ix, ann, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return svc, ix
}

func comment(s string) *string { return &s }

func TestTargets(t *testing.T) {
	sp := span(1)
	spanID, traceID := sp.SpanID.String(), sp.TraceID.String()
	notFound := &phoenix.APIError{StatusCode: 404, Message: "no span of trace yet"}
	tests := []struct {
		name        string
		items       []feedback.Feedback
		sessionErrs []error
		wait        time.Duration
		wantLines   []string
		check       func(t *testing.T, st []feedback.Status, ann *fakeTargets)
	}{
		{
			name:      "span, the default",
			items:     []feedback.Feedback{vote("chatcmpl-1", "up", identifier("u1"))},
			wantLines: []string{"span " + spanID + " user feedback/u1 thumbs-up"},
			check: func(t *testing.T, st []feedback.Status, _ *fakeTargets) {
				if st[0].Target != feedback.TargetSpan || st[0].AnnotationID != "id-1" {
					t.Errorf("status = %+v", st[0])
				}
			},
		},
		{
			name:      "trace: the span's trace",
			items:     []feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "down", Target: feedback.TargetTrace}},
			wantLines: []string{"trace " + traceID + " user feedback/ thumbs-down"},
		},
		{
			name:      "session: asked of Phoenix, then annotated",
			items:     []feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "up", Target: feedback.TargetSession, Identifier: "u1"}},
			wantLines: []string{"session conv-9 user feedback/u1 thumbs-up"},
			check: func(t *testing.T, st []feedback.Status, _ *fakeTargets) {
				if st[0].SessionID != "conv-9" || st[0].Target != feedback.TargetSession {
					t.Errorf("status = %+v", st[0])
				}
			},
		},
		{
			name:        "session: the trace not in Phoenix yet is waited for",
			items:       []feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "up", Target: feedback.TargetSession}},
			sessionErrs: []error{notFound, notFound, nil},
			wait:        10 * time.Second,
			wantLines:   []string{"session conv-9 user feedback/ thumbs-up"},
			check: func(t *testing.T, st []feedback.Status, ann *fakeTargets) {
				if st[0].State != feedback.Annotated || ann.sessionAsks != 3 {
					t.Errorf("status = %+v after %d asks", st[0], ann.sessionAsks)
				}
			},
		},
		{
			name:        "session: a trace in none fails after the grace",
			items:       []feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "up", Target: feedback.TargetSession}},
			sessionErrs: []error{fmt.Errorf("%w (trace x)", phoenix.ErrNoSession)},
			wait:        3 * time.Minute,
			check: func(t *testing.T, st []feedback.Status, _ *fakeTargets) {
				if st[0].State != feedback.Failed || !strings.Contains(st[0].Reason, "session.id") {
					t.Errorf("status = %+v", st[0])
				}
			},
		},
		{
			name: "comment: a note on the same target after the annotation",
			items: []feedback.Feedback{
				{ResponseID: "chatcmpl-1", Thumbs: "down", Identifier: "u/1", Comment: comment("wrong year")},
				{ResponseID: "chatcmpl-1", Thumbs: "up", Target: feedback.TargetTrace, Comment: comment("good overall")},
			},
			wantLines: []string{
				"span " + spanID + " user feedback/u/1 thumbs-down",
				"note span " + spanID + " feedback/user feedback/u%2F1 wrong year",
				"trace " + traceID + " user feedback/ thumbs-up",
				"note trace " + traceID + " feedback/user feedback/ good overall",
			},
		},
		{
			name:      "comment alone: a note only, its id the feedback's",
			items:     []feedback.Feedback{{ResponseID: "chatcmpl-1", Comment: comment("why so long?"), Target: feedback.TargetSession}},
			wantLines: []string{"note session conv-9 feedback/user feedback/ why so long?"},
			check: func(t *testing.T, st []feedback.Status, _ *fakeTargets) {
				if st[0].State != feedback.Annotated || st[0].AnnotationID != "id-1" {
					t.Errorf("status = %+v", st[0])
				}
			},
		},
		{
			name: "one response, the same name and identifier, on two targets: two annotations",
			items: []feedback.Feedback{
				vote("chatcmpl-1", "up"),
				{ResponseID: "chatcmpl-1", Thumbs: "down", Target: feedback.TargetTrace},
			},
			wantLines: []string{"span " + spanID + " user feedback/ thumbs-up", "trace " + traceID + " user feedback/ thumbs-down"},
			check: func(t *testing.T, st []feedback.Status, _ *fakeTargets) {
				if st[0].State != feedback.Annotated || st[1].State != feedback.Annotated {
					t.Errorf("statuses = %+v", st)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ann := &fakeTargets{session: "conv-9", sessionErrs: tt.sessionErrs}
				svc, ix := newTargetsService(t, ann)
				svc.Indexed(ix.Add([]index.Entry{{ResponseID: "chatcmpl-1", Span: sp}}))
				// One at a time, so that the lines come in order.
				for _, f := range tt.items {
					if _, err := svc.Submit([]feedback.Feedback{f}); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
				}
				time.Sleep(tt.wait)
				synctest.Wait()
				if tt.wantLines != nil && !slices.Equal(ann.Lines(), tt.wantLines) {
					t.Errorf("calls\n got %q\nwant %q", ann.Lines(), tt.wantLines)
				}
				if tt.check != nil {
					var st []feedback.Status
					for _, f := range tt.items {
						for _, s := range svc.Lookup(f.ResponseID) {
							if s.Target == f.Target || (f.Target == "" && s.Target == feedback.TargetSpan) {
								st = append(st, s)
							}
						}
					}
					tt.check(t, st, ann)
				}
				if err := svc.Shutdown(context.Background()); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

func TestTargetsBadInput(t *testing.T) {
	h := newHarness(t, testConfig())
	defer h.svc.Shutdown(context.Background())
	tests := []struct {
		name      string
		f         feedback.Feedback
		wantField string
	}{
		{"unknown target", feedback.Feedback{ResponseID: "r", Thumbs: "up", Target: "conversation"}, "target"},
		{"blank comment", feedback.Feedback{ResponseID: "r", Thumbs: "up", Comment: comment(" \n")}, "comment"},
		{"long comment", feedback.Feedback{ResponseID: "r", Thumbs: "up", Comment: comment(strings.Repeat("x", feedback.MaxCommentLen+1))}, "comment"},
		// The harness's fake writes span annotations only.
		{"trace with an annotator of spans only", feedback.Feedback{ResponseID: "r", Thumbs: "up", Target: feedback.TargetTrace}, "target"},
		{"comment with an annotator of spans only", feedback.Feedback{ResponseID: "r", Thumbs: "up", Comment: comment("hi")}, "comment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.svc.Submit([]feedback.Feedback{tt.f})
			var ferr *feedback.FieldError
			if !errors.As(err, &ferr) || ferr.Field != tt.wantField {
				t.Errorf("Submit = %v, want a field error on %s", err, tt.wantField)
			}
		})
	}
}

// The proxy's Phoenix client writes every target.
var _ feedback.TargetAnnotator = (*phoenix.Client)(nil)

// A session lookup whose answer cannot be read wrote nothing: it is tried
// again, never taken for a stored annotation.
func TestSessionLookupUnreadable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ann := &fakeTargets{session: "conv-9", sessionErrs: []error{unreadableAnswer, nil}}
		svc, ix := newTargetsService(t, ann)
		svc.Indexed(ix.Add([]index.Entry{{ResponseID: "chatcmpl-1", Span: span(1)}}))
		if _, err := svc.Submit([]feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "up", Target: feedback.TargetSession}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		st := svc.Lookup("chatcmpl-1")
		if len(st) != 1 || st[0].State != feedback.Annotated || st[0].Reason != "" || ann.sessionAsks != 2 ||
			!slices.Equal(ann.Lines(), []string{"session conv-9 user feedback/ thumbs-up"}) {
			t.Errorf("status %+v after %d asks, calls %q; want annotated after a second ask", st, ann.sessionAsks, ann.Lines())
		}
		svc.Shutdown(context.Background())
	})
}

// An annotation Phoenix stored but whose answer could not be read still
// gets its comment.
func TestCommentAfterUnreadableAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ann := &fakeTargets{annErr: unreadableAnswer}
		svc, ix := newTargetsService(t, ann)
		svc.Indexed(ix.Add([]index.Entry{{ResponseID: "chatcmpl-1", Span: span(1)}}))
		if _, err := svc.Submit([]feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "up", Comment: comment("nice")}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if lines := ann.Lines(); len(lines) != 2 || !strings.HasPrefix(lines[1], "note span ") {
			t.Errorf("calls %q, want the annotation then its note", lines)
		}
		if st := svc.Lookup("chatcmpl-1"); len(st) != 1 || st[0].State != feedback.Annotated {
			t.Errorf("status %+v", st)
		}
		svc.Shutdown(context.Background())
	})
}

// A trace is reached by each of its LLM calls' response ids: a vote held
// back waiting for its span does not overwrite a newer one the user sent
// through another id of the same trace.
func TestTraceVotesOrderedAcrossResponses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ann := &fakeTargets{}
		svc, ix := newTargetsService(t, ann)
		draft := span(1)
		draft.SpanID[7] = 0x99 // the trace's other LLM span
		svc.Indexed(ix.Add([]index.Entry{{ResponseID: "chatcmpl-answer", Span: span(1)}}))
		// Up by the draft's id, whose span has not come through; then down
		// by the answer's id, written at once.
		if _, err := svc.Submit([]feedback.Feedback{{ResponseID: "chatcmpl-draft", Thumbs: "up", Identifier: "u1", Target: feedback.TargetTrace}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if _, err := svc.Submit([]feedback.Feedback{{ResponseID: "chatcmpl-answer", Thumbs: "down", Identifier: "u1", Target: feedback.TargetTrace}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		svc.Indexed(ix.Add([]index.Entry{{ResponseID: "chatcmpl-draft", Span: draft}}))
		synctest.Wait()
		trace := span(1).TraceID.String()
		if lines := ann.Lines(); !slices.Equal(lines, []string{"trace " + trace + " user feedback/u1 thumbs-down"}) {
			t.Errorf("calls %q, want the newer vote only", lines)
		}
		if st := svc.Lookup("chatcmpl-draft"); len(st) != 1 || st[0].State != feedback.Superseded {
			t.Errorf("the older vote: %+v, want superseded", st)
		}
		svc.Shutdown(context.Background())
	})
}

// The grace a session is waited for starts at Phoenix's first "no
// session", not when the feedback came: a vote that waited long for its
// span still gets it.
func TestNoSessionGraceFromFirstAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ann := &fakeTargets{sessionErrs: []error{fmt.Errorf("%w (trace x)", phoenix.ErrNoSession)}}
		svc, ix := newTargetsService(t, ann)
		if _, err := svc.Submit([]feedback.Feedback{{ResponseID: "chatcmpl-1", Thumbs: "up", Target: feedback.TargetSession}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Minute) // the span takes its time
		svc.Indexed(ix.Add([]index.Entry{{ResponseID: "chatcmpl-1", Span: span(1)}}))
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := svc.Lookup("chatcmpl-1"); len(st) != 1 || st[0].State != feedback.Pending {
			t.Fatalf("a minute into the grace: %+v, want pending", st)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if st := svc.Lookup("chatcmpl-1"); len(st) != 1 || st[0].State != feedback.Failed {
			t.Errorf("past the grace: %+v, want failed", st)
		}
		svc.Shutdown(context.Background())
	})
}
