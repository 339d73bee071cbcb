package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/bits"
	"slices"
	"strconv"
)

// Why Open reads state.db itself before bbolt does: bbolt trusts its file.
// It memory-maps it and follows page ids without bounds checks, so a damaged
// page faults (SIGSEGV, or SIGBUS for a page past the end of a truncated
// file) or panics, and some of its panics happen in goroutines of its own,
// where no recover reaches them: the free-page scan that every Open runs
// with NoFreelistSync reports an inconsistency by panicking in one, and
// Tx.Check runs in one too. So Open first walks the file through ReadAt
// (a page past the end is io.EOF, not a fault), following bbolt's on-disk
// format, and gives it to bbolt only if everything bbolt will read is sound:
// the checks below are those of bbolt's Tx.Check and free-page scan
// (page ids, types, single reference, key order), plus what bbolt would
// only trip over later, during a write (element bounds, empty keys), plus
// every record decoding. The same walk salvages what is still readable
// from a damaged file: it goes on past a bad page, so a damaged page costs
// the records on it (or under it), not the rest of the bucket.
//
// The layout, from go.etcd.io/bbolt/internal/common (page.go, meta.go,
// bucket.go), format version 2, in the host's byte order:
//
//	page      id uint64, flags uint16, count uint16, overflow uint32, then
//	          count elements of 16 bytes; a page spans overflow+1 pages
//	meta      (pages 0 and 1, after the page header) magic uint32, version
//	          uint32, page size uint32, flags uint32, root bucket (root page
//	          uint64, sequence uint64), freelist page uint64, high water
//	          mark uint64, txid uint64, FNV-64a of the 56 bytes before it
//	leaf      flags, pos, key size, value size uint32; the key is pos bytes
//	          after the element, the value follows it
//	branch    pos, key size uint32, child page uint64
//	bucket    a leaf value with flag 1: root page uint64, sequence uint64;
//	          root page 0 means an inline bucket, its leaf page follows
//	freelist  count page ids uint64 (count 0xffff: the first one is the
//	          count); absent (meta says ^0) with NoFreelistSync
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	elemSize         = 16
	bucketHeaderSize = 16
	metaSize         = 64
	branchPage       = 0x01
	leafPage         = 0x02
	freelistPage     = 0x10
	bucketElem       = 0x01
	noFreelist       = ^uint64(0)

	// maxDepth bounds the tree: 4 KiB pages of 100,000 entries make 3
	// levels; a deeper one is a loop through damaged pages.
	maxDepth = 32
	// maxProblems is how many problems a scan keeps in full.
	maxProblems = 20
)

var ne = binary.NativeEndian

// boltMeta is what a scan uses of a meta page.
type boltMeta struct {
	pageSize int64
	root     uint64 // the root bucket's page
	freelist uint64
	hwm      uint64 // pages in use: ids below it
	txid     uint64
}

// parseMeta reads the meta page whose bytes b start with its page header.
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, errors.New("cut short")
	}
	m := b[pageHeaderSize:]
	if ne.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("no bbolt magic number")
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	meta := boltMeta{
		pageSize: int64(ne.Uint32(m[8:])),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		hwm:      ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}
	// A checksum is 64 bits of FNV, not a cryptographic seal: check what
	// bbolt would trust, as its Meta.Write does before writing one.
	switch {
	case meta.pageSize < 1024 || meta.pageSize > 1<<24 || bits.OnesCount64(uint64(meta.pageSize)) != 1:
		return boltMeta{}, fmt.Errorf("page size %d", meta.pageSize)
	case meta.root < 2 || meta.root >= meta.hwm:
		return boltMeta{}, fmt.Errorf("root page %d outside [2, %d)", meta.root, meta.hwm)
	case meta.freelist != noFreelist && (meta.freelist < 2 || meta.freelist >= meta.hwm):
		return boltMeta{}, fmt.Errorf("freelist page %d outside [2, %d)", meta.freelist, meta.hwm)
	}
	return meta, nil
}

// record is a key and value salvaged from a bucket.
type record struct {
	key, value []byte
	seq        uint64 // index entries: their order of writing
}

// scanResult is what a walk of state.db found.
type scanResult struct {
	// problems is the damage found, at most maxProblems of them; nproblems
	// counts all. None: bbolt may open the file.
	problems  []string
	nproblems int
	// format is the meta bucket's format value, nil if not found.
	format []byte

	// Filled by a collecting scan: the records that read back.
	feedback, index []record
	indexSeq        uint64 // the index bucket's sequence, if read

	// Of feedback and index, read from pages outside the tree (see
	// salvageFree).
	feedbackFree, indexFree int

	// Records found but unreadable: lost for sure.
	feedbackLost, indexLost int
	// lostUnknown: parts of the file could not be read (a page, a meta
	// page, the end), so more may be lost than counted, how many unknown.
	lostUnknown bool
}

func (r *scanResult) problem(format string, args ...any) {
	r.nproblems++
	if len(r.problems) < maxProblems {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

// formatError is a sound file of another format: refused, not damaged.
type formatError struct{ format []byte }

func (e *formatError) Error() string {
	return fmt.Sprintf("format %q, this proxy reads %q: written by another version", e.format, format)
}

// scanFile walks the bbolt file r of size bytes; with collect it keeps the
// records that read back. A sound file of another format is a *formatError.
func scanFile(r io.ReaderAt, size int64, collect bool) (res *scanResult, err error) {
	res = &scanResult{}
	defer func() {
		// A bug here must not stop the proxy either: the file is taken
		// for damaged, and kept.
		if v := recover(); v != nil {
			res.problem("reading the file failed: %v", v)
			res.lostUnknown = true
			err = nil
		}
	}()
	switch {
	case size == 0:
		res.problem("the file is empty (0 bytes): it was cut short, a new file is never left empty")
		res.lostUnknown = true
		return res, nil
	case size < 2*1024:
		res.problem("the file is %d bytes, too short for a database", size)
		res.lostUnknown = true
		return res, nil
	}
	meta, ok := readMetas(r, size, res)
	if !ok {
		res.lostUnknown = true
		return res, nil
	}
	if need := int64(meta.hwm) * meta.pageSize; size < need {
		res.problem("the file is %d bytes, its database %d: the end is cut off", size, need)
	}
	pages := min(meta.hwm, uint64(size/meta.pageSize)+1)
	w := &walker{r: r, size: size, meta: meta, seen: make([]bool, pages), collect: collect, res: res}
	w.bucket(kindRoot, meta.root, nil, 0)
	if meta.freelist != noFreelist {
		w.checkFreelist()
	}
	if len(w.lostRanges) > 0 {
		w.salvageFree()
	}
	if f := res.format; f != nil && string(f) != format && isNumber(f) {
		return res, &formatError{format: f}
	}
	return res, nil
}

func isNumber(b []byte) bool {
	_, err := strconv.ParseUint(string(b), 10, 32)
	return err == nil
}

// readMetas picks the meta page bbolt would (the valid one with the higher
// txid) and reports a damaged one: bbolt silently falls back to the other,
// which is the previous transaction.
func readMetas(r io.ReaderAt, size int64, res *scanResult) (boltMeta, bool) {
	buf := make([]byte, pageHeaderSize+metaSize)
	read := func(off int64) (boltMeta, error) {
		if _, err := r.ReadAt(buf, off); err != nil {
			return boltMeta{}, fmt.Errorf("unreadable: %w", err)
		}
		return parseMeta(buf)
	}
	m0, err0 := read(0)
	var m1 boltMeta
	var err1 error
	if err0 == nil {
		m1, err1 = read(m0.pageSize)
		if err1 == nil && m1.pageSize != m0.pageSize {
			err1 = fmt.Errorf("page size %d, meta page 0 says %d", m1.pageSize, m0.pageSize)
		}
	} else {
		// bbolt's own search when page 0 is unreadable: the second meta
		// page is one page in, at some power of two from 1 KiB.
		err1 = errors.New("not found")
		for pos := int64(1024); pos < size-1024 && pos <= 1<<24; pos <<= 1 {
			if m, err := read(pos); err == nil && m.pageSize == pos {
				m1, err1 = m, nil
				break
			}
		}
	}
	switch {
	case err0 != nil && err1 != nil:
		res.problem("no valid meta page (page 0: %v; page 1: %v): not a bbolt file, or its first pages are damaged", err0, err1)
		return boltMeta{}, false
	case err0 != nil:
		res.problem("meta page 0 is damaged (%v): the last transaction may be lost", err0)
		res.lostUnknown = true
		return m1, true
	case err1 != nil:
		res.problem("meta page 1 is damaged (%v): the last transaction may be lost", err1)
		res.lostUnknown = true
		return m0, true
	case m1.txid > m0.txid:
		return m1, true
	default:
		return m0, true
	}
}

// bucketKind tells what a bucket's records are.
type bucketKind int

const (
	kindRoot bucketKind = iota
	kindMeta
	kindFeedback
	kindIndex
	// kindStray is a top-level bucket of a name this store never writes: a
	// damaged name, most likely, so its records are recognized by content.
	kindStray
)

func (k bucketKind) String() string {
	return [...]string{"root", "meta", "feedback", "index", "unknown"}[k]
}

// walker walks the B+tree from a meta page.
type walker struct {
	r       io.ReaderAt
	size    int64
	meta    boltMeta
	seen    []bool // pages reached, overflow included
	collect bool
	res     *scanResult
	// bufs and elems hold a page and its elements per level of the tree:
	// a branch's stay in use while its children are read. (keep copies
	// what it keeps.)
	bufs  [][]byte
	elems [][]elem
	// lostRanges are the key ranges of the parts of the tree that could not be
	// read, by bucket: where salvageFree looks for older copies.
	lostRanges map[bucketKind][]keyRange
}

// keyRange is [lo, hi); nil is unbounded.
type keyRange struct{ lo, hi []byte }

func (r keyRange) has(k []byte) bool {
	return (r.lo == nil || bytes.Compare(k, r.lo) >= 0) && (r.hi == nil || bytes.Compare(k, r.hi) < 0)
}

// lostRange notes that the records of kind between lo and hi could not be
// read, how many unknown. A part of the root (or of a bucket of unknown
// name) may have held any feedback or index entry.
func (w *walker) lostRange(kind bucketKind, lo, hi []byte) {
	w.res.lostUnknown = true
	if !w.collect {
		return
	}
	if w.lostRanges == nil {
		w.lostRanges = map[bucketKind][]keyRange{}
	}
	switch kind {
	case kindFeedback, kindIndex:
		// The bounds lie in page buffers that are reused.
		w.lostRanges[kind] = append(w.lostRanges[kind], keyRange{bytes.Clone(lo), bytes.Clone(hi)})
	case kindRoot, kindStray:
		w.lostRanges[kindFeedback] = append(w.lostRanges[kindFeedback], keyRange{})
		w.lostRanges[kindIndex] = append(w.lostRanges[kindIndex], keyRange{})
	}
}

// pageName names a page in a problem: "page 7", or the inline page of a
// bucket (0).
type pageName uint64

func (p pageName) String() string {
	if p == 0 {
		return "inline page"
	}
	return "page " + strconv.FormatUint(uint64(p), 10)
}

// elemBuf returns the element buffer of level depth.
func (w *walker) elemBuf(depth int) []elem {
	for len(w.elems) <= depth {
		w.elems = append(w.elems, nil)
	}
	return w.elems[depth]
}

// readPage reads page id with its overflow pages into the buffer of
// level depth, checking what bbolt would assume: inside the file and below
// the high water mark, its own id, a branch or leaf, reached once.
func (w *walker) readPage(id uint64, depth int) ([]byte, error) {
	if id < 2 || id >= w.meta.hwm {
		return nil, fmt.Errorf("page %d: outside the pages in use [2, %d)", id, w.meta.hwm)
	}
	ps := w.meta.pageSize
	off := int64(id) * ps
	if off+ps > w.size {
		return nil, fmt.Errorf("page %d: past the end of the file (%d bytes)", id, w.size)
	}
	for len(w.bufs) <= depth {
		w.bufs = append(w.bufs, nil)
	}
	b := w.bufs[depth]
	if int64(cap(b)) < ps {
		b = make([]byte, ps)
	}
	b = b[:ps]
	if _, err := w.r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := ne.Uint64(b); got != id {
		return nil, fmt.Errorf("page %d: holds the header of page %d", id, got)
	}
	if flags := ne.Uint16(b[8:]); flags != branchPage && flags != leafPage {
		return nil, fmt.Errorf("page %d: type %#x, want a branch or leaf page", id, flags)
	}
	overflow := uint64(ne.Uint32(b[12:]))
	if id+overflow >= w.meta.hwm || off+int64(overflow+1)*ps > w.size {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the pages in use or the file", id, overflow)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p] {
			return nil, fmt.Errorf("page %d: reached twice (page %d)", id, p)
		}
	}
	for p := id; p <= id+overflow; p++ {
		w.seen[p] = true
	}
	if overflow > 0 {
		b = slices.Grow(b, int(int64(overflow)*ps))[:int64(overflow+1)*ps]
		if _, err := w.r.ReadAt(b[ps:], off+ps); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
	}
	w.bufs[depth] = b
	return b, nil
}

// elem is one element of a page: a leaf's record (flags, key, value) or a
// branch's child (key, child page); ok if it lies inside the page and has
// a key.
type elem struct {
	flags      uint32
	key, value []byte
	child      uint64
	ok         bool
}

// elements reads the elements of page b. bbolt writes a page whole (see
// WriteInodeToPage): count element headers, then the keys and values end
// to end, in the order of the elements, the first right after the last
// header. A page laid out otherwise is damaged. A damaged count shows
// against the first element, whose data starts count*16 bytes after it:
// that tells the count back. certain: the count is known, so an element
// that does not read is a record lost, not garbage.
//
// The elements are put in dst, reused.
func elements(b []byte, leaf bool, dst []elem) (elems []elem, certain bool, problem string) {
	posAt := 0
	if leaf {
		posAt = 4
	}
	read := func(n int) ([]elem, bool) {
		es := slices.Grow(dst[:0], n)[:n]
		clear(es)
		next := uint64(pageHeaderSize + n*elemSize)
		tidy := true
		for i := range es {
			at := pageHeaderSize + i*elemSize
			e := &es[i]
			pos := ne.Uint32(b[at+posAt:])
			var ksize, vsize uint32
			if leaf {
				e.flags, ksize, vsize = ne.Uint32(b[at:]), ne.Uint32(b[at+8:]), ne.Uint32(b[at+12:])
			} else {
				ksize, e.child = ne.Uint32(b[at+4:]), ne.Uint64(b[at+8:])
			}
			start := uint64(at) + uint64(pos)
			end := start + uint64(ksize) + uint64(vsize)
			if end <= uint64(len(b)) && ksize > 0 {
				e.key, e.value, e.ok = b[start:start+uint64(ksize)], b[start+uint64(ksize):end], true
			}
			tidy = tidy && e.ok && start == next
			next = end
		}
		return es, tidy
	}
	count := int(ne.Uint16(b[10:]))
	fit := (len(b) - pageHeaderSize) / elemSize
	if count <= fit {
		if es, tidy := read(count); tidy {
			return es, true, ""
		}
	}
	told := -1 // the count the first element tells
	if fit > 0 {
		if pos := ne.Uint32(b[pageHeaderSize+posAt:]); pos%elemSize == 0 && int(pos/elemSize) <= fit {
			told = int(pos / elemSize)
		}
	}
	if told > 0 && told != count {
		if es, tidy := read(told); tidy {
			return es, true, fmt.Sprintf("its count is %d, its elements %d", count, told)
		}
	}
	switch {
	case count <= fit:
		es, _ := read(count)
		return es, told == count, "its elements are not laid out as bbolt writes them"
	case told > 0:
		es, _ := read(told)
		return es, false, fmt.Sprintf("its count %d does not fit, and its elements are not laid out as bbolt writes them", count)
	}
	return nil, false, fmt.Sprintf("its count %d does not fit, and its first element is damaged", count)
}

// bucket walks a bucket whose root is page root, or the inline page when
// root is 0.
func (w *walker) bucket(kind bucketKind, root uint64, inline []byte, depth int) {
	if root != 0 {
		w.node(kind, root, nil, nil, depth)
		return
	}
	// An inline bucket is a leaf page in the value: bbolt reads it in place.
	if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPage {
		w.res.problem("inline %s bucket: not a leaf page", kind)
		w.lostRange(kind, nil, nil)
		return
	}
	w.leaf(kind, pageName(0), inline, nil, nil, depth)
}

// node walks page id of a bucket, whose keys must lie in [lo, hi) (nil:
// unbounded). It returns the largest key under it, as bbolt's check does.
func (w *walker) node(kind bucketKind, id uint64, lo, hi []byte, depth int) []byte {
	if depth > maxDepth {
		w.res.problem("page %d: the %s tree is deeper than %d pages", id, kind, maxDepth)
		w.lostRange(kind, lo, hi)
		return lo
	}
	b, err := w.readPage(id, depth)
	if err != nil {
		w.res.problem("%s bucket: %v", kind, err)
		w.lostRange(kind, lo, hi)
		return lo
	}
	where := pageName(id)
	if ne.Uint16(b[8:]) == leafPage {
		return w.leaf(kind, where, b, lo, hi, depth)
	}
	es, certain, problem := elements(b, false, w.elemBuf(depth))
	w.elems[depth] = es
	if problem != "" {
		w.res.problem("%s bucket: %s: %s", kind, where, problem)
	}
	if len(es) == 0 {
		w.res.problem("%s bucket: %s: a branch page without children", kind, where)
		w.lostRange(kind, lo, hi)
		return lo
	}
	running := lo
	for i, e := range es {
		if !e.ok {
			w.res.problem("%s bucket: %s: element %d is out of the page or has no key", kind, where, i)
			w.lostRange(kind, lo, hi)
			if !certain {
				// Not even a child page to follow with any trust.
				continue
			}
		} else {
			checkKey(w.res, kind, where, i, e.key, running, hi)
		}
		next := hi
		if i+1 < len(es) && es[i+1].ok {
			next = es[i+1].key
		}
		childLo := e.key
		if !e.ok {
			// running lies in the buffer the child is about to be read into.
			childLo = bytes.Clone(running)
		}
		running = w.node(kind, e.child, childLo, next, depth+1)
	}
	return running
}

// checkKey is bbolt's key order rule: the first key of a page at least the
// bound its parent gives, each next one above the one before (or above the
// largest key under the branch element before), all below hi.
func checkKey(res *scanResult, kind bucketKind, where pageName, i int, key, prev, hi []byte) {
	switch {
	case i == 0 && prev != nil && bytes.Compare(prev, key) > 0,
		i > 0 && bytes.Compare(prev, key) >= 0,
		hi != nil && bytes.Compare(key, hi) >= 0:
		res.problem("%s bucket: %s: key %d out of order", kind, where, i)
	}
}

// leaf walks the elements of leaf page b.
func (w *walker) leaf(kind bucketKind, where pageName, b []byte, lo, hi []byte, depth int) []byte {
	es, certain, problem := elements(b, true, w.elemBuf(depth))
	w.elems[depth] = es
	if problem != "" {
		w.res.problem("%s bucket: %s: %s", kind, where, problem)
	}
	if !certain {
		w.lostRange(kind, lo, hi)
	}
	if len(es) == 0 && lo != nil {
		// bbolt merges away a page left empty under a branch: its count
		// is damaged.
		w.res.problem("%s bucket: %s: an empty page under a branch", kind, where)
		w.lostRange(kind, lo, hi)
	}
	var outOfOrder []bool
	switch kind {
	case kindFeedback:
		// A feedback's key is checked against its record: a damaged one
		// is known, and does not get to push a sound one out of the run.
		outOfOrder = outliers(es, func(e elem) bool { return checkFeedback(e.key, e.value) == nil })
	case kindIndex:
		outOfOrder = outliers(es, func(elem) bool { return true })
	}
	running := lo
	for i, e := range es {
		if !e.ok {
			w.res.problem("%s bucket: %s: record %d is out of the page or has no key", kind, where, i)
			w.lostIf(kind, certain)
			continue
		}
		// bbolt's rule, on every key: what decides whether bbolt may have
		// the file.
		checkKey(w.res, kind, where, i, e.key, running, hi)
		running = e.key
		if outOfOrder != nil && outOfOrder[i] {
			// Which key is damaged: what decides what is salvaged.
			w.res.problem("%s bucket: %s: key %d is damaged (out of order)", kind, where, i)
			w.lostIf(kind, certain)
			continue
		}
		w.element(kind, where, e.flags, e.key, e.value, depth, certain)
	}
	return running
}

// outliers marks the keys of a page that are out of order: those outside a
// longest run of keys in order, so that of two keys out of order it is the
// damaged one that is marked, not its neighbour; of two runs as long, the
// one ending last. Keys not sound are in no run. Nil if all are in order.
// The bounds the parent page gives are not used: a damaged branch key would
// then condemn a sound page.
func outliers(es []elem, sound func(elem) bool) []bool {
	sorted := true
	for i := 1; i < len(es) && sorted; i++ {
		sorted = !es[i].ok || !es[i-1].ok || bytes.Compare(es[i-1].key, es[i].key) < 0
	}
	if sorted {
		return nil
	}
	// run[i]: the longest run in order ending at i; from[i]: the key
	// before i in it. Quadratic, on one damaged page of at most a few
	// hundred keys.
	run, from := make([]int, len(es)), make([]int, len(es))
	in := make([]bool, len(es))
	best := -1
	for i, e := range es {
		if in[i] = e.ok && sound(e); !in[i] {
			continue
		}
		run[i], from[i] = 1, -1
		for j := range i {
			if in[j] && run[j]+1 > run[i] && bytes.Compare(es[j].key, e.key) < 0 {
				run[i], from[i] = run[j]+1, j
			}
		}
		if best < 0 || run[i] >= run[best] {
			best = i
		}
	}
	out := make([]bool, len(es))
	for i, e := range es {
		out[i] = e.ok
	}
	for i := best; i >= 0; i = from[i] {
		out[i] = false
	}
	return out
}

// certain: the record is one (its page's count is known); otherwise an
// unreadable one may be garbage, and what is lost is unknown.
func (w *walker) element(kind bucketKind, where pageName, flags uint32, key, value []byte, depth int, certain bool) {
	if kind == kindRoot {
		// The root holds buckets only: a record is a damaged flag, and the
		// value may still be the bucket.
		if flags != bucketElem {
			w.res.problem("root bucket: %s: %q has flags %#x, not a bucket's", where, key, flags)
		}
		if len(value) < bucketHeaderSize {
			w.res.problem("root bucket: %s: bucket %q has a %d-byte header", where, key, len(value))
			w.lostRange(kindStray, nil, nil)
			return
		}
		child := kindStray
		switch string(key) {
		case string(bucketMeta):
			child = kindMeta
		case string(bucketFeedback):
			child = kindFeedback
		case string(bucketIndex):
			child = kindIndex
			w.res.indexSeq = max(w.res.indexSeq, ne.Uint64(value[8:]))
		default:
			w.res.problem("root bucket: %s: a bucket named %q, which this store never writes", where, key)
		}
		w.bucket(child, ne.Uint64(value), value[bucketHeaderSize:], depth+1)
		return
	}
	// This store keeps records only, no nested buckets: the flag is a
	// damaged byte, and the value may still be the record.
	if flags != 0 {
		w.res.problem("%s bucket: %s: record %q has flags %#x", kind, where, key, flags)
	}
	switch kind {
	case kindMeta:
		if string(key) == string(keyFormat) {
			w.res.format = append([]byte(nil), value...)
			if !isNumber(value) {
				w.res.problem("meta bucket: %s: format %q is not a version", where, value)
			}
		}
	case kindFeedback:
		if err := checkFeedback(key, value); err != nil {
			w.res.problem("feedback bucket: %s: record %q: %v", where, key, err)
			w.lostIf(kindFeedback, certain)
			return
		}
		w.keep(kindFeedback, key, value, 0)
	case kindIndex:
		seq, _, _, _, err := splitSpan(value)
		if err != nil {
			w.res.problem("index bucket: %s: entry %q: %v", where, key, err)
			w.lostIf(kindIndex, certain)
			return
		}
		w.keep(kindIndex, key, value, seq)
	case kindStray:
		if checkFeedback(key, value) == nil {
			w.keep(kindFeedback, key, value, 0)
		} else if seq, _, _, _, err := splitSpan(value); err == nil {
			w.keep(kindIndex, key, value, seq)
		} else {
			w.res.lostUnknown = true
		}
	}
}

func (w *walker) keep(kind bucketKind, key, value []byte, seq uint64) {
	if !w.collect {
		return
	}
	r := record{key: bytes.Clone(key), value: bytes.Clone(value), seq: seq}
	if kind == kindFeedback {
		w.res.feedback = append(w.res.feedback, r)
	} else {
		w.res.index = append(w.res.index, r)
		w.res.indexSeq = max(w.res.indexSeq, seq)
	}
}

// lostIf counts a record of kind lost if certain, or notes an unknown loss.
func (w *walker) lostIf(kind bucketKind, certain bool) {
	if certain {
		w.lost(kind)
	} else {
		w.res.lostUnknown = true
	}
}

// lost counts a record of kind that was found but cannot be read.
func (w *walker) lost(kind bucketKind) {
	switch kind {
	case kindFeedback:
		w.res.feedbackLost++
	case kindIndex:
		w.res.indexLost++
	default:
		w.res.lostUnknown = true
	}
}

// checkFreelist checks the freelist page of a file written without
// NoFreelistSync (bbolt writes one in a new file until its first commit):
// bbolt would reuse the pages it lists, so none may be in use.
func (w *walker) checkFreelist() {
	id := w.meta.freelist
	ps := w.meta.pageSize
	off := int64(id) * ps
	b := make([]byte, ps)
	if off+ps > w.size {
		w.res.problem("freelist page %d: past the end of the file", id)
		return
	}
	if _, err := w.r.ReadAt(b, off); err != nil {
		w.res.problem("freelist page %d: %v", id, err)
		return
	}
	overflow := uint64(ne.Uint32(b[12:]))
	if ne.Uint64(b) != id || ne.Uint16(b[8:]) != freelistPage || id+overflow >= w.meta.hwm || off+int64(overflow+1)*ps > w.size {
		w.res.problem("freelist page %d: not a freelist page that fits the file", id)
		return
	}
	if overflow > 0 {
		b = append(b, make([]byte, int64(overflow)*ps)...)
		if _, err := w.r.ReadAt(b[ps:], off+ps); err != nil {
			w.res.problem("freelist page %d: %v", id, err)
			return
		}
	}
	ids := b[pageHeaderSize:]
	n := uint64(ne.Uint16(b[10:]))
	if n == 0xffff {
		n = ne.Uint64(ids)
		ids = ids[8:]
	}
	if n > uint64(len(ids)/8) {
		w.res.problem("freelist page %d: %d ids do not fit the page", id, n)
		return
	}
	for p := id; p <= id+overflow; p++ {
		if p < uint64(len(w.seen)) && w.seen[p] {
			w.res.problem("freelist page %d: also in the tree", id)
			return
		}
	}
	free := make(map[uint64]bool, n)
	for i := range n {
		p := ne.Uint64(ids[8*i:])
		if p < 2 || p >= w.meta.hwm || free[p] || (p < uint64(len(w.seen)) && w.seen[p]) || (p >= id && p <= id+overflow) {
			w.res.problem("freelist page %d: lists page %d, outside the pages in use, twice, or in use", id, p)
			return
		}
		free[p] = true
	}
}

// checkFeedback reads a feedback record as LoadFeedback does, and checks
// that its key is the one SaveFeedback gives it: a damaged key would
// otherwise outlive RemoveFeedback and come back at every start.
func checkFeedback(key, value []byte) error {
	var sj savedJSON
	if err := json.Unmarshal(value, &sj); err != nil {
		return err
	}
	if sj.V != 1 {
		return fmt.Errorf("record version %d", sj.V)
	}
	f := sj.Feedback
	if !bytes.Equal(key, feedbackKey(f.ResponseID, f.Name, f.Identifier, f.Target)) {
		return errors.New("the key is not the record's")
	}
	return nil
}

// salvageFree looks for older copies of what the tree lost. bbolt writes
// copy on write: a transaction writes the pages it changes, and the path
// from them up to the root, to free pages, and frees the old ones, which
// keep their bytes until reused. The newest pages, the root among them,
// are often at the end of the file, so a file cut short has lost its root
// and every path down while most leaves are still there. So the pages
// outside the tree are read, and a record taken from one if its key lies
// in a range the tree lost (nowhere else: there the tree says what is
// current, and a free page holds what was deleted or replaced) and the
// tree does not have it. Such a record may be an older version of its
// record (an older vote), or one since deleted (a feedback already written
// to Phoenix, written again as the same annotation); two copies that
// differ are both dropped.
func (w *walker) salvageFree() {
	have := map[string]bool{}
	for _, r := range w.res.feedback {
		have["f"+string(r.key)] = true
	}
	for _, r := range w.res.index {
		have["i"+string(r.key)] = true
	}
	in := func(kind bucketKind, k []byte) bool {
		for _, r := range w.lostRanges[kind] {
			if r.has(k) {
				return true
			}
		}
		return false
	}
	type found struct {
		record
		conflict bool
	}
	feedback, index := map[string]*found{}, map[string]*found{}
	ps := w.meta.pageSize
	b := make([]byte, ps)
	for id := uint64(2); id < uint64(len(w.seen)); id++ {
		off := int64(id) * ps
		if w.seen[id] || off+ps > w.size {
			continue
		}
		if _, err := w.r.ReadAt(b, off); err != nil || ne.Uint64(b) != id || ne.Uint16(b[8:]) != leafPage {
			continue
		}
		page := b
		if overflow := int64(ne.Uint32(b[12:])); overflow > 0 {
			if id+uint64(overflow) >= uint64(len(w.seen)) {
				continue
			}
			page = make([]byte, (overflow+1)*ps)
			if _, err := w.r.ReadAt(page, off); err != nil {
				continue
			}
		}
		es, certain, _ := elements(page, true, nil)
		if !certain {
			continue
		}
		for _, e := range es {
			if !e.ok || e.flags != 0 {
				continue
			}
			m, isIndex := feedback, false
			var seq uint64
			switch {
			case in(kindFeedback, e.key) && !have["f"+string(e.key)] && checkFeedback(e.key, e.value) == nil:
			case in(kindIndex, e.key) && !have["i"+string(e.key)]:
				var err error
				if seq, _, _, _, err = splitSpan(e.value); err != nil {
					continue
				}
				m, isIndex = index, true
			default:
				continue
			}
			f := m[string(e.key)]
			switch {
			case f == nil:
				m[string(e.key)] = &found{record: record{key: bytes.Clone(e.key), value: bytes.Clone(e.value), seq: seq}}
			case isIndex && seq > f.seq:
				// The index entry written last.
				f.value, f.seq = bytes.Clone(e.value), seq
			case !isIndex && !bytes.Equal(f.value, e.value):
				f.conflict = true
			}
		}
	}
	conflicts := 0
	for _, k := range slices.Sorted(maps.Keys(feedback)) {
		if f := feedback[k]; f.conflict {
			conflicts++
		} else {
			w.res.feedback = append(w.res.feedback, f.record)
			w.res.feedbackFree++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(index)) {
		w.res.index = append(w.res.index, index[k].record)
		w.res.indexSeq = max(w.res.indexSeq, index[k].seq)
		w.res.indexFree++
	}
	if conflicts > 0 {
		w.res.problem("%d feedbacks found in two versions outside the tree: dropped", conflicts)
	}
}
