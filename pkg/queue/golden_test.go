package queue

import (
	"bytes"
	"context"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/current from what the queue writes now")

// The golden directories hold the same queue, written by two versions of
// this package: 40 records record(i, goldenMaxLen) appended with
// SegmentBytes 1024, the first 10 acknowledged, closed (LOCK left out).
//
//   - testdata/legacy-df4fa70 was written in the legacy format by the queue
//     at commit df4fa70, the last to write it (writeGoldenQueue run with
//     that commit's package re-records it).
//   - testdata/current is what the queue writes now. TestGoldenFormat fails
//     if that changes; `go test ./pkg/queue -run TestGoldenFormat -update`
//     rewrites it, which is right only with a new format version (and
//     the old one still read, as legacy is).
const (
	goldenLegacy  = "testdata/legacy-df4fa70"
	goldenCurrent = "testdata/current"
	goldenMaxLen  = 500
	goldenRecords = 40
	goldenAcked   = 10
)

func writeGoldenQueue(t testing.TB, dir string) {
	t.Helper()
	q := open(t, Config{Dir: dir, SegmentBytes: 1024})
	appendN(t, q, 0, goldenRecords, goldenMaxLen)
	for range goldenAcked {
		r, err := q.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

// readDir returns the files of a queue directory but LOCK.
func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.Name() == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func writeDir(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if b == nil {
			continue // removed
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGoldenFormat(t *testing.T) {
	dir := t.TempDir()
	writeGoldenQueue(t, dir)
	got := readDir(t, dir)
	if *update {
		if err := os.RemoveAll(goldenCurrent); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(goldenCurrent, 0o755); err != nil {
			t.Fatal(err)
		}
		writeDir(t, goldenCurrent, got)
		return
	}
	want := readDir(t, goldenCurrent)
	names := slices.Sorted(maps.Keys(got))
	if len(got) != len(want) {
		t.Fatalf("the queue wrote %v, the golden directory holds %d files", names, len(want))
	}
	for _, name := range names {
		if !bytes.Equal(got[name], want[name]) {
			t.Errorf("%s differs from %s: the on-disk format changed; give it a new version (segment suffix) and keep reading this one", name, goldenCurrent)
		}
	}
}

// A proxy upgraded with exports queued in the legacy format delivers them,
// and appends in the current format.
func TestLegacyUpgrade(t *testing.T) {
	var found []Corruption
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1024, OnCorrupt: func(c Corruption) { found = append(found, c) }}
	writeDir(t, cfg.Dir, readDir(t, goldenLegacy))
	q := open(t, cfg)
	if q.Len() != goldenRecords-goldenAcked {
		t.Fatalf("Len = %d, want %d", q.Len(), goldenRecords-goldenAcked)
	}
	// Part now, the rest after a restart: the ack position works in
	// legacy segments too.
	for range 5 {
		r, err := q.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, q, 100, 110, goldenMaxLen)
	q.Close()
	if cur := segments(t, cfg.Dir); len(cur) == 0 || filepath.Base(cur[0]) != segName(14) {
		t.Fatalf("segments in the current format %v, want the first to be %s, after the legacy ones", base(cur), segName(14))
	}

	q = open(t, cfg)
	want := append(seq(goldenAcked+5, goldenRecords), seq(100, 110)...)
	if err := equal(drain(t, q, goldenMaxLen), want); err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("reported %+v from intact segments", found)
	}
	// Consumed, the legacy segments are gone.
	if old, _ := filepath.Glob(filepath.Join(cfg.Dir, "*"+legacySuffix)); len(old) != 0 {
		t.Fatalf("legacy segments left after consuming them: %v", base(old))
	}
}
