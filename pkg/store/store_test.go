package store

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	st, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// reopen closes st and opens its directory again, as a restart does.
func reopen(t *testing.T, st *Store) *Store {
	t.Helper()
	dir := filepath.Dir(st.Path())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = open(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func ptr[T any](v T) *T { return &v }

func testSpan(n byte, seen time.Time) index.Span {
	return index.Span{
		TraceID:  pcommon.TraceID{0x5b, 0x8e, 15: n},
		SpanID:   pcommon.SpanID{0xee, 7: n},
		ParentID: pcommon.SpanID{0xaa, 7: n},
		Project:  "support",
		Name:     "ChatCompletion ✓",
		Start:    pcommon.Timestamp(1_700_000_000_000_000_000 + int64(n)),
		Seen:     seen,
	}
}

func TestFeedbackRoundTrip(t *testing.T) {
	st := open(t, t.TempDir())
	received := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	saved := []feedback.Saved{
		{
			Feedback: feedback.Feedback{
				ResponseID: "chatcmpl-1", Label: ptr("thumbs-up"), Score: ptr(1.0), Explanation: ptr("great\x00answer"),
				Name: "user feedback", Identifier: "user-7", AnnotatorKind: "HUMAN",
				Metadata: map[string]any{"app": "bot", "n": 3.5, "nested": map[string]any{"k": []any{"v"}}},
			},
			Received: received, Deadline: received.Add(time.Hour),
		},
		// Keys that a separator could confuse: ("a", "bc") and ("ab", "c").
		{Feedback: feedback.Feedback{ResponseID: "a", Name: "bc", Score: ptr(0.0), AnnotatorKind: "CODE"}, Received: received, Deadline: received},
		{Feedback: feedback.Feedback{ResponseID: "ab", Name: "c", Score: ptr(0.5), AnnotatorKind: "LLM"}, Received: received, Deadline: received},
	}
	if err := st.SaveFeedback(saved); err != nil {
		t.Fatal(err)
	}
	// A new vote for a kept key replaces it.
	vote2 := saved[0]
	vote2.Feedback.Label, vote2.Feedback.Score = ptr("thumbs-down"), ptr(0.0)
	if err := st.SaveFeedback([]feedback.Saved{vote2}); err != nil {
		t.Fatal(err)
	}
	saved[0] = vote2

	st = reopen(t, st)
	got, err := st.LoadFeedback()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]feedback.Saved{}
	for _, sv := range got {
		byID[sv.Feedback.ResponseID] = sv
	}
	if len(got) != 3 || len(byID) != 3 {
		t.Fatalf("loaded %d feedbacks, want 3: %+v", len(got), got)
	}
	for _, want := range saved {
		g := byID[want.Feedback.ResponseID]
		if !reflect.DeepEqual(g.Feedback, want.Feedback) || !g.Received.Equal(want.Received) || !g.Deadline.Equal(want.Deadline) {
			t.Errorf("loaded %+v\nwant   %+v", g, want)
		}
	}

	if err := st.RemoveFeedback("a", "bc", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveFeedback("never", "kept", "", ""); err != nil {
		t.Errorf("removing what is not kept: %v", err)
	}
	if c, err := st.Count(); err != nil || c.Feedback != 2 {
		t.Errorf("Count = %+v, %v; want 2 feedbacks", c, err)
	}
}

func TestIndexRoundTrip(t *testing.T) {
	st := open(t, t.TempDir())
	t0 := time.Unix(1_767_225_600, 42)
	err := st.WriteIndex([]index.Change{
		{Entry: index.Entry{ResponseID: "chatcmpl-b", Span: testSpan(2, t0)}},
		{Entry: index.Entry{ResponseID: "chatcmpl-a", Span: testSpan(1, t0)}},
		{Entry: index.Entry{ResponseID: "gone", Span: testSpan(9, t0)}},
		{Entry: index.Entry{ResponseID: "gone"}, Removed: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Replaced by an inner span later: the new value, and a later place.
	if err := st.WriteIndex([]index.Change{
		{Entry: index.Entry{ResponseID: "chatcmpl-c", Span: testSpan(3, t0.Add(time.Second))}},
		{Entry: index.Entry{ResponseID: "chatcmpl-b", Span: testSpan(4, t0.Add(2*time.Second))}},
	}); err != nil {
		t.Fatal(err)
	}

	st = reopen(t, st)
	got, err := st.LoadIndex()
	if err != nil {
		t.Fatal(err)
	}
	want := []index.Entry{
		{ResponseID: "chatcmpl-a", Span: testSpan(1, t0)},
		{ResponseID: "chatcmpl-c", Span: testSpan(3, t0.Add(time.Second))},
		{ResponseID: "chatcmpl-b", Span: testSpan(4, t0.Add(2*time.Second))},
	}
	if len(got) != len(want) {
		t.Fatalf("loaded %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Span.Seen.Equal(w.Span.Seen) {
			t.Errorf("entry %d: Seen %v, want %v", i, g.Span.Seen, w.Span.Seen)
		}
		g.Span.Seen, w.Span.Seen = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("entry %d = %+v\nwant %+v (in the order written)", i, g, w)
		}
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		check func(t *testing.T, dir string, st *Store, err error)
	}{
		{
			name: "creates the directory and a private file",
			check: func(t *testing.T, dir string, st *Store, err error) {
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(filepath.Join(dir, FileName))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
				}
			},
		},
		{
			name: "a second proxy on the same directory is refused",
			setup: func(t *testing.T, dir string) {
				first := open(t, dir)
				t.Cleanup(func() { _ = first.Close() })
			},
			check: func(t *testing.T, _ string, _ *Store, err error) {
				if err == nil || !strings.Contains(err.Error(), "in use by another process") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "a file of another format is refused",
			setup: func(t *testing.T, dir string) {
				db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if err := db.Update(func(tx *bolt.Tx) error {
					b, err := tx.CreateBucket(bucketMeta)
					if err != nil {
						return err
					}
					return b.Put(keyFormat, []byte("2"))
				}); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, _ string, _ *Store, err error) {
				if err == nil || !strings.Contains(err.Error(), `format "2"`) {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "a file bbolt created and never wrote to opens as it is",
			setup: func(t *testing.T, dir string) {
				// bbolt's first pages: meta pages, a free list page, an
				// empty root.
				db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				db.Close()
			},
			check: func(t *testing.T, _ string, st *Store, err error) {
				if err != nil || st.Recovery() != nil {
					t.Fatalf("Open = %v, Recovery %v", err, st.Recovery())
				}
			},
		},
		{
			name: "a file with a free list written by bbolt's defaults opens as it is",
			setup: func(t *testing.T, dir string) {
				db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				for i := range 50 {
					if err := db.Update(func(tx *bolt.Tx) error {
						if err := prepare(tx); err != nil {
							return err
						}
						b := tx.Bucket(bucketIndex)
						if i%3 == 2 {
							return b.Delete(fmt.Appendf(nil, "r%d", i-1))
						}
						return b.Put(fmt.Appendf(nil, "r%d", i), encodeSpan(nil, uint64(i), testSpan(byte(i), time.Unix(1, 0))))
					}); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, _ string, st *Store, err error) {
				if err != nil || st.Recovery() != nil {
					t.Fatalf("Open = %v, Recovery %v", err, st.Recovery())
				}
				if c, _ := st.Count(); c.Index != 18 {
					t.Errorf("%d index entries, want 18", c.Index)
				}
			},
		},
		{
			name: "not a database: moved aside, a new file in its place",
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not bbolt ", 1000)), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, dir string, st *Store, err error) {
				rec := checkRecovered(t, dir, st, err, "no valid meta page")
				if kept, err := os.ReadFile(rec.MovedTo); err != nil || string(kept) != strings.Repeat("not bbolt ", 1000) {
					t.Errorf("the damaged file is not kept: %v", err)
				}
				if rec.FeedbackSalvaged+rec.IndexSalvaged+rec.FeedbackLost+rec.IndexLost != 0 || !rec.LostUnknown {
					t.Errorf("Recovery = %+v, want nothing salvaged and an unknown loss", rec)
				}
			},
		},
		{
			name: "an empty file is damage, not a new start",
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, dir string, st *Store, err error) {
				rec := checkRecovered(t, dir, st, err, "empty")
				if !strings.Contains(rec.String(), "an unknown number lost") {
					t.Errorf("String() = %s", rec)
				}
			},
		},
		{
			name: "each damaged file is kept",
			setup: func(t *testing.T, dir string) {
				for range 2 {
					if err := os.WriteFile(filepath.Join(dir, FileName), []byte("x"), 0o600); err != nil {
						t.Fatal(err)
					}
					st, err := Open(dir, Options{})
					if err != nil {
						t.Fatal(err)
					}
					st.Close()
				}
				if err := os.WriteFile(filepath.Join(dir, FileName), []byte("y"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, dir string, st *Store, err error) {
				checkRecovered(t, dir, st, err, "too short")
				names, _ := filepath.Glob(filepath.Join(dir, FileName+".damaged-*"))
				if len(names) != 3 {
					t.Errorf("damaged files kept: %v, want 3", names)
				}
			},
		},
		{
			name: "a left-over salvage file is replaced, not read",
			setup: func(t *testing.T, dir string) {
				for _, name := range []string{FileName, FileName + ".salvage"} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte("damaged"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, dir string, st *Store, err error) {
				checkRecovered(t, dir, st, err, "too short")
				if _, err := os.Stat(filepath.Join(dir, FileName+".salvage")); !os.IsNotExist(err) {
					t.Errorf("salvage file left: %v", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if tc.setup != nil {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				tc.setup(t, dir)
			}
			st, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond})
			if st != nil {
				defer st.Close()
			}
			tc.check(t, dir, st, err)
		})
	}
}

// checkRecovered checks that Open replaced a damaged file, for reason, by a
// sound one, and returns its Recovery.
func checkRecovered(t *testing.T, dir string, st *Store, err error, reason string) *Recovery {
	t.Helper()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rec := st.Recovery()
	if rec == nil {
		t.Fatal("no Recovery")
	}
	if !strings.Contains(rec.Reason, reason) || !strings.Contains(rec.String(), rec.MovedTo) {
		t.Errorf("Recovery = %s; want the reason %q", rec, reason)
	}
	if filepath.Dir(rec.MovedTo) != dir {
		t.Errorf("moved to %s, not beside it", rec.MovedTo)
	}
	if _, err := os.Stat(rec.MovedTo); err != nil {
		t.Error(err)
	}
	if err := st.SaveFeedback([]feedback.Saved{{Feedback: feedback.Feedback{ResponseID: "r", Score: ptr(1.0)}}}); err != nil {
		t.Errorf("the new file: %v", err)
	}
	return rec
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	now := time.Date(2026, 3, 1, 12, 0, 0, 999, time.UTC)
	for i, want := range []string{"state.db.damaged-20260301T120000Z", "state.db.damaged-20260301T120000Z-2", "state.db.damaged-20260301T120000Z-3"} {
		if err := os.WriteFile(path, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := moveAside(path, now)
		if err != nil || got != filepath.Join(dir, want) {
			t.Fatalf("moveAside = %s, %v; want %s", got, err, want)
		}
		if b, err := os.ReadFile(got); err != nil || b[0] != byte(i) {
			t.Errorf("%s holds %v, %v; want [%d]", got, b, err, i)
		}
	}
}

// TestUnreadableRecordsAreDropped: a record this version cannot read costs
// that record, not the start.
func TestUnreadableRecordsAreDropped(t *testing.T) {
	st := open(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	t0 := time.Unix(1_767_225_600, 0)
	if err := st.WriteIndex([]index.Change{{Entry: index.Entry{ResponseID: "good", Span: testSpan(1, t0)}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveFeedback([]feedback.Saved{{Feedback: feedback.Feedback{ResponseID: "good", Score: ptr(1.0)}}}); err != nil {
		t.Fatal(err)
	}
	good := encodeSpan(nil, 1, testSpan(1, t0))
	err := st.db.Update(func(tx *bolt.Tx) error {
		ix, fb := tx.Bucket(bucketIndex), tx.Bucket(bucketFeedback)
		for i, v := range [][]byte{nil, {9}, good[:len(good)-1], append(good[:len(good):len(good)], 0)} {
			if err := ix.Put(fmt.Appendf(nil, "bad-%d", i), v); err != nil {
				return err
			}
		}
		if err := fb.Put([]byte("bad-json"), []byte("{")); err != nil {
			return err
		}
		return fb.Put([]byte("bad-version"), []byte(`{"v":2}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.LoadIndex()
	if err != nil || len(entries) != 1 || entries[0].ResponseID != "good" {
		t.Errorf("LoadIndex = %+v, %v; want the good entry only", entries, err)
	}
	saved, err := st.LoadFeedback()
	if err != nil || len(saved) != 1 || saved[0].Feedback.ResponseID != "good" {
		t.Errorf("LoadFeedback = %+v, %v; want the good feedback only", saved, err)
	}
	if c, _ := st.Count(); c != (Counts{Feedback: 1, Index: 1}) {
		t.Errorf("Count = %+v: the bad records were not deleted", c)
	}
}

// TestSaveFeedbackAllOrNone: a batch with one item that cannot be written
// leaves nothing of the batch.
func TestSaveFeedbackAllOrNone(t *testing.T) {
	st := open(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	err := st.SaveFeedback([]feedback.Saved{
		{Feedback: feedback.Feedback{ResponseID: "ok", Score: ptr(1.0)}},
		{Feedback: feedback.Feedback{ResponseID: "bad", Metadata: map[string]any{"c": make(chan int)}}},
	})
	if err == nil {
		t.Fatal("SaveFeedback of an unencodable feedback succeeded")
	}
	if c, _ := st.Count(); c.Feedback != 0 {
		t.Errorf("%d feedbacks kept after a failed batch, want 0", c.Feedback)
	}
}

// A vote on a response's span and one on its session by the same user, under
// the same name, are two feedbacks: each keeps its row, and the end of one
// removes only its own.
func TestFeedbackTargetsKeptApart(t *testing.T) {
	st := open(t, t.TempDir())
	t0 := time.Unix(1_767_225_600, 0)
	comment := "why so long?"
	var saved []feedback.Saved
	for _, target := range []feedback.Target{feedback.TargetSpan, feedback.TargetTrace, feedback.TargetSession} {
		f := feedback.Feedback{ResponseID: "chatcmpl-t", Name: feedback.DefaultName, Identifier: "u1", Target: target, Comment: &comment}
		saved = append(saved, feedback.Saved{Feedback: f, Received: t0, Deadline: t0.Add(time.Hour), Voted: t0})
	}
	if err := st.SaveFeedback(saved); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, st)
	if got, err := st.LoadFeedback(); err != nil || len(got) != 3 {
		t.Fatalf("loaded %d feedbacks (%v), want the 3 targets", len(got), err)
	}
	if err := st.RemoveFeedback("chatcmpl-t", feedback.DefaultName, "u1", feedback.TargetSpan); err != nil {
		t.Fatal(err)
	}
	got, err := st.LoadFeedback()
	if err != nil || len(got) != 2 {
		t.Fatalf("after removing the span's: %d feedbacks (%v), want 2", len(got), err)
	}
	for _, sv := range got {
		if sv.Feedback.Target == feedback.TargetSpan || sv.Feedback.Comment == nil || *sv.Feedback.Comment != comment {
			t.Errorf("kept %+v", sv.Feedback)
		}
	}
}
