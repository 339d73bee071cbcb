package store

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// The records of testdata/*-v1.*, as Go values.
var (
	goldenFeedback = feedback.Saved{
		Feedback: feedback.Feedback{
			ResponseID:    "chatcmpl-AbC123",
			Label:         ptr("thumbs-down"),
			Score:         ptr(0.0),
			Explanation:   ptr(`wrong "date" <b>été</b>`),
			Name:          "user feedback",
			Identifier:    "user-7",
			AnnotatorKind: "HUMAN",
			Metadata: map[string]any{
				"app": "support-bot", "turn": 3.5, "tags": []any{"a", "b"},
				"nested": map[string]any{"ok": true, "none": nil},
			},
		},
		Received: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC),
		Deadline: time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.UTC),
	}
	goldenIndexSeq   uint64 = 0x0102030405060708
	goldenIndexEntry        = index.Entry{
		ResponseID: "chatcmpl-AbC123",
		Span: index.Span{
			TraceID:  pcommon.TraceID{0x5b, 0x8e, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e},
			SpanID:   pcommon.SpanID{0xee, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07},
			ParentID: pcommon.SpanID{0xaa, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77},
			Project:  "support",
			Name:     "ChatCompletion ✓",
			Start:    pcommon.Timestamp(1_772_366_400_000_000_001),
			Seen:     time.Unix(1_772_366_400, 987654321),
		},
	}
)

// TestGoldenRecords pins the records of state.db to files holding their
// exact bytes as this version stores them (written once by SaveFeedback
// and WriteIndex, never by hand): each must read back as the Go value above
// and that value must be stored as the same bytes. A failure means a file
// written before the change no longer reads, or reads as something else:
// a renamed JSON tag, a field moved in the binary layout. Then keep the old
// records readable, give the new ones a new version ("v" of a feedback,
// spanVersion of an index entry), and add golden files for it beside these
// rather than changing these.
func TestGoldenRecords(t *testing.T) {
	fbKey, fbValue, ixValue := golden(t, "feedback-v1.key"), golden(t, "feedback-v1.json"), golden(t, "index-v1.bin")
	ixKey := []byte(goldenIndexEntry.ResponseID)
	tests := []struct {
		name  string
		check func(t *testing.T, st *Store)
	}{
		{
			name: "a feedback record reads back",
			check: func(t *testing.T, st *Store) {
				put(t, st, bucketFeedback, fbKey, fbValue)
				got, err := st.LoadFeedback()
				if err != nil || len(got) != 1 {
					t.Fatalf("LoadFeedback = %+v, %v; want the golden record", got, err)
				}
				g, w := got[0], goldenFeedback
				if !reflect.DeepEqual(g.Feedback, w.Feedback) || !g.Received.Equal(w.Received) || !g.Deadline.Equal(w.Deadline) {
					t.Errorf("read %+v\nwant %+v", g, w)
				}
				// The key is the one RemoveFeedback computes.
				f := w.Feedback
				if err := st.RemoveFeedback(f.ResponseID, f.Name, f.Identifier, f.Target); err != nil {
					t.Fatal(err)
				}
				if c, _ := st.Count(); c.Feedback != 0 {
					t.Error("RemoveFeedback left the golden record: its key is computed differently")
				}
			},
		},
		{
			name: "a feedback is stored as the golden record",
			check: func(t *testing.T, st *Store) {
				if err := st.SaveFeedback([]feedback.Saved{goldenFeedback}); err != nil {
					t.Fatal(err)
				}
				k, v := first(t, st, bucketFeedback)
				if !bytes.Equal(k, fbKey) {
					t.Errorf("key\n%q\nwant\n%q", k, fbKey)
				}
				if !bytes.Equal(v, fbValue) {
					t.Errorf("record\n%s\nwant\n%s", v, fbValue)
				}
			},
		},
		{
			name: "an index entry reads back",
			check: func(t *testing.T, st *Store) {
				put(t, st, bucketIndex, ixKey, ixValue)
				got, err := st.LoadIndex()
				if err != nil || len(got) != 1 {
					t.Fatalf("LoadIndex = %+v, %v; want the golden entry", got, err)
				}
				g, w := got[0], goldenIndexEntry
				if !g.Span.Seen.Equal(w.Span.Seen) {
					t.Errorf("Seen %v, want %v", g.Span.Seen, w.Span.Seen)
				}
				g.Span.Seen, w.Span.Seen = time.Time{}, time.Time{}
				if g != w {
					t.Errorf("read %+v\nwant %+v", g, w)
				}
				if seq, _, err := decodeSpan(ixValue); err != nil || seq != goldenIndexSeq {
					t.Errorf("sequence %#x, %v; want %#x", seq, err, goldenIndexSeq)
				}
			},
		},
		{
			name: "an index entry is stored as the golden record",
			check: func(t *testing.T, st *Store) {
				// WriteIndex takes the bucket's next sequence.
				if err := st.db.Update(func(tx *bolt.Tx) error {
					return tx.Bucket(bucketIndex).SetSequence(goldenIndexSeq - 1)
				}); err != nil {
					t.Fatal(err)
				}
				if err := st.WriteIndex([]index.Change{{Entry: goldenIndexEntry}}); err != nil {
					t.Fatal(err)
				}
				k, v := first(t, st, bucketIndex)
				if !bytes.Equal(k, ixKey) || !bytes.Equal(v, ixValue) {
					t.Errorf("entry %q:\n% x\nwant %q:\n% x", k, v, ixKey, ixValue)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t, t.TempDir())
			defer st.Close()
			tc.check(t, st)
		})
	}
}

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// put writes a record as it is, bypassing the encoders.
func put(t *testing.T, st *Store, bucket, k, v []byte) {
	t.Helper()
	if err := st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, v) }); err != nil {
		t.Fatal(err)
	}
}

// first returns the first record of bucket, as stored.
func first(t *testing.T, st *Store, bucket []byte) (k, v []byte) {
	t.Helper()
	if err := st.db.View(func(tx *bolt.Tx) error {
		k, v = tx.Bucket(bucket).Cursor().First()
		k, v = bytes.Clone(k), bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return k, v
}
