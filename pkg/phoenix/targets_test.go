package phoenix

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestVCRSessions(t *testing.T) {
	c := newVCRClient(t, "sessions")
	ctx := context.Background()

	session, err := c.SessionOfTrace(ctx, vcrProject, seedTraceID, spanNotes)
	if err != nil || session != vcrSessionID {
		t.Fatalf("SessionOfTrace = %q, %v; want %q (the root span's session.id)", session, err, vcrSessionID)
	}
	if _, err := c.SessionOfTrace(ctx, vcrProject, unknownTraceID, unknownSpanID); !IsSpanNotFound(err) {
		t.Errorf("SessionOfTrace of an unknown trace: err = %v, want a 404", err)
	}

	ann := SessionAnnotation{
		SessionID: session, Name: "user feedback", AnnotatorKind: AnnotatorHuman,
		Result: Result{Label: ptr("thumbs-down"), Score: ptr(0.0)}, Identifier: "user-7",
	}
	first, err := c.AnnotateSessions(ctx, []SessionAnnotation{ann})
	if err != nil {
		t.Fatal(err)
	}
	ann.Result = Result{Label: ptr("thumbs-up"), Score: ptr(1.0)}
	again, err := c.AnnotateSessions(ctx, []SessionAnnotation{ann})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || len(again) != 1 || first[0] != again[0] {
		t.Errorf("ids %q then %q: want one id, the same (Phoenix upserts on session, name, identifier)", first, again)
	}
	if typ, _ := globalID(t, first[0]); typ != "ProjectSessionAnnotation" {
		t.Errorf("id %q has type %q, want ProjectSessionAnnotation", first[0], typ)
	}

	_, err = c.AnnotateSessions(ctx, []SessionAnnotation{{SessionID: "no-such-session", Name: "user feedback", AnnotatorKind: AnnotatorHuman}})
	if !IsSpanNotFound(err) || !strings.Contains(err.Error(), "no-such-session") {
		t.Errorf("unknown session: err = %v, want a 404 naming it", err)
	}
}

func TestVCRNotes(t *testing.T) {
	c := newVCRClient(t, "notes")
	ctx := context.Background()
	for _, n := range []Note{
		{Target: NoteOnSpan, ID: spanNotes, Text: "the year is wrong", Identifier: "feedback/user feedback/u1"},
		{Target: NoteOnTrace, ID: seedTraceID, Text: "good answer overall", Identifier: "feedback/user feedback/u1"},
		{Target: NoteOnSession, ID: vcrSessionID, Text: "helpful conversation", Identifier: "feedback/user feedback/u1"},
	} {
		first, err := c.AddNote(ctx, n)
		if err != nil {
			t.Fatalf("%s note: %v", n.Target, err)
		}
		n.Text += " (edited)"
		again, err := c.AddNote(ctx, n)
		if err != nil {
			t.Fatalf("%s note again: %v", n.Target, err)
		}
		if first != again {
			t.Errorf("%s note: ids %q then %q, want the same (an identifier makes Phoenix upsert)", n.Target, first, again)
		}
	}
	if _, err := c.AddNote(ctx, Note{Target: NoteOnSpan, ID: unknownSpanID, Text: "x", Identifier: "i"}); !IsSpanNotFound(err) {
		t.Errorf("note on an unknown span: err = %v, want a 404", err)
	}

	// Read back: the span's note is an annotation named "note", its text the explanation.
	anns, err := c.SpanAnnotations(ctx, vcrProject, []string{spanNotes})
	if err != nil {
		t.Fatal(err)
	}
	if len(anns) != 1 || anns[0].Name != "note" || anns[0].Result.Explanation == nil ||
		*anns[0].Result.Explanation != "the year is wrong (edited)" || anns[0].Identifier != "feedback/user feedback/u1" {
		t.Errorf("span annotations = %+v, want the one note, edited", anns)
	}
}

func TestNoteCheckedWithoutRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []Note{
		{Target: "conversation", ID: "x", Text: "t"},
		{Target: NoteOnSpan, Text: "t"},
		{Target: NoteOnTrace, ID: "x", Text: " \n\t"},
	} {
		if _, err := c.AddNote(context.Background(), n); err == nil {
			t.Errorf("AddNote(%+v) = nil error", n)
		}
	}
	if _, err := c.SessionOfTrace(context.Background(), "p", "", "s"); err == nil {
		t.Error("SessionOfTrace with no trace id: nil error")
	}
}

func TestSessionOfTrace(t *testing.T) {
	tests := []struct {
		name       string
		root, span string // the data Phoenix answers for the root query and the span query
		want       string
		wantErr    func(error) bool
		wantAsks   int
	}{
		{"root's, asked first", `[{"parent_id":null,"attributes":{"session.id":" root "}}]`, `[]`, "root", nil, 1},
		{"else the span's", `[{"parent_id":null,"attributes":{}}]`, `[{"parent_id":"r","attributes":{"session.id":"s2"}}]`, "s2", nil, 2},
		{"the span's while the root is not in yet", `[]`, `[{"parent_id":"r","attributes":{"session.id":"s2"}}]`, "s2", nil, 2},
		{"none: no session", `[{"parent_id":null,"attributes":{"session.id":""}}]`, `[{"parent_id":"a","attributes":{"session.id":12}}]`, "",
			func(err error) bool { return errors.Is(err, ErrNoSession) && !IsRetryable(err) && !IsSpanNotFound(err) }, 2},
		{"neither in yet: not found", `[]`, `[]`, "", IsSpanNotFound, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asks := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asks++
				q := r.URL.Query()
				if r.URL.EscapedPath() != "/v1/projects/p%20q/spans" || q.Get("trace_id") != "t1" || q.Get("limit") != "1" {
					t.Errorf("request %s", r.URL)
				}
				data := tt.span
				switch {
				case q.Get("parent_id") == "null" && q.Get("span_id") == "":
					data = tt.root
				case q.Get("span_id") != "s1" || q.Get("parent_id") != "":
					t.Errorf("request %s", r.URL)
				}
				_, _ = w.Write([]byte(`{"data":` + data + `}`))
			}))
			defer srv.Close()
			c, err := New(Config{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.SessionOfTrace(context.Background(), "p q", "t1", "s1")
			if tt.wantErr == nil && (err != nil || got != tt.want) {
				t.Errorf("SessionOfTrace = %q, %v; want %q", got, err, tt.want)
			}
			if tt.wantErr != nil && (err == nil || !tt.wantErr(err)) {
				t.Errorf("SessionOfTrace = %q, %v; want the error", got, err)
			}
			if asks != tt.wantAsks {
				t.Errorf("%d requests, want %d", asks, tt.wantAsks)
			}
		})
	}
}
