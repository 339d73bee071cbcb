package index_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

var storeTrace = pcommon.TraceID{0x5b, 0x8e, 15: 1}

// llmEntry is a span of storeTrace: n its id, parent its parent's (0 for
// none), start its start time.
func llmEntry(id string, n, parent byte, start int) index.Entry {
	return index.Entry{ResponseID: id, Span: index.Span{
		TraceID: storeTrace, SpanID: pcommon.SpanID{7: n}, ParentID: pcommon.SpanID{7: parent},
		Start: pcommon.Timestamp(start), Project: "support", Name: fmt.Sprintf("span-%d", n),
	}}
}

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// restored is a new index over the store in dir, as after a restart.
func restored(t *testing.T, dir string, cfg index.Config, reg prometheus.Registerer) (*index.Index, *store.Store, int) {
	t.Helper()
	st := openStore(t, dir)
	var m *index.Metrics
	if reg != nil {
		m = index.NewMetrics(reg)
	}
	ix, err := index.New(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ix.Restore(st)
	if err != nil {
		t.Fatal(err)
	}
	return ix, st, n
}

func counts(t *testing.T, st *store.Store) store.Counts {
	t.Helper()
	c, err := st.Count()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRestoreKeepsInnermostAndAge: after a restart an entry resolves to
// the same span, expires when it would have, and an outer span of the same
// trace still does not take over.
func TestRestoreKeepsInnermostAndAge(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Unix(1_767_225_600, 0)}
	cfg := index.Config{MaxAge: time.Hour, Now: clk.now}
	t0 := clk.t

	ix, st, n := restored(t, dir, cfg, nil)
	if n != 0 {
		t.Fatalf("an empty store restored %d entries", n)
	}
	ix.Add([]index.Entry{llmEntry("chatcmpl-1", 2, 1, 10)})
	clk.advance(30 * time.Minute)
	ix.Add([]index.Entry{llmEntry("chatcmpl-2", 4, 3, 10)})
	clk.advance(10 * time.Minute)
	ix.Add([]index.Entry{llmEntry("chatcmpl-3", 6, 5, 10)})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	ix, st, n = restored(t, dir, cfg, nil)
	if n != 3 {
		t.Fatalf("restored %d entries, want 3", n)
	}
	s, ok := ix.Lookup("chatcmpl-1")
	if want := llmEntry("chatcmpl-1", 2, 1, 10).Span; !ok || !s.Seen.Equal(t0) || s.SpanID != want.SpanID ||
		s.ParentID != want.ParentID || s.Start != want.Start || s.Project != "support" || s.Name != "span-2" {
		t.Fatalf("Lookup(chatcmpl-1) = %+v, %v; want the span seen at %v", s, ok, t0)
	}
	// The handler span around the LLM call, exported after the restart.
	if got := ix.Add([]index.Entry{llmEntry("chatcmpl-1", 1, 0, 5)}); len(got) != 0 {
		t.Errorf("the outer span replaced the inner one after a restart: %+v", got)
	}
	// A child of the restored span does take over, on disk too.
	ix.Add([]index.Entry{llmEntry("chatcmpl-2", 9, 4, 20)})

	// chatcmpl-1 was seen at t0: it expires at t0+1h, restart or not.
	clk.t = t0.Add(time.Hour - time.Nanosecond)
	if _, ok := ix.Lookup("chatcmpl-1"); !ok {
		t.Error("chatcmpl-1 expired before its age")
	}
	clk.t = t0.Add(time.Hour)
	if _, ok := ix.Lookup("chatcmpl-1"); ok {
		t.Error("chatcmpl-1 resolves past its age")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// At t0+1h15m, chatcmpl-2 (seen at t0+30m) and the child that replaced
	// it (t0+40m+) are live; chatcmpl-1 is gone from disk at load.
	clk.t = t0.Add(75 * time.Minute)
	ix, st, n = restored(t, dir, cfg, nil)
	if n != 2 {
		t.Errorf("restored %d entries at t0+75m, want 2", n)
	}
	if s, ok := ix.Lookup("chatcmpl-2"); !ok || s.SpanID != (pcommon.SpanID{7: 9}) {
		t.Errorf("Lookup(chatcmpl-2) = %v, %v; want the child written after the first restart", s.SpanID, ok)
	}
	if c := counts(t, st); c.Index != 2 {
		t.Errorf("%d entries on disk after a restore that dropped the expired one, want 2", c.Index)
	}
}

// TestStoreBoundedByEviction: what the index evicts, by capacity or age, is
// deleted from disk by the same Add, so the file holds what the index does.
func TestStoreBoundedByEviction(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Unix(1_767_225_600, 0)}
	cfg := index.Config{MaxEntries: 3, MaxAge: time.Hour, Now: clk.now}
	ix, st, _ := restored(t, dir, cfg, nil)

	for i := range 10 {
		ix.Add([]index.Entry{llmEntry(fmt.Sprintf("one-%d", i), byte(i), 0, 1)})
		if c := counts(t, st); c.Index != min(i+1, 3) {
			t.Fatalf("after %d adds: %d entries on disk, want %d", i+1, c.Index, min(i+1, 3))
		}
	}
	// A batch larger than the capacity: its own first entries are evicted
	// in the transaction that wrote them.
	var batch []index.Entry
	for i := range 5 {
		batch = append(batch, llmEntry(fmt.Sprintf("batch-%d", i), byte(20+i), 0, 1))
	}
	ix.Add(batch)
	if c := counts(t, st); c.Index != 3 || ix.Len() != 3 {
		t.Fatalf("after a batch of 5: %d on disk, %d in memory; want 3", c.Index, ix.Len())
	}

	// Age: a Lookup that finds an entry expired removes it from memory; the
	// next Add removes it from disk, with the others that expired.
	clk.advance(time.Hour)
	if _, ok := ix.Lookup("batch-4"); ok {
		t.Fatal("batch-4 resolves past its age")
	}
	ix.Add([]index.Entry{llmEntry("late", 40, 0, 1)})
	if c := counts(t, st); c.Index != 1 || ix.Len() != 1 {
		t.Errorf("after expiry: %d on disk, %d in memory; want 1", c.Index, ix.Len())
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart with a smaller capacity keeps the newest.
	for i := range 3 {
		clk.advance(time.Second)
		ix2, st2, _ := restored(t, dir, index.Config{MaxEntries: 10, MaxAge: time.Hour, Now: clk.now}, nil)
		ix2.Add([]index.Entry{llmEntry(fmt.Sprintf("more-%d", i), byte(50+i), 0, 1)})
		if err := st2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ix, st, n := restored(t, dir, index.Config{MaxEntries: 2, MaxAge: time.Hour, Now: clk.now}, nil)
	if n != 2 || counts(t, st).Index != 2 {
		t.Fatalf("restored %d into a capacity of 2, %d on disk", n, counts(t, st).Index)
	}
	for id, want := range map[string]bool{"late": false, "more-0": false, "more-1": true, "more-2": true} {
		if _, ok := ix.Lookup(id); ok != want {
			t.Errorf("Lookup(%s) = %v, want %v", id, ok, want)
		}
	}
}

// failingStore refuses every write.
type failingStore struct{ writes int }

func (f *failingStore) WriteIndex([]index.Change) error {
	f.writes++
	return errors.New("disk full")
}
func (f *failingStore) LoadIndex() ([]index.Entry, error) { return nil, nil }

// TestStoreWriteFailure: the index in memory is unaffected and the failure
// counted.
func TestStoreWriteFailure(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	ix, err := index.New(index.Config{}, index.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{}
	if _, err := ix.Restore(fs); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Restore(fs); err == nil {
		t.Error("a second Restore succeeded")
	}
	if got := ix.Add([]index.Entry{llmEntry("chatcmpl-1", 2, 1, 10)}); len(got) != 1 {
		t.Fatalf("Add = %+v", got)
	}
	if _, ok := ix.Lookup("chatcmpl-1"); !ok || fs.writes != 1 {
		t.Errorf("lookup %v after a failed write (%d writes)", ok, fs.writes)
	}
	const want = `
# HELP feedbackproxy_index_store_errors_total Index changes that could not be written to the data directory (they are lost on restart).
# TYPE feedbackproxy_index_store_errors_total counter
feedbackproxy_index_store_errors_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "feedbackproxy_index_store_errors_total"); err != nil {
		t.Error(err)
	}
}

// storeBenchEntry is the i-th of distinct entries shaped like OpenAI's.
func storeBenchEntry(i int) index.Entry {
	return index.Entry{ResponseID: fmt.Sprintf("chatcmpl-%029d", i), Span: index.Span{
		TraceID: pcommon.TraceID{0: byte(i >> 24), 1: byte(i >> 16), 2: byte(i >> 8), 3: byte(i), 15: 1},
		SpanID:  pcommon.SpanID{0: byte(i >> 24), 1: byte(i >> 16), 2: byte(i >> 8), 3: byte(i), 7: 1},
		Project: extract.DefaultProject, Name: "ChatCompletion", Start: pcommon.Timestamp(1767225600_000_000_000 + i),
	}}
}

// BenchmarkIndexAddStore is the cost of persisting the index: one Add of
// a batch of 1 or 100 new response ids (an export with one LLM span, or a
// large one) into an index full at 10,000 entries, so that each Add also
// evicts as many, in memory only and written to a data directory without
// and with fsync; then Adds of 1 from 8 goroutines at once, as concurrent
// exports make them, where the writes of Adds that wait are grouped. Run it
// on the disk the data directory will be on:
//
//	TMPDIR=/var/lib/feedback-proxy go test -run '^$' -bench IndexAddStore -benchtime 2s ./pkg/index/
func BenchmarkIndexAddStore(b *testing.B) {
	const capacity = 10_000
	newIndex := func(b *testing.B, mode string) *index.Index {
		ix, err := index.New(index.Config{MaxEntries: capacity}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if mode != "memory" {
			st, err := store.Open(filepath.Join(b.TempDir(), "data"), store.Options{Sync: mode == "sync"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			if _, err := ix.Restore(st); err != nil {
				b.Fatal(err)
			}
		}
		for i := range capacity / 1000 {
			entries := make([]index.Entry, 1000)
			for j := range entries {
				entries[j] = storeBenchEntry(-1 - i*1000 - j)
			}
			ix.Add(entries)
		}
		return ix
	}
	for _, batch := range []int{1, 100} {
		for _, mode := range []string{"memory", "nosync", "sync"} {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, mode), func(b *testing.B) {
				ix := newIndex(b, mode)
				next := 0
				batches := make([][]index.Entry, 1024)
				fresh := func() {
					for i := range batches {
						batches[i] = make([]index.Entry, batch)
						for j := range batches[i] {
							batches[i][j] = storeBenchEntry(next)
							next++
						}
					}
				}
				fresh()
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					if i == len(batches) {
						b.StopTimer()
						fresh()
						i = 0
						b.StartTimer()
					}
					ix.Add(batches[i])
					i++
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
			})
		}
	}
	for _, mode := range []string{"memory", "nosync", "sync"} {
		b.Run("batch=1/"+mode+"/parallel=8", func(b *testing.B) {
			ix := newIndex(b, mode)
			var next atomic.Int64
			b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// Making the entry is part of the time: about 1 µs.
					ix.Add([]index.Entry{storeBenchEntry(int(next.Add(1)))})
				}
			})
		})
	}
}

// loadedStore hands back entries as an earlier version may have written
// them.
type loadedStore struct{ entries []index.Entry }

func (s *loadedStore) WriteIndex([]index.Change) error   { return nil }
func (s *loadedStore) LoadIndex() ([]index.Entry, error) { return s.entries, nil }

// Entries restored from a file an earlier version wrote, with names kept
// whole, are cut as new ones are.
func TestRestoreCutsLongNames(t *testing.T) {
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := llmEntry("chatcmpl-long", 2, 1, 10)
	e.Span.Name, e.Span.Project = strings.Repeat("n", 5000), strings.Repeat("p", 5000)
	e.Span.Seen = time.Now()
	if _, err := ix.Restore(&loadedStore{entries: []index.Entry{e}}); err != nil {
		t.Fatal(err)
	}
	s, ok := ix.Lookup("chatcmpl-long")
	if !ok || len(s.Name) != index.MaxNameLen || len(s.Project) != index.MaxNameLen {
		t.Fatalf("restored: found %v, name %d bytes, project %d; want both %d", ok, len(s.Name), len(s.Project), index.MaxNameLen)
	}
}

// countingStore counts the transactions and the changes written to it.
type countingStore struct {
	mu              sync.Mutex
	writes, written int
}

func (s *countingStore) WriteIndex(changes []index.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	s.written += len(changes)
	return nil
}

func (s *countingStore) LoadIndex() ([]index.Entry, error) { return nil, nil }

func (s *countingStore) counts() (writes, changes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes, s.written
}

// With StoreDelay, the Adds within it share one transaction, written by
// the delay or by Flush, whichever comes first; with none, each Add is one.
func TestStoreDelay(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Hour, 20 * time.Millisecond} {
		st := &countingStore{}
		ix, err := index.New(index.Config{StoreDelay: delay}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Restore(st); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			ix.Add([]index.Entry{llmEntry(fmt.Sprintf("chatcmpl-%d", i), byte(i+1), 0, i)})
		}
		writes, changes := st.counts()
		switch delay {
		case 0:
			if writes != 10 || changes != 10 {
				t.Errorf("no delay: %d writes of %d changes, want one per Add", writes, changes)
			}
			continue
		case time.Hour:
			if writes != 0 {
				t.Errorf("delay %s: %d writes before the delay, want none", delay, writes)
			}
			ix.Flush()
		default:
			deadline := time.Now().Add(10 * time.Second)
			for writes == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
				writes, _ = st.counts()
			}
		}
		if writes, changes = st.counts(); writes != 1 || changes != 10 {
			t.Errorf("delay %s: %d writes of %d changes, want the 10 in one", delay, writes, changes)
		}
		if _, ok := ix.Lookup("chatcmpl-3"); !ok {
			t.Errorf("delay %s: an entry waiting to be written is not in memory", delay)
		}
	}
}

// Past maxDelayedChanges (8192) an Add writes what waits, delay or not.
func TestStoreDelayBounded(t *testing.T) {
	st := &countingStore{}
	ix, err := index.New(index.Config{StoreDelay: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Restore(st); err != nil {
		t.Fatal(err)
	}
	for i := range 8192 {
		ix.Add([]index.Entry{{ResponseID: fmt.Sprintf("chatcmpl-%d", i), Span: index.Span{SpanID: [8]byte{1}, TraceID: [16]byte{byte(i), byte(i >> 8)}}}})
	}
	if writes, changes := st.counts(); writes != 1 || changes != 8192 {
		t.Errorf("after 8192 Adds held back: %d writes of %d changes, want one of 8192", writes, changes)
	}
}

// After CloseStore, what waited is written and nothing more is: an Add
// that comes late keeps its entry in memory only.
func TestCloseStore(t *testing.T) {
	st := &countingStore{}
	ix, err := index.New(index.Config{StoreDelay: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Restore(st); err != nil {
		t.Fatal(err)
	}
	ix.Add([]index.Entry{llmEntry("chatcmpl-a", 1, 0, 1)})
	ix.CloseStore()
	ix.Add([]index.Entry{llmEntry("chatcmpl-b", 2, 0, 2)})
	ix.Flush()
	if writes, changes := st.counts(); writes != 1 || changes != 1 {
		t.Errorf("%d writes of %d changes, want the one Add before CloseStore", writes, changes)
	}
	if _, ok := ix.Lookup("chatcmpl-b"); !ok {
		t.Error("an Add after CloseStore is not in memory")
	}
}
