package index

import (
	"hash/maphash"
	"math/bits"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// record is an entry as the index keeps it: 112 bytes, with no pointers, so
// that a million of them are 112 MB the GC never scans. The response id is
// stored inline (OpenAI's are 38 bytes, "chatcmpl-…", and 53, "resp_…";
// Anthropic's 28); project and span name are a reference to the few pairs
// an app uses.
type record struct {
	trace  pcommon.TraceID
	span   pcommon.SpanID
	parent pcommon.SpanID
	start  pcommon.Timestamp
	seen   int64  // Span.Seen in Unix nanoseconds
	next   link   // the next older live record in the same hash bucket
	names  uint16 // the (project, name) pair, in fifo.names
	flags  uint8
	idLen  uint8
	id     [inlineIDLen]byte
}

// inlineIDLen fills record up to 112 bytes, a multiple of its alignment.
const inlineIDLen = 56

const (
	// live: the record holds an entry. It is cleared when the entry is
	// evicted, or replaced by an inner span (which gets a record of its
	// own at the new end); the slot stays in the ring until its turn.
	live uint8 = 1 << iota
	// spilled: the id is longer than inlineIDLen, or names is full, so
	// id, project and name are in fifo.spill.
	spilled
)

// link is 1 + the slot of a record; 0 is none.
type link uint32

// Records are allocated in chunks, as the index fills: an index that is
// configured for a million but holds a thousand costs what a thousand do.
const (
	chunkShift = 12
	chunkLen   = 1 << chunkShift
)

// fifo holds the index's records in a ring, in the order of Add: the
// oldest record is the first to expire and the first to make room.
//
// A response id is found in a hash table chained through the records:
// buckets[maphash(id) & mask] links to the newest live record whose id
// falls in that bucket, that record's next to the one before, and so on.
// The buckets, a power of two, double as entries come, so that there is one
// or more per entry and a chain holds about one record: 4 to 8 bytes an
// entry, where a Go map from a 64-bit hash to the slot takes 38 under churn
// at a million entries (its entries are padded to 16 bytes, and deletions
// leave tombstones).
type fifo struct {
	seed       maphash.Seed
	buckets    []link
	maxBuckets int
	chunks     [][]record
	size       uint32 // slots in the ring
	head       uint32 // slot of the oldest record
	used       uint32 // slots from head on that hold a record, live or not
	live       int
	names      names
	spill      map[uint32]spilledEntry // slot -> strings, for spilled records
}

type spilledEntry struct {
	id string
	namePair
}

func newFIFO(size int) fifo {
	maxBuckets := 1 << bits.Len(uint(size-1))
	return fifo{
		seed:       maphash.MakeSeed(),
		buckets:    make([]link, min(maxBuckets, 1<<10)),
		maxBuckets: maxBuckets,
		chunks:     make([][]record, (size+chunkLen-1)/chunkLen),
		size:       uint32(size),
		names:      names{index: map[namePair]uint16{}},
	}
}

// hash returns the hash of a response id. It needs no lock.
func (f *fifo) hash(id string) uint64 { return maphash.String(f.seed, id) }

// bucket returns the bucket of the id whose hash is h.
func (f *fifo) bucket(h uint64) uint32 { return uint32(h) & uint32(len(f.buckets)-1) }

// idHash returns the hash of the id kept in slot.
func (f *fifo) idHash(slot uint32) uint64 {
	if r := f.rec(slot); r.flags&spilled == 0 {
		return maphash.Bytes(f.seed, r.id[:r.idLen]) // = f.hash(id)
	}
	return f.hash(f.spill[slot].id)
}

func (f *fifo) rec(slot uint32) *record {
	return &f.chunks[slot>>chunkShift][slot&(chunkLen-1)]
}

func (f *fifo) full() bool { return f.used == f.size }

// find returns the slot of the live record of id, whose hash is h.
func (f *fifo) find(h uint64, id string) (uint32, bool) {
	for l := f.buckets[f.bucket(h)]; l != 0; {
		slot := uint32(l - 1)
		r := f.rec(slot)
		if r.flags&spilled == 0 {
			if string(r.id[:r.idLen]) == id {
				return slot, true
			}
		} else if f.spill[slot].id == id {
			return slot, true
		}
		l = r.next
	}
	return 0, false
}

// span returns the Span kept in slot.
func (f *fifo) span(slot uint32) Span {
	r := f.rec(slot)
	var p namePair
	if r.flags&spilled == 0 {
		p = f.names.pairs[r.names]
	} else {
		p = f.spill[slot].namePair
	}
	return Span{
		TraceID: r.trace, SpanID: r.span, ParentID: r.parent,
		Project: p.project, Name: p.name,
		Start: r.start, Seen: time.Unix(0, r.seen),
	}
}

// responseID returns the id kept in slot.
func (f *fifo) responseID(slot uint32) string {
	if r := f.rec(slot); r.flags&spilled == 0 {
		return string(r.id[:r.idLen])
	}
	return f.spill[slot].id
}

// push appends a record of id, whose hash is h, at the new end of the
// ring, which must not be full.
func (f *fifo) push(h uint64, id string, s Span, seen int64) {
	if f.live == len(f.buckets) && f.live < f.maxBuckets {
		f.rehash(2 * len(f.buckets))
	}
	slot := f.head + f.used
	if slot >= f.size {
		slot -= f.size
	}
	if f.chunks[slot>>chunkShift] == nil {
		f.chunks[slot>>chunkShift] = make([]record, min(chunkLen, f.size-slot))
	}
	r := f.rec(slot)
	b := f.bucket(h)
	*r = record{
		trace: s.TraceID, span: s.SpanID, parent: s.ParentID,
		start: s.Start, seen: seen, next: f.buckets[b], flags: live,
	}
	p := namePair{s.Project, s.Name}
	ref, ok := uint16(0), false
	if len(id) <= inlineIDLen {
		ref, ok = f.names.intern(p)
	}
	if ok {
		r.names = ref
		r.idLen = uint8(copy(r.id[:], id))
	} else {
		r.flags |= spilled
		if f.spill == nil {
			f.spill = map[uint32]spilledEntry{}
		}
		// Cloned: they may point into a whole decoded export.
		f.spill[slot] = spilledEntry{strings.Clone(id), namePair{strings.Clone(p.project), strings.Clone(p.name)}}
	}
	f.buckets[b] = link(slot + 1)
	f.used++
	f.live++
}

// popOldest removes the oldest record from the ring.
func (f *fifo) popOldest() {
	f.unlink(f.head)
	f.head++
	if f.head == f.size {
		f.head = 0
	}
	f.used--
}

// unlink makes the record in slot unreachable, if it is live, and lets go
// of its strings. The slot stays in the ring until popOldest.
func (f *fifo) unlink(slot uint32) {
	r := f.rec(slot)
	if r.flags&live == 0 {
		return
	}
	l := &f.buckets[f.bucket(f.idHash(slot))]
	for *l != link(slot+1) {
		l = &f.rec(uint32(*l - 1)).next
	}
	*l = r.next
	if r.flags&spilled == 0 {
		f.names.release(r.names)
	} else {
		delete(f.spill, slot)
	}
	r.flags = 0
	f.live--
}

// rehash makes n buckets and links every live record into them.
func (f *fifo) rehash(n int) {
	f.buckets = make([]link, n)
	for i := range f.used {
		slot := (f.head + i) % f.size
		if r := f.rec(slot); r.flags&live != 0 {
			b := f.bucket(f.idHash(slot))
			r.next, f.buckets[b] = f.buckets[b], link(slot+1)
		}
	}
}

// names interns the (project, name) pairs of the records, counting the
// records that use each, so that pairs no record uses are dropped. An app
// has a few projects and span names; maxNames bounds the table against one
// that puts ids in its span names (those records are spilled instead).
type names struct {
	pairs []namePair
	refs  []uint32
	index map[namePair]uint16
	free  []uint16
}

type namePair struct{ project, name string }

const maxNames = 1 << 12

// intern returns the reference of p, or false if the table is full.
func (t *names) intern(p namePair) (uint16, bool) {
	if ref, ok := t.index[p]; ok {
		t.refs[ref]++
		return ref, true
	}
	if len(t.index) == maxNames {
		return 0, false
	}
	// Cloned: they may point into a whole decoded export.
	p = namePair{strings.Clone(p.project), strings.Clone(p.name)}
	var ref uint16
	if n := len(t.free); n > 0 {
		ref, t.free = t.free[n-1], t.free[:n-1]
		t.pairs[ref], t.refs[ref] = p, 1
	} else {
		ref = uint16(len(t.pairs))
		t.pairs = append(t.pairs, p)
		t.refs = append(t.refs, 1)
	}
	t.index[p] = ref
	return ref, true
}

func (t *names) release(ref uint16) {
	if t.refs[ref]--; t.refs[ref] > 0 {
		return
	}
	delete(t.index, t.pairs[ref])
	t.pairs[ref] = namePair{}
	t.free = append(t.free, ref)
}
