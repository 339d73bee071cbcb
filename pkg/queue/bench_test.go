package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("10KB/sync=%v", sync), func(b *testing.B) {
			q := open(b, Config{Dir: b.TempDir(), MaxBytes: 64 << 20, Sync: sync})
			rec := make([]byte, 10<<10)
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				err := q.Append(rec)
				if errors.Is(err, ErrFull) {
					b.StopTimer()
					discard(b, q)
					b.StartTimer()
					err = q.Append(rec)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// With Sync, concurrent appends share fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	q := open(b, Config{Dir: b.TempDir(), Sync: true})
	rec := make([]byte, 10<<10)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Append(rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkNextAck(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("10KB/sync=%v", sync), func(b *testing.B) {
			q := open(b, Config{Dir: b.TempDir(), Sync: sync})
			rec := make([]byte, 10<<10)
			fill := func() {
				for range 1000 {
					if err := q.Append(rec); err != nil {
						b.Fatal(err)
					}
				}
			}
			ctx := context.Background()
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				if q.Len() == 0 {
					b.StopTimer()
					fill()
					b.StartTimer()
				}
				r, err := q.Next(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Ack(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard acknowledges every record in q.
func discard(b *testing.B, q *Queue) {
	for q.Len() > 0 {
		r, err := q.Next(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScan scans an 8 MiB segment of 10 KB records, the work Open
// does for each segment, intact and with damage near its start, to measure
// what a resync costs. Payloads are random bytes a third of them zeros
// (protobuf-like: many small lengths and numbers), or, to find the worst
// case, made of the current format's magic, or of bytes that read as a
// 4 MiB length at every fourth offset (for the legacy resync).
func BenchmarkScan(b *testing.B) {
	const segBytes, recBytes = 8 << 20, 10 << 10
	type payload func(rng *rand.Rand, p []byte)
	protobufLike := func(rng *rand.Rand, p []byte) {
		for i := range p {
			if rng.IntN(3) > 0 {
				p[i] = byte(rng.Uint32())
			}
		}
	}
	magics := func(_ *rand.Rand, p []byte) {
		for i := range p {
			p[i] = magic[i%4]
		}
	}
	lengths := func(_ *rand.Rand, p []byte) {
		for i := range p {
			p[i] = [4]byte{0, 0, 0x40, 0}[i%4]
		}
	}
	// build returns a segment of format f and the offsets of its records.
	build := func(f format, fill payload) ([]byte, []int64) {
		rng := rand.New(rand.NewPCG(1, 2))
		var seg []byte
		var offs []int64
		p := make([]byte, recBytes)
		for len(seg)+recBytes+headerLen <= segBytes {
			fill(rng, p)
			offs = append(offs, int64(len(seg)))
			if f == legacy {
				seg = appendLegacyRecord(seg, p)
			} else {
				seg = appendRecord(seg, pos{1, int64(len(seg))}, p)
			}
		}
		return seg, offs
	}
	type damageAt func(seg []byte, offs []int64)
	none := func([]byte, []int64) {}
	payloadFlip := func(seg []byte, offs []int64) { seg[offs[2]+headerLen+100] ^= 1 }
	headerFlip := func(seg []byte, offs []int64) { seg[offs[2]+1] ^= 1 }
	zeros := func(seg []byte, offs []int64) { clear(seg[offs[2] : offs[2]+1<<20]) }
	// The worst case: no intact record after the damage, so the resync
	// searches to the end.
	everyHeader := func(seg []byte, offs []int64) {
		for _, off := range offs[2:] {
			seg[off+1] ^= 1
		}
	}
	for _, bc := range []struct {
		name   string
		f      format
		fill   payload
		damage damageAt
	}{
		{"current/intact", current, protobufLike, none},
		{"current/payload-flip", current, protobufLike, payloadFlip},
		{"current/header-flip", current, protobufLike, headerFlip},
		{"current/1MiB-zeroed", current, protobufLike, zeros},
		{"current/header-flip-magic-payloads", current, magics, headerFlip},
		{"current/every-header-flipped-magic-payloads", current, magics, everyHeader},
		{"legacy/intact", legacy, protobufLike, none},
		{"legacy/payload-flip", legacy, protobufLike, payloadFlip},
		{"legacy/header-flip", legacy, protobufLike, headerFlip},
		{"legacy/1MiB-zeroed", legacy, protobufLike, zeros},
		{"legacy/header-flip-4MiB-lengths", legacy, lengths, headerFlip},
		{"legacy/every-header-flipped", legacy, protobufLike, everyHeader},
		{"legacy/every-header-flipped-4MiB-lengths", legacy, lengths, everyHeader},
	} {
		b.Run(bc.name, func(b *testing.B) {
			seg, offs := build(bc.f, bc.fill)
			bc.damage(seg, offs)
			name := filepath.Join(b.TempDir(), segFile{1, bc.f}.name())
			if err := os.WriteFile(name, seg, 0o600); err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(name)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			sc := newScanner()
			b.SetBytes(int64(len(seg)))
			b.ReportAllocs()
			var s scanned
			for b.Loop() {
				if s, err = sc.scan(f, segFile{1, bc.f}, 0, int64(len(seg)), 0); err != nil {
					b.Fatal(err)
				}
			}
			var lost int64
			for _, h := range s.holes {
				lost += h.len()
			}
			b.ReportMetric(float64(len(offs)-s.n), "records-lost")
			b.ReportMetric(float64(lost), "bytes-skipped")
		})
	}
}

// BenchmarkNextBatchAck reads and acknowledges records in batches, as the
// proxy's delivery loop does (up to 512 KiB, into a buffer reused), against
// one at a time: per record.
func BenchmarkNextBatchAck(b *testing.B) {
	for _, size := range []int{2 << 10, 16 << 10, 128 << 10} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("%dKB/batch=%d", size>>10, batch), func(b *testing.B) {
				q := open(b, Config{Dir: b.TempDir(), MaxBytes: 256 << 20})
				rec := make([]byte, size)
				buf := make([]byte, 576<<10)
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				var pending []Record
				for b.Loop() {
					if len(pending) == 0 {
						if q.Len() == 0 {
							b.StopTimer()
							for range 512 {
								if err := q.Append(rec); err != nil {
									b.Fatal(err)
								}
							}
							b.StartTimer()
						}
						recs, err := q.NextBatch(ctx, batch, 512<<10, buf)
						if err != nil {
							b.Fatal(err)
						}
						if err := q.Ack(recs...); err != nil {
							b.Fatal(err)
						}
						pending = recs
					}
					pending = pending[1:]
				}
			})
		}
	}
}
