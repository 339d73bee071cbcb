package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// record returns the i-th test record: its index, then a pattern derived
// from it, of a length that varies with i so records straddle segment ends.
func record(i, maxLen int) []byte {
	n := 8 + (i*7919)%maxLen
	b := make([]byte, n)
	binary.LittleEndian.PutUint64(b, uint64(i))
	for j := 8; j < n; j++ {
		b[j] = byte(i + j)
	}
	return b
}

// index checks that b is an intact record(i, maxLen) and returns i.
func index(t testing.TB, b []byte, maxLen int) int {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("record of %d bytes, want at least 8", len(b))
	}
	i := int(binary.LittleEndian.Uint64(b))
	if want := record(i, maxLen); !bytes.Equal(b, want) {
		t.Fatalf("record %d is damaged: %d bytes, want %d", i, len(b), len(want))
	}
	return i
}

func open(t testing.TB, cfg Config) *Queue {
	t.Helper()
	q, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func appendN(t testing.TB, q *Queue, from, to, maxLen int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := q.Append(record(i, maxLen)); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
}

// drain takes every record from q, acknowledging each, and returns their
// indexes.
func drain(t testing.TB, q *Queue, maxLen int) []int {
	t.Helper()
	var got []int
	for q.Len() > 0 {
		r, err := q.Next(context.Background())
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, index(t, r.Data, maxLen))
		if err := q.Ack(r); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	return got
}

func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func segments(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	names := segments(t, dir)
	if len(names) == 0 {
		t.Fatal("no segment")
	}
	return names[len(names)-1]
}

func fileSize(t testing.TB, name string) int64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func equal(a, b []int) error {
	if len(a) != len(b) {
		return fmt.Errorf("got %d records %v, want %d %v", len(a), short(a), len(b), short(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Errorf("record %d is %d, want %d", i, a[i], b[i])
		}
	}
	return nil
}

func short(s []int) []int {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// appendLegacyRecord appends rec to buf framed in the legacy format, as the
// queue wrote it before sync markers.
func appendLegacyRecord(buf, rec []byte) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(rec)))
	buf = binary.LittleEndian.AppendUint32(buf, legacyChecksum(buf[start:], rec))
	return append(buf, rec...)
}
