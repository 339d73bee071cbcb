package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzOpen gives Open any bytes as a segment and as an ack file, as a
// damaged disk could: Open must not panic, and what it recovers must be
// readable, in order, and take appends.
func FuzzOpen(f *testing.F) {
	var valid []byte
	for i := range 5 {
		valid = appendRecord(valid, pos{1, int64(len(valid))}, record(i, 50))
	}
	f.Add(valid, []byte(nil))
	f.Add(valid, ackFileBytes(1, int64(headerLen+len(record(0, 50))), 7))
	f.Add(valid[:len(valid)-3], ackFileBytes(1, 1, 2))
	f.Add(append(valid, 0, 0, 0, 0, 0, 0, 0, 0), ackFileBytes(2, 0, 3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte("ack"))
	f.Add([]byte{}, ackFileBytes(0, 1<<62, 1))
	f.Fuzz(func(t *testing.T, seg, ackBytes []byte) { fuzzOpen(t, current, seg, ackBytes) })
}

// FuzzOpenLegacy is FuzzOpen for a segment in the legacy format, which a
// proxy upgraded with exports queued finds.
func FuzzOpenLegacy(f *testing.F) {
	var valid []byte
	for i := range 5 {
		valid = appendLegacyRecord(valid, record(i, 50))
	}
	f.Add(valid, []byte(nil))
	f.Add(valid, ackFileBytes(1, int64(legacyHeaderLen+len(record(0, 50))), 7))
	f.Add(valid[:len(valid)-3], ackFileBytes(1, 1, 2))
	f.Add(append(valid, 0, 0, 0, 0, 0, 0, 0, 0), ackFileBytes(2, 0, 3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte("ack"))
	f.Fuzz(func(t *testing.T, seg, ackBytes []byte) { fuzzOpen(t, legacy, seg, ackBytes) })
}

// fuzzOpen opens a queue whose one segment, of format sf, holds seg, and
// whose ack file holds ackBytes (none if nil).
func fuzzOpen(t *testing.T, sf format, seg, ackBytes []byte) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, segFile{1, sf}.name()), seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if ackBytes != nil {
		if err := os.WriteFile(filepath.Join(dir, ackName), ackBytes, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 256}
	q, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer q.Close()
	n, size := q.Len(), q.Bytes()
	if n < 0 || size < int64(n)*sf.headerLen() || size > int64(len(seg)) {
		t.Fatalf("Len %d, Bytes %d from a segment of %d bytes", n, size, len(seg))
	}
	// In batches (of at most 3 records and 64 bytes past the first), as
	// the proxy reads it.
	for taken := 0; taken < n; {
		recs, err := q.NextBatch(context.Background(), 3, 64, nil)
		if err != nil {
			t.Fatalf("NextBatch of recovered records: %v", err)
		}
		for _, r := range recs {
			size -= r.size
		}
		if err := q.Ack(recs...); err != nil {
			t.Fatal(err)
		}
		taken += len(recs)
	}
	if q.Len() != 0 || q.Bytes() != 0 || size != 0 {
		t.Fatalf("after taking all: Len %d, Bytes %d, %d bytes unaccounted", q.Len(), q.Bytes(), size)
	}
	if err := q.Append([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(cfg)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer q.Close()
	r, err := q.Next(context.Background())
	if err != nil || string(r.Data) != "after" || q.Len() != 1 {
		t.Fatalf("after a reopen: Next = %q, %v; Len %d; want only \"after\"", r.Data, err, q.Len())
	}
}

// ackFileBytes returns an ack file whose newest slot, of generation gen, holds
// (seq, off) and whose other slot holds (seq, 0).
func ackFileBytes(seq uint64, off int64, gen uint64) []byte {
	b := make([]byte, ackSlotOff+ackRecLen)
	for _, slot := range []struct {
		gen uint64
		off int64
	}{{gen - 1, 0}, {gen, off}} {
		s := b[int(slot.gen%2)*ackSlotOff:]
		binary.LittleEndian.PutUint64(s, seq)
		binary.LittleEndian.PutUint64(s[8:], uint64(slot.off))
		binary.LittleEndian.PutUint64(s[16:], slot.gen)
		binary.LittleEndian.PutUint32(s[24:], crc32.Checksum(s[:24], castagnoli))
	}
	return b
}

// FuzzScan damages a segment of 24 records with the operations ops encodes
// (4 bytes each: flip, zero a range, truncate, or write a magic there) and
// checks the scan against what the damage did, record by record: every
// record left intact is found, and the holes are exactly the runs of
// damaged records (what is left of them). The scan needs no files, so this
// runs far more cases than FuzzOpen.
func FuzzScan(f *testing.F) {
	f.Add(false, []byte{0, 20, 0, 1})
	f.Add(true, []byte{0, 20, 0, 1})
	f.Add(false, []byte{1, 0, 0, 200, 3, 30, 1, 0})
	f.Add(true, []byte{1, 100, 0, 16, 2, 0, 10, 0})
	f.Add(false, []byte{3, 50, 0, 0, 3, 70, 1, 0, 0, 16, 0, 4})
	f.Fuzz(func(t *testing.T, legacyFormat bool, ops []byte) {
		sf := segFile{7, current}
		if legacyFormat {
			sf.f = legacy
		}
		var seg []byte
		var recs []laidRec
		for i := range 24 {
			off := int64(len(seg))
			if sf.f == legacy {
				seg = appendLegacyRecord(seg, record(i, 300))
			} else {
				seg = appendRecord(seg, pos{sf.seq, off}, record(i, 300))
			}
			recs = append(recs, laidRec{off, int64(len(seg)) - off, i})
		}
		intact := bytes.Clone(seg)
		for ; len(ops) >= 4; ops = ops[4:] {
			off := int(binary.LittleEndian.Uint16(ops[1:])) % len(seg)
			switch ops[0] % 4 {
			case 0:
				seg[off] ^= ops[3] | 1
			case 1:
				clear(seg[off:min(off+int(ops[3]), len(seg))])
			case 2:
				seg = seg[:off]
			case 3:
				copy(seg[off:], magic[:])
			}
			if len(seg) == 0 {
				break
			}
		}
		var wantN int
		var want []hole
		run := false
		for _, r := range recs {
			end := r.off + r.size
			if end <= int64(len(seg)) && bytes.Equal(seg[r.off:end], intact[r.off:end]) {
				wantN++
				run = false
				continue
			}
			end = min(end, int64(len(seg)))
			if end <= r.off {
				break
			}
			if run {
				want[len(want)-1].end = end
			} else {
				want = append(want, hole{r.off, end})
			}
			run = true
		}
		got, err := newScanner().scan(bytes.NewReader(seg), sf, 0, int64(len(seg)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.n != wantN || !slices.Equal(got.holes, want) {
			t.Fatalf("scan found %d records, holes %v; want %d, %v", got.n, got.holes, wantN, want)
		}
	})
}
