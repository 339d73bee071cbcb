package queue

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen gives Open any bytes as a segment and as an ack file, as a
// damaged disk could: Open must not panic, and what it recovers must be
// readable, in order, and take appends.
func FuzzOpen(f *testing.F) {
	var valid []byte
	for i := range 5 {
		valid = appendRecord(valid, record(i, 50))
	}
	// ack returns an ack file whose newest slot, of generation gen, holds
	// (seq, off) and whose other slot holds (seq, 0).
	ack := func(seq uint64, off int64, gen uint64) []byte {
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
	f.Add(valid, []byte(nil))
	f.Add(valid, ack(1, int64(headerLen+len(record(0, 50))), 7))
	f.Add(valid[:len(valid)-3], ack(1, 1, 2))
	f.Add(append(valid, 0, 0, 0, 0, 0, 0, 0, 0), ack(2, 0, 3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte("ack"))
	f.Add([]byte{}, ack(0, 1<<62, 1))
	f.Fuzz(func(t *testing.T, seg, ackBytes []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o600); err != nil {
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
		if n < 0 || size < int64(n)*headerLen || size > int64(len(seg)) {
			t.Fatalf("Len %d, Bytes %d from a segment of %d bytes", n, size, len(seg))
		}
		for range n {
			r, err := q.Next(context.Background())
			if err != nil {
				t.Fatalf("Next of a recovered record: %v", err)
			}
			size -= r.size
			if err := q.Ack(r); err != nil {
				t.Fatal(err)
			}
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
	})
}
