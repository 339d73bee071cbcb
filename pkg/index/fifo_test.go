package index

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

func TestRecordSize(t *testing.T) {
	if got := unsafe.Sizeof(record{}); got != 112 {
		t.Errorf("record is %d bytes, want 112: a million of them are most of the index", got)
	}
}

// model is the index's behaviour written plainly: slots in the order of
// Add, the oldest first, each live or left dead by a replacement or an
// expired lookup.
type model struct {
	slots  []modelSlot
	size   int
	maxAge time.Duration
}

type modelSlot struct {
	id   string
	span Span
	live bool
}

func (m *model) expired(s modelSlot, now time.Time) bool { return now.Sub(s.span.Seen) >= m.maxAge }

func (m *model) find(id string) int {
	for i, s := range m.slots {
		if s.live && s.id == id {
			return i
		}
	}
	return -1
}

func (m *model) add(e Entry, now time.Time) {
	for len(m.slots) > 0 && (!m.slots[0].live || m.expired(m.slots[0], now)) {
		m.slots = m.slots[1:]
	}
	if i := m.find(e.ResponseID); i >= 0 {
		old := m.slots[i]
		if !m.expired(old, now) && (old.span.SpanID == e.Span.SpanID || !InnerThan(e.Span, old.span, nil)) {
			return
		}
		m.slots[i].live = false
	}
	if len(m.slots) == m.size {
		m.slots = m.slots[1:]
	}
	e.Span.Seen = now
	m.slots = append(m.slots, modelSlot{e.ResponseID, e.Span, true})
}

func (m *model) lookup(id string, now time.Time) (Span, bool) {
	i := m.find(id)
	if i < 0 {
		return Span{}, false
	}
	if m.expired(m.slots[i], now) {
		m.slots[i].live = false
		return Span{}, false
	}
	return m.slots[i].span, true
}

func (m *model) len() int {
	n := 0
	for _, s := range m.slots {
		if s.live {
			n++
		}
	}
	return n
}

// TestIndexMatchesModel runs random Adds, Lookups and clock steps on small
// indexes, where hash buckets are shared by many ids, and on one that
// grows its buckets, and on the model, and checks that they agree and
// that the ring, the hash chains, the interned names and the spilled
// entries are consistent.
func TestIndexMatchesModel(t *testing.T) {
	for _, size := range []int{1, 3, 8, 50, 3000} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(size)))
			clk := &clock{t: time.Unix(1_767_225_600, 0)}
			maxAge := time.Minute
			if size > 1000 {
				maxAge = time.Hour // long enough to fill past the first buckets
			}
			ix, err := New(Config{MaxEntries: size, MaxAge: maxAge, Now: clk.now}, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := &model{size: size, maxAge: maxAge}
			ids := make([]string, 3*size+5)
			for i := range ids {
				ids[i] = fmt.Sprintf("chatcmpl-%d", i)
				if i%7 == 3 {
					ids[i] = "resp_" + strings.Repeat("x", inlineIDLen) + fmt.Sprint(i) // spilled
				}
			}
			for step := range 20_000 {
				id := ids[rng.IntN(len(ids))]
				switch op := rng.IntN(10); {
				case op < 6:
					e := Entry{ResponseID: id, Span: Span{
						TraceID: pcommon.TraceID{byte(rng.IntN(2))},
						SpanID:  pcommon.SpanID{byte(rng.IntN(4))}, ParentID: pcommon.SpanID{byte(rng.IntN(4))},
						Project: fmt.Sprint("p", rng.IntN(2)), Name: fmt.Sprint("n", rng.IntN(3)),
						Start: pcommon.Timestamp(rng.IntN(3)),
					}}
					ix.Add([]Entry{e})
					m.add(e, clk.t)
				case op < 9:
					got, gotOK := ix.Lookup(id)
					want, wantOK := m.lookup(id, clk.t)
					if gotOK != wantOK || !got.Seen.Equal(want.Seen) {
						t.Fatalf("step %d: Lookup(%s) = %v, %v; want %v, %v", step, id, got.Seen, gotOK, want.Seen, wantOK)
					}
					got.Seen, want.Seen = time.Time{}, time.Time{}
					if got != want {
						t.Fatalf("step %d: Lookup(%s) = %+v; want %+v", step, id, got, want)
					}
				default:
					clk.advance(time.Duration(rng.IntN(20)) * time.Second)
				}
				if ix.Len() != m.len() {
					t.Fatalf("step %d: Len = %d, want %d", step, ix.Len(), m.len())
				}
				if step%(size/50+1) == 0 {
					checkFIFO(t, &ix.entries)
				}
			}
		})
	}
}

// checkFIFO checks that every live record is found through its bucket, that
// the chains hold only live records, and that interned names and spilled
// entries are counted right.
func checkFIFO(t *testing.T, f *fifo) {
	t.Helper()
	nLive, inlined := 0, 0
	for i := range f.used {
		slot := (f.head + i) % f.size
		r := f.rec(slot)
		if r.flags&live == 0 {
			continue
		}
		nLive++
		if r.flags&spilled == 0 {
			inlined++
		}
		id := f.responseID(slot)
		if got, ok := f.find(f.hash(id), id); !ok || got != slot {
			t.Fatalf("%s in slot %d: find = %d, %v", id, slot, got, ok)
		}
	}
	chained := 0
	for _, l := range f.buckets {
		for ; l != 0; l = f.rec(uint32(l - 1)).next {
			if f.rec(uint32(l-1)).flags&live == 0 {
				t.Fatalf("dead slot %d in a chain", l-1)
			}
			chained++
		}
	}
	refs := 0
	for _, n := range f.names.refs {
		refs += int(n)
	}
	if nLive != f.live || chained != nLive || refs != inlined || len(f.spill) != nLive-inlined || len(f.names.index) > nLive {
		t.Fatalf("live %d (counted %d), chained %d, name refs %d for %d inlined, spilled %d, names %d",
			nLive, f.live, chained, refs, inlined, len(f.spill), len(f.names.index))
	}
}

// TestNamesBounded: past maxNames distinct (project, name) pairs, entries
// are spilled and still resolve; pairs no entry uses are dropped.
func TestNamesBounded(t *testing.T) {
	ix, err := New(Config{MaxEntries: maxNames + 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxNames + 10 {
		ix.Add([]Entry{{ResponseID: fmt.Sprint("chatcmpl-", i), Span: Span{Project: "p", Name: fmt.Sprint("span-", i)}}})
	}
	if n := len(ix.entries.spill); n != 10 {
		t.Errorf("%d entries spilled, want 10", n)
	}
	for _, i := range []int{0, maxNames - 1, maxNames, maxNames + 9} {
		if s, ok := ix.Lookup(fmt.Sprint("chatcmpl-", i)); !ok || s.Name != fmt.Sprint("span-", i) || s.Project != "p" {
			t.Errorf("Lookup(chatcmpl-%d) = %+v, %v", i, s, ok)
		}
	}
	// Evict them all: the table and the spill empty.
	for i := range maxNames + 10 {
		ix.Add([]Entry{{ResponseID: fmt.Sprint("resp_", i), Span: Span{Project: "p", Name: "Response"}}})
	}
	if len(ix.entries.names.index) != 1 || len(ix.entries.spill) != 0 {
		t.Errorf("after eviction: %d names, %d spilled; want 1, 0", len(ix.entries.names.index), len(ix.entries.spill))
	}
	checkFIFO(t, &ix.entries)
}
