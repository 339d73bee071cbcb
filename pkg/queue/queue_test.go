package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

func TestAppendNextAck(t *testing.T) {
	q := open(t, Config{Dir: t.TempDir()})
	appendN(t, q, 0, 10, 100)
	if got := q.Len(); got != 10 {
		t.Fatalf("Len = %d, want 10", got)
	}
	ctx := context.Background()
	first, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Not acknowledged, so a retry gets the same record.
	again, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Data, again.Data) || first.off != again.off {
		t.Fatalf("Next without Ack returned another record")
	}
	if err := equal(drain(t, q, 100), seq(0, 10)); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("drained queue has Len %d, Bytes %d", q.Len(), q.Bytes())
	}
	if err := q.Ack(first); err == nil {
		t.Fatal("second Ack of a record succeeded")
	}
}

func TestAckOutOfOrder(t *testing.T) {
	q := open(t, Config{Dir: t.TempDir()})
	appendN(t, q, 0, 2, 100)
	r0, _ := q.Next(context.Background())
	if err := q.Ack(Record{}); err == nil {
		t.Error("Ack of the zero Record succeeded")
	}
	if err := q.Ack(r0); err != nil {
		t.Fatal(err)
	}
	r1, _ := q.Next(context.Background())
	r1.off += 8
	if err := q.Ack(r1); err == nil {
		t.Error("Ack of a record that is not the head succeeded")
	}
	if q.Len() != 1 {
		t.Errorf("Len = %d after a refused Ack, want 1", q.Len())
	}
}

func TestReopen(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		acked int
	}{
		{name: "nothing acknowledged", cfg: Config{}, acked: 0},
		{name: "some acknowledged", cfg: Config{}, acked: 4},
		{name: "all acknowledged", cfg: Config{}, acked: 40},
		{name: "across segments", cfg: Config{SegmentBytes: 500}, acked: 17},
		{name: "across segments, synced", cfg: Config{SegmentBytes: 500, Sync: true}, acked: 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Dir = t.TempDir()
			q := open(t, cfg)
			appendN(t, q, 0, 40, 100)
			for range tt.acked {
				r, err := q.Next(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if err := q.Ack(r); err != nil {
					t.Fatal(err)
				}
			}
			wantBytes := q.Bytes()
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = open(t, cfg)
			if q.Len() != 40-tt.acked || q.Bytes() != wantBytes {
				t.Errorf("reopened: Len %d, Bytes %d; want %d, %d", q.Len(), q.Bytes(), 40-tt.acked, wantBytes)
			}
			appendN(t, q, 40, 45, 100)
			if err := equal(drain(t, q, 100), seq(tt.acked, 45)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTornTail(t *testing.T) {
	const maxLen = 100
	// ends[i] is where record i ends in the one segment.
	var ends []int64
	var end int64
	for i := range 10 {
		end += headerLen + int64(len(record(i, maxLen)))
		ends = append(ends, end)
	}
	tests := []struct {
		name string
		// damage changes the segment file f.
		damage func(t *testing.T, f *os.File)
		want   []int
	}{
		{
			name:   "cut in the last header",
			damage: func(t *testing.T, f *os.File) { truncate(t, f, ends[8]+3) },
			want:   seq(0, 9),
		},
		{
			name:   "cut in the last payload",
			damage: func(t *testing.T, f *os.File) { truncate(t, f, ends[9]-1) },
			want:   seq(0, 9),
		},
		{
			name:   "cut to nothing",
			damage: func(t *testing.T, f *os.File) { truncate(t, f, 0) },
			want:   nil,
		},
		{
			name:   "garbage after the last record",
			damage: func(t *testing.T, f *os.File) { writeAt(t, f, []byte("\x10\x00\x00\x00garbage, garbage"), ends[9]) },
			want:   seq(0, 10),
		},
		{
			name:   "zeros after the last record",
			damage: func(t *testing.T, f *os.File) { writeAt(t, f, make([]byte, 4096), ends[9]) },
			want:   seq(0, 10),
		},
		{
			name:   "a length beyond the file",
			damage: func(t *testing.T, f *os.File) { writeAt(t, f, []byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5}, ends[9]) },
			want:   seq(0, 10),
		},
		{
			name:   "a flipped bit in the last payload",
			damage: func(t *testing.T, f *os.File) { flip(t, f, ends[9]-1) },
			want:   seq(0, 9),
		},
		{
			name:   "a flipped bit in the last length",
			damage: func(t *testing.T, f *os.File) { flip(t, f, ends[8]+4) },
			want:   seq(0, 9),
		},
		{
			// Not a torn write but a damaged disk: the damaged record is
			// skipped, not what follows it.
			name:   "a flipped bit in a middle record",
			damage: func(t *testing.T, f *os.File) { flip(t, f, ends[4]-1) },
			want:   append(seq(0, 4), seq(5, 10)...),
		},
		{
			name:   "a flipped bit in a middle header",
			damage: func(t *testing.T, f *os.File) { flip(t, f, ends[4]+1) },
			want:   append(seq(0, 5), seq(6, 10)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Dir: t.TempDir()}
			q := open(t, cfg)
			appendN(t, q, 0, 10, maxLen)
			q.Close()
			name := lastSegment(t, cfg.Dir)
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, f)
			f.Close()

			q = open(t, cfg)
			if q.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", q.Len(), len(tt.want))
			}
			var good int64
			if len(tt.want) > 0 {
				good = ends[tt.want[len(tt.want)-1]]
			}
			if got := fileSize(t, name); got != good {
				t.Errorf("segment is %d bytes after Open, want it cut to %d", got, good)
			}
			// Appends go after the last good record, and survive a reopen.
			appendN(t, q, 10, 12, maxLen)
			q.Close()
			q = open(t, cfg)
			if err := equal(drain(t, q, maxLen), append(tt.want, 10, 11)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func truncate(t *testing.T, f *os.File, size int64) {
	t.Helper()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, f *os.File, b []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, f *os.File, off int64) {
	t.Helper()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	writeAt(t, f, b, off)
}

func TestDamageInAnOlderSegment(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 300}
	q := open(t, cfg)
	appendN(t, q, 0, 30, 100)
	q.Close()
	names := segments(t, cfg.Dir)
	if len(names) < 3 {
		t.Fatalf("%d segments, want at least 3", len(names))
	}
	f, err := os.OpenFile(names[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	seg, _ := parseSegName(filepath.Base(names[0]))
	s, err := newScanner().scan(f, seg, 0, fi.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the oldest segment in its first record: its records are lost,
	// those of the later segments are not.
	truncate(t, f, 4)
	f.Close()
	q = open(t, cfg)
	if err := equal(drain(t, q, 100), seq(s.n, 30)); err != nil {
		t.Fatal(err)
	}
}

func lastSegmentOf(q *Queue) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.w.seq
}

func TestAckFile(t *testing.T) {
	tests := []struct {
		name string
		// change changes the ack file named.
		change func(t *testing.T, name string)
		want   []int
	}{
		{name: "intact", change: func(*testing.T, string) {}, want: seq(3, 10)},
		{
			// Delivering everything again is the safe reading of a damaged
			// position: nothing appended is lost.
			name:   "damaged",
			change: func(t *testing.T, name string) { os.WriteFile(name, []byte("not an ack position"), 0o600) },
			want:   seq(0, 10),
		},
		{name: "removed", change: func(t *testing.T, name string) { os.Remove(name) }, want: seq(0, 10)},
		{
			// A power loss tore the last write: the slot before holds the
			// position before the last Ack.
			name:   "the newest slot torn",
			change: func(t *testing.T, name string) { damageAckSlot(t, name, true) },
			want:   seq(2, 10),
		},
		{
			name:   "the older slot damaged",
			change: func(t *testing.T, name string) { damageAckSlot(t, name, false) },
			want:   seq(3, 10),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Dir: t.TempDir()}
			q := open(t, cfg)
			appendN(t, q, 0, 10, 100)
			for range 3 {
				r, _ := q.Next(context.Background())
				if err := q.Ack(r); err != nil {
					t.Fatal(err)
				}
			}
			q.Close()
			tt.change(t, filepath.Join(cfg.Dir, ackName))
			q = open(t, cfg)
			if err := equal(drain(t, q, 100), tt.want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// damageAckSlot flips a bit in the newest or the older slot of the ack
// file name.
func damageAckSlot(t *testing.T, name string, newest bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var gens [2]uint64
	for slot := range 2 {
		var b [ackRecLen]byte
		if _, err := f.ReadAt(b[:], int64(slot)*ackSlotOff); err != nil {
			t.Fatal(err)
		}
		_, gens[slot], _ = decodeAck(b)
	}
	slot := 0
	if (gens[1] > gens[0]) == newest {
		slot = 1
	}
	flip(t, f, int64(slot)*ackSlotOff+9)
}

func TestBudget(t *testing.T) {
	rec := bytes.Repeat([]byte("x"), 100-headerLen) // 100 bytes on disk
	cfg := Config{Dir: t.TempDir(), MaxBytes: 300, SegmentBytes: 150}
	q := open(t, cfg)
	for i := range 3 {
		if err := q.Append(rec); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	if err := q.Append(rec); !errors.Is(err, ErrFull) {
		t.Fatalf("Append over the budget: %v, want ErrFull", err)
	}
	if err := q.Append(nil); !errors.Is(err, ErrFull) {
		t.Fatalf("Append of an empty record over the budget: %v, want ErrFull", err)
	}
	if q.Bytes() != 300 || q.Len() != 3 {
		t.Fatalf("Bytes %d, Len %d; want 300, 3", q.Bytes(), q.Len())
	}
	if err := q.Append(make([]byte, 300-headerLen+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of a record larger than the budget: %v, want ErrTooLarge", err)
	}

	// The budget holds across a restart.
	q.Close()
	q = open(t, cfg)
	if err := q.Append(rec); !errors.Is(err, ErrFull) {
		t.Fatalf("Append over the budget after a restart: %v, want ErrFull", err)
	}

	r, err := q.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(r); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(rec); err != nil {
		t.Fatalf("Append after an Ack made room: %v", err)
	}
	if err := q.Append(rec); !errors.Is(err, ErrFull) {
		t.Fatalf("Append over the budget: %v, want ErrFull", err)
	}
	// A record as large as the whole budget fits an empty queue.
	for q.Len() > 0 {
		r, _ := q.Next(context.Background())
		q.Ack(r)
	}
	if err := q.Append(make([]byte, 300-headerLen)); err != nil {
		t.Fatalf("Append of a record of the whole budget: %v", err)
	}
}

func TestSegments(t *testing.T) {
	const maxLen = 300
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1000}
	q := open(t, cfg)
	appendN(t, q, 0, 50, maxLen)
	var size int64
	for i := range 50 {
		size += headerLen + int64(len(record(i, maxLen)))
	}
	names := segments(t, cfg.Dir)
	if min := int(size / 1000); len(names) < min {
		t.Fatalf("%d segments for %d bytes, want at least %d", len(names), size, min)
	}
	for _, name := range names {
		if got := fileSize(t, name); got > 1000 {
			t.Errorf("%s is %d bytes, over the segment size", filepath.Base(name), got)
		}
	}

	// Acknowledging half removes the segments before the head.
	for range 25 {
		r, _ := q.Next(context.Background())
		if err := q.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	left := segments(t, cfg.Dir)
	if len(left) >= len(names) || left[len(left)-1] != names[len(names)-1] {
		t.Fatalf("after acknowledging half: segments %v, from %v", base(left), base(names))
	}

	// Acknowledging all leaves only the segment appended to.
	if err := equal(drain(t, q, maxLen), seq(25, 50)); err != nil {
		t.Fatal(err)
	}
	if left := segments(t, cfg.Dir); len(left) != 1 || left[0] != names[len(names)-1] {
		t.Fatalf("after acknowledging all: segments %v, want [%s]", base(left), filepath.Base(names[len(names)-1]))
	}

	// A record larger than a segment gets one of its own; the next append
	// rolls over and the acknowledged segment goes.
	big := bytes.Repeat([]byte("b"), 3000)
	if err := q.Append(big); err != nil {
		t.Fatal(err)
	}
	if err := q.Append([]byte("small")); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]byte{big, []byte("small")} {
		r, err := q.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Data, want) {
			t.Fatalf("got %d bytes, want %d", len(r.Data), len(want))
		}
		if err := q.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	if left := segments(t, cfg.Dir); len(left) != 1 {
		t.Fatalf("segments %v, want one", base(left))
	}

	// Sequence numbers keep growing across a restart with an empty queue.
	last := lastSegmentOf(q)
	q.Close()
	q = open(t, cfg)
	appendN(t, q, 0, 20, maxLen)
	if got := lastSegmentOf(q); got <= last {
		t.Fatalf("segment %d after a restart, want after %d", got, last)
	}
}

func base(names []string) []string {
	var b []string
	for _, n := range names {
		b = append(b, filepath.Base(n))
	}
	return b
}

func TestNextWaits(t *testing.T) {
	tests := []struct {
		name string
		// wake ends the wait of a Next on an empty queue.
		wake    func(t *testing.T, q *Queue, cancel context.CancelFunc)
		wantErr error
	}{
		{
			name: "Append",
			wake: func(t *testing.T, q *Queue, _ context.CancelFunc) {
				if err := q.Append([]byte("hello")); err != nil {
					t.Error(err)
				}
			},
		},
		{name: "cancel", wake: func(_ *testing.T, _ *Queue, cancel context.CancelFunc) { cancel() }, wantErr: context.Canceled},
		{name: "Close", wake: func(_ *testing.T, q *Queue, _ context.CancelFunc) { q.Close() }, wantErr: ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := open(t, Config{Dir: t.TempDir()})
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				type result struct {
					r   Record
					err error
				}
				done := make(chan result, 1)
				go func() {
					r, err := q.Next(ctx)
					done <- result{r, err}
				}()
				synctest.Wait()
				select {
				case <-done:
					t.Fatal("Next returned on an empty queue")
				default:
				}
				tt.wake(t, q, cancel)
				synctest.Wait()
				select {
				case res := <-done:
					if !errors.Is(res.err, tt.wantErr) {
						t.Fatalf("Next: %v, want %v", res.err, tt.wantErr)
					}
					if tt.wantErr == nil && string(res.r.Data) != "hello" {
						t.Fatalf("Next: %q, want hello", res.r.Data)
					}
				default:
					t.Fatal("Next still waits")
				}
			})
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	tests := []struct {
		name      string
		sync      bool
		producers int
		each      int
	}{
		{name: "no sync", producers: 16, each: 300},
		{name: "sync", sync: true, producers: 16, each: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Small segments, so that rolls race with fsyncs and acks.
			q := open(t, Config{Dir: t.TempDir(), SegmentBytes: 4 << 10, Sync: tt.sync})
			total := tt.producers * tt.each
			consumed := make(chan error, 1)
			go func() {
				consumed <- consume(q, tt.producers, total)
			}()
			var wg sync.WaitGroup
			for p := range tt.producers {
				wg.Go(func() {
					for i := range tt.each {
						rec := fmt.Appendf(nil, "%d %d %s", p, i, strings.Repeat("x", i%500))
						if err := q.Append(rec); err != nil {
							t.Errorf("producer %d, Append %d: %v", p, i, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := <-consumed; err != nil {
				t.Fatal(err)
			}
			if q.Len() != 0 || q.Bytes() != 0 {
				t.Fatalf("Len %d, Bytes %d after consuming all", q.Len(), q.Bytes())
			}
		})
	}
}

// consume takes total records from q and checks that each producer's come
// in the order it appended them.
func consume(q *Queue, producers, total int) error {
	next := make([]int, producers)
	for range total {
		r, err := q.Next(context.Background())
		if err != nil {
			return err
		}
		var p, i int
		if _, err := fmt.Sscanf(string(r.Data), "%d %d", &p, &i); err != nil {
			return fmt.Errorf("record %q: %v", r.Data, err)
		}
		if i != next[p] {
			return fmt.Errorf("producer %d: record %d, want %d", p, i, next[p])
		}
		next[p]++
		if err := q.Ack(r); err != nil {
			return err
		}
	}
	return nil
}

func TestCorruptAtRuntime(t *testing.T) {
	var found []Corruption
	cfg := Config{Dir: t.TempDir(), OnCorrupt: func(c Corruption) { found = append(found, c) }}
	q := open(t, cfg)
	appendN(t, q, 0, 3, 100)
	// The disk changes record 1 under the open queue.
	f, err := os.OpenFile(lastSegment(t, cfg.Dir), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	size0, size1 := headerLen+int64(len(record(0, 100))), headerLen+int64(len(record(1, 100)))
	flip(t, f, size0+headerLen+3)
	f.Close()

	r, err := q.Next(context.Background())
	if err != nil || index(t, r.Data, 100) != 0 {
		t.Fatalf("Next: %v", err)
	}
	q.Ack(r)
	if len(found) != 0 {
		t.Fatalf("damage reported before Next reached it: %+v", found)
	}
	// Next skips the damaged record, reports it, and returns the next.
	r, err = q.Next(context.Background())
	if err != nil || index(t, r.Data, 100) != 2 {
		t.Fatalf("Next after a damaged record: %v, want record 2", err)
	}
	want := []Corruption{{Kind: CorruptRecords, File: f.Name(), Offset: size0, Bytes: size1}}
	if !slices.Equal(found, want) || q.CorruptBytes() != size1 {
		t.Fatalf("reported %+v, CorruptBytes %d; want %+v", found, q.CorruptBytes(), want)
	}
	if q.Len() != 1 {
		t.Fatalf("Len = %d, want 1", q.Len())
	}
	if err := equal(drain(t, q, 100), []int{2}); err != nil {
		t.Fatal(err)
	}
	// Once past, the damage is not reported again after a restart.
	q.Close()
	found = nil
	q = open(t, cfg)
	if len(found) != 0 || q.Len() != 0 {
		t.Fatalf("after a restart: reported %+v, Len %d", found, q.Len())
	}
}

func TestClosed(t *testing.T) {
	q := open(t, Config{Dir: t.TempDir()})
	appendN(t, q, 0, 1, 100)
	r, _ := q.Next(context.Background())
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := q.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append: %v, want ErrClosed", err)
	}
	if _, err := q.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next: %v, want ErrClosed", err)
	}
	if err := q.Ack(r); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack: %v, want ErrClosed", err)
	}
}

func TestOneQueuePerDir(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Config{Dir: dir})
	if q2, err := Open(Config{Dir: dir}); err == nil {
		q2.Close()
		t.Fatal("second Open of a directory in use succeeded")
	}
	q.Close()
	q = open(t, Config{Dir: dir})
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	q := open(t, Config{Dir: dir})
	appendN(t, q, 0, 1, 100)
	if len(segments(t, dir)) != 1 {
		t.Fatal("no segment in the new directory")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "minimal", cfg: Config{Dir: "d"}},
		{name: "no dir", cfg: Config{}, wantErr: "dir is required"},
		{name: "negative budget", cfg: Config{Dir: "d", MaxBytes: -1}, wantErr: "max bytes"},
		{name: "negative segment", cfg: Config{Dir: "d", SegmentBytes: -1}, wantErr: "segment bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A power loss can keep the ack position and lose the records it points
// past. Records appended after that must not count as acknowledged.
func TestAckPastTheEnd(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	q := open(t, cfg)
	appendN(t, q, 0, 5, 100)
	drain(t, q, 100)
	q.Close()
	var end2 int64
	for i := range 3 {
		end2 += headerLen + int64(len(record(i, 100)))
	}
	if err := os.Truncate(lastSegment(t, cfg.Dir), end2); err != nil {
		t.Fatal(err)
	}
	q = open(t, cfg)
	if q.Len() != 0 {
		t.Fatalf("Len = %d, want 0", q.Len())
	}
	appendN(t, q, 10, 13, 100)
	q.Close()
	q = open(t, cfg)
	if err := equal(drain(t, q, 100), seq(10, 13)); err != nil {
		t.Fatal(err)
	}
}

// Past its budget, a legacy resync tries only where the damaged length
// points: a damaged payload still costs one record, a damaged length the
// rest of the segment.
func TestLegacyResyncBudget(t *testing.T) {
	var seg []byte
	var offs []int64
	for i := range 10 {
		offs = append(offs, int64(len(seg)))
		seg = appendLegacyRecord(seg, record(i, 100))
	}
	tests := []struct {
		name   string
		damage int64 // the byte flipped
		want   []hole
	}{
		{name: "payload", damage: offs[3] + legacyHeaderLen + 2, want: []hole{{offs[3], offs[4]}}},
		{name: "length", damage: offs[3] + 1, want: []hole{{offs[3], int64(len(seg))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(seg)
			b[tt.damage] ^= 1
			sc := newScanner()
			sc.resyncBudget = 1
			s, err := sc.scan(bytes.NewReader(b), segFile{1, legacy}, 0, int64(len(b)), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.holes, tt.want) {
				t.Fatalf("holes %v, want %v", s.holes, tt.want)
			}
		})
	}
}
