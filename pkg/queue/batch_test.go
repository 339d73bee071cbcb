package queue

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// batchIndexes returns the indexes of a batch's records, checking each.
func batchIndexes(t testing.TB, recs []Record, maxLen int) []int {
	t.Helper()
	var got []int
	for _, r := range recs {
		got = append(got, index(t, r.Data, maxLen))
	}
	return got
}

// drainBatches takes every record from q in batches of at most maxRecords
// and maxBytes, acknowledging each batch at once, and returns their indexes.
func drainBatches(t testing.TB, q *Queue, maxRecords int, maxBytes int64, maxLen int) []int {
	t.Helper()
	var got []int
	for q.Len() > 0 {
		recs, err := q.NextBatch(context.Background(), maxRecords, maxBytes, nil)
		if err != nil {
			t.Fatalf("NextBatch: %v", err)
		}
		got = append(got, batchIndexes(t, recs, maxLen)...)
		if err := q.Ack(recs...); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	return got
}

func TestNextBatch(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		check func(t *testing.T, q *Queue, dir string)
	}{
		{
			name: "as many as fit, in order, the same until acknowledged",
			check: func(t *testing.T, q *Queue, _ string) {
				appendN(t, q, 0, 10, 100)
				recs, err := q.NextBatch(ctx, 4, 1<<20, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := equal(batchIndexes(t, recs, 100), seq(0, 4)); err != nil {
					t.Fatal(err)
				}
				again, err := q.NextBatch(ctx, 4, 1<<20, nil)
				if err != nil || !slices.EqualFunc(recs, again, func(a, b Record) bool { return a.off == b.off && string(a.Data) == string(b.Data) }) {
					t.Fatalf("NextBatch without Ack returned other records (%v)", err)
				}
				// The first two only.
				if err := q.Ack(recs[:2]...); err != nil {
					t.Fatal(err)
				}
				if q.Len() != 8 {
					t.Fatalf("Len = %d after acknowledging 2 of 10, want 8", q.Len())
				}
				if err := equal(drainBatches(t, q, 3, 1<<20, 100), seq(2, 10)); err != nil {
					t.Fatal(err)
				}
				if q.Len() != 0 || q.Bytes() != 0 {
					t.Fatalf("drained queue has Len %d, Bytes %d", q.Len(), q.Bytes())
				}
			},
		},
		{
			name: "maxBytes bounds the payload, but the first comes whatever its size",
			check: func(t *testing.T, q *Queue, _ string) {
				appendN(t, q, 0, 6, 100)
				sizes := 0
				for i := range 3 {
					sizes += len(record(i, 100))
				}
				recs, err := q.NextBatch(ctx, 100, int64(sizes), nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := equal(batchIndexes(t, recs, 100), seq(0, 3)); err != nil {
					t.Fatal(err)
				}
				q.Ack(recs...)
				recs, err = q.NextBatch(ctx, 100, 1, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := equal(batchIndexes(t, recs, 100), []int{3}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a batch ends with its segment",
			check: func(t *testing.T, q *Queue, dir string) {
				appendN(t, q, 0, 40, 100)
				nseg := len(segments(t, dir))
				if nseg < 3 {
					t.Fatalf("%d segments, want several", nseg)
				}
				var sizes []int
				total := 0
				for q.Len() > 0 {
					recs, err := q.NextBatch(ctx, 1000, 1<<20, nil)
					if err != nil {
						t.Fatal(err)
					}
					sizes = append(sizes, len(recs))
					total += len(recs)
					if err := q.Ack(recs...); err != nil {
						t.Fatal(err)
					}
				}
				if len(sizes) != nseg || total != 40 {
					t.Fatalf("batches of %v records from %d segments: want one a segment, 40 in all", sizes, nseg)
				}
			},
		},
		{
			name: "acknowledging out of turn stops at the record out of turn",
			check: func(t *testing.T, q *Queue, _ string) {
				appendN(t, q, 0, 4, 100)
				recs, err := q.NextBatch(ctx, 4, 1<<20, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := q.Ack(recs[0], recs[2]); err == nil {
					t.Fatal("Ack of records 0 and 2 succeeded")
				}
				if q.Len() != 3 {
					t.Fatalf("Len = %d, want 3: record 0 acknowledged, the rest not", q.Len())
				}
				if err := equal(drainBatches(t, q, 10, 1<<20, 100), seq(1, 4)); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.check(t, open(t, Config{Dir: dir, SegmentBytes: 1024}), dir)
		})
	}
}

// A batch stops before a record the disk damaged while the queue was open;
// the damage is found, reported and skipped once it is at the head, as
// Next does.
func TestNextBatchDamage(t *testing.T) {
	var found []Corruption
	cfg := Config{Dir: t.TempDir(), OnCorrupt: func(c Corruption) { found = append(found, c) }}
	q := open(t, cfg)
	appendN(t, q, 0, 6, 100)
	f, err := os.OpenFile(lastSegment(t, cfg.Dir), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var at int64
	for i := range 3 {
		at += headerLen + int64(len(record(i, 100)))
	}
	flip(t, f, at+headerLen+3) // record 3's payload
	f.Close()

	ctx := context.Background()
	recs, err := q.NextBatch(ctx, 10, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := equal(batchIndexes(t, recs, 100), seq(0, 3)); err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("damage reported before it was at the head: %+v", found)
	}
	q.Ack(recs...)
	recs, err = q.NextBatch(ctx, 10, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := equal(batchIndexes(t, recs, 100), seq(4, 6)); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Offset != at || found[0].File != filepath.Join(cfg.Dir, filepath.Base(f.Name())) {
		t.Fatalf("reported %+v, want the record at %d", found, at)
	}
}

// Legacy segments are read in batches too.
func TestNextBatchLegacy(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1024}
	writeDir(t, cfg.Dir, readDir(t, goldenLegacy))
	q := open(t, cfg)
	want := seq(goldenAcked, goldenRecords)
	if err := equal(drainBatches(t, q, 7, 1<<20, goldenMaxLen), want); err != nil {
		t.Fatal(err)
	}
}

// A record appended in parts is their concatenation, framed as one.
func TestAppendParts(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Config{Dir: dir})
	whole := record(3, 100)
	if err := q.Append(whole[:5], nil, whole[5:9], whole[9:]); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(whole); err != nil {
		t.Fatal(err)
	}
	recs, err := q.NextBatch(context.Background(), 2, 1<<20, nil)
	if err != nil || len(recs) != 2 {
		t.Fatalf("NextBatch: %d records, %v", len(recs), err)
	}
	if string(recs[0].Data) != string(whole) || recs[0].size != recs[1].size {
		t.Fatalf("the record in parts reads back as %d bytes, want %d", len(recs[0].Data), len(whole))
	}
	seg, err := os.ReadFile(lastSegment(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if first := appendRecord(nil, pos{1, 0}, whole); string(seg[:len(first)]) != string(first) {
		t.Fatal("the record in parts is not framed as the same record appended whole")
	}
}

// A batch is read into the buffer given, when it is large enough.
func TestNextBatchBuffer(t *testing.T) {
	q := open(t, Config{Dir: t.TempDir()})
	appendN(t, q, 0, 5, 100)
	ctx := context.Background()
	buf := make([]byte, 4<<10)
	recs, err := q.NextBatch(ctx, 5, 1<<20, buf)
	if err != nil || len(recs) != 5 {
		t.Fatalf("NextBatch: %d records, %v", len(recs), err)
	}
	// Overwriting the buffer shows in the records read into it.
	for i := range buf {
		buf[i] = 0xee
	}
	for _, r := range recs {
		if r.Data[0] != 0xee {
			t.Fatal("a record was not read into the buffer given")
		}
	}
	recs, err = q.NextBatch(ctx, 5, 1<<20, buf)
	if err != nil || len(recs) != 5 {
		t.Fatalf("NextBatch: %d records, %v", len(recs), err)
	}
	if err := equal(batchIndexes(t, recs, 100), seq(0, 5)); err != nil {
		t.Fatal(err)
	}
	// Too small: new memory, the buffer untouched.
	small := make([]byte, 8)
	recs, err = q.NextBatch(ctx, 5, 1<<20, small)
	if err != nil || len(recs) != 5 || &recs[0].Data[0] == &small[0] {
		t.Fatalf("NextBatch with a small buffer: %d records, %v", len(recs), err)
	}
	// The first record comes whole whatever the limits.
	recs, err = q.NextBatch(ctx, 1, 0, buf[:0])
	if err != nil || len(recs) != 1 || index(t, recs[0].Data, 100) != 0 {
		t.Fatalf("NextBatch(1, 0): %d records, %v", len(recs), err)
	}
}
