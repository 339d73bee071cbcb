package queue

import (
	"context"
	"errors"
	"fmt"
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
