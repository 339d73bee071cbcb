package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// A scan walks a segment from a record boundary and sorts its bytes into
// intact records and holes: damaged bytes, each followed by the next intact
// record, or by the end. Finding that next record after damage (a resync)
// depends on the format.
//
// Current format: a record whose header is intact but whose payload fails
// its checksum is a hole of exactly its size, since the header checksum
// vouches for the length. Otherwise the scan looks for the next magic
// (bytes.Index, memory speed), checks the 16-byte header there, and stops
// at the first one intact and written at that place; a payload is only
// checksummed behind an intact header, so a resync costs O(bytes searched).
//
// Legacy format: nothing but the record checksum vouches for a length, and
// checksumming the payload at every offset whose length fits would be
// quadratic. A resync first checksums only candidates whose lengths chain
// on through the records after them (true records do, false ones seldom),
// then tries every offset before the record found, for records up to it
// only (an intact record whose chain broke on damage further on); the
// first record found either way is the first intact one. The work of the
// resyncs of one scan (bytes checksummed in vain, lengths followed, reads)
// is bounded by legacyResyncBudget, counted in bytes checksummed; past it,
// only the place the damaged length field points to is tried, and if no
// record is there the rest of the segment is a hole.
const (
	legacyResyncBudget = 256 << 20
	peekCost           = 16      // a length followed in the window
	readCost           = 4 << 10 // a length read on its own
)

// windowSize is how much of a segment a scan reads at once.
const windowSize = 256 << 10

// hole is a damaged range of a segment, [off, end).
type hole struct{ off, end int64 }

func (h hole) len() int64 { return h.end - h.off }

// scanned is what a scan of a segment found from its start.
type scanned struct {
	// good is the end of the last intact record (or the start of the scan);
	// end is the end of the scan. Bytes between them are a trailing hole.
	good, end int64
	// head is the first byte the scan was asked about that is in an intact
	// record or a hole; n and bytes count the intact records from there,
	// holes lists the holes from there (cut to start at from).
	head  int64
	n     int
	bytes int64
	holes []hole
}

// scanner reads one segment through a window.
type scanner struct {
	r       io.ReaderAt // the segment, cut at the end of the scan
	seg     segFile
	end     int64
	win     []byte // bytes of the segment from winOff
	winOff  int64
	scratch []byte
	peek    [legacyHeaderLen]byte
	// budget is what the legacy resyncs of this scan may still do, of
	// resyncBudget at its start.
	budget, resyncBudget int64
}

func newScanner() *scanner {
	return &scanner{win: make([]byte, 0, windowSize), scratch: make([]byte, windowSize), resyncBudget: legacyResyncBudget}
}

// scan sorts the bytes of seg (read from r) in [start, end) into records
// and holes. from is the acknowledged offset: records ending at or before
// it count as delivered, and holes only from there on.
func (s *scanner) scan(r io.ReaderAt, seg segFile, start, end, from int64) (scanned, error) {
	s.r, s.seg, s.end = io.NewSectionReader(r, 0, end), seg, end
	s.win, s.winOff = s.win[:0], 0
	s.budget = s.resyncBudget
	out := scanned{good: start, end: end, head: -1}
	for off := start; off < end; {
		size, ok, err := s.record(off)
		if err != nil {
			return scanned{}, err
		}
		if ok {
			if off+size > from {
				if out.head < 0 {
					out.head = off
				}
				out.n++
				out.bytes += size
			}
			off += size
			out.good = off
			continue
		}
		h, err := s.hole(off)
		if err != nil {
			return scanned{}, err
		}
		if h.end > from {
			h.off = max(h.off, from)
			if out.head < 0 {
				out.head = h.off
			}
			if k := len(out.holes) - 1; k >= 0 && out.holes[k].end == h.off {
				out.holes[k].end = h.end
			} else {
				out.holes = append(out.holes, h)
			}
		}
		off = h.end
	}
	if out.head < 0 {
		out.head = end
	}
	return out, nil
}

// trailing returns the hole at the end of the scan with nothing intact
// after it, if any.
func (s scanned) trailing() (hole, bool) {
	if k := len(s.holes) - 1; k >= 0 && s.holes[k].end == s.end && s.holes[k].off >= s.good {
		return s.holes[k], true
	}
	return hole{}, false
}

// view returns the bytes of the segment from off that the window holds,
// reading the window anew from off if it holds fewer than atLeast (at most
// windowSize); fewer than atLeast only at the end of the segment.
func (s *scanner) view(off int64, atLeast int) ([]byte, error) {
	if off >= s.winOff && off+int64(atLeast) <= s.winOff+int64(len(s.win)) {
		return s.win[off-s.winOff:], nil
	}
	m, err := s.r.ReadAt(s.win[:cap(s.win)], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	s.win, s.winOff = s.win[:m], off
	return s.win, nil
}

// at returns n bytes of the segment from off, fewer at its end.
func (s *scanner) at(off int64, n int) ([]byte, error) {
	b, err := s.view(off, n)
	return b[:min(n, len(b))], err
}

// checksum returns the CRC-32C of the n bytes at off, continuing crc;
// false if the segment ends before them.
func (s *scanner) checksum(crc uint32, off, n int64) (uint32, bool, error) {
	if off >= s.winOff && off+n <= s.winOff+int64(len(s.win)) {
		return crc32.Update(crc, castagnoli, s.win[off-s.winOff:][:n]), true, nil
	}
	for n > 0 {
		m, err := s.r.ReadAt(s.scratch[:min(n, int64(len(s.scratch)))], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, false, err
		}
		if m == 0 {
			return 0, false, nil
		}
		crc = crc32.Update(crc, castagnoli, s.scratch[:m])
		off += int64(m)
		n -= int64(m)
	}
	return crc, true, nil
}

// record reports whether an intact record starts at off, and its size.
func (s *scanner) record(off int64) (int64, bool, error) {
	if s.seg.f == legacy {
		return s.legacyRecord(off)
	}
	h, err := s.at(off, headerLen)
	if err != nil {
		return 0, false, err
	}
	n, want, ok := decodeHeader(h, pos{s.seg.seq, off})
	if !ok || n > s.end-off-headerLen {
		return 0, false, nil
	}
	crc, ok, err := s.checksum(0, off+headerLen, n)
	return headerLen + n, ok && crc == want, err
}

func (s *scanner) legacyRecord(off int64) (int64, bool, error) {
	return s.legacyRecordBefore(off, s.end)
}

// legacyRecordBefore reports whether an intact legacy record starts at off
// and ends by limit; its size if its payload was checksummed, 0 if its
// length does not fit.
func (s *scanner) legacyRecordBefore(off, limit int64) (int64, bool, error) {
	h, err := s.at(off, legacyHeaderLen)
	if err != nil || len(h) < legacyHeaderLen {
		return 0, false, err
	}
	n := int64(binary.LittleEndian.Uint32(h))
	if n > limit-off-legacyHeaderLen {
		return 0, false, nil
	}
	want := binary.LittleEndian.Uint32(h[4:])
	crc, ok, err := s.checksum(crc32.Checksum(h[:4], castagnoli), off+legacyHeaderLen, n)
	return legacyHeaderLen + n, ok && crc == want, err
}

// hole returns the damaged range that starts at off, where no intact record
// starts: up to the next intact record, or to the end.
func (s *scanner) hole(off int64) (hole, error) {
	if s.seg.f == legacy {
		return s.legacyHole(off)
	}
	h, err := s.at(off, headerLen)
	if err != nil {
		return hole{}, err
	}
	if n, _, ok := decodeHeader(h, pos{s.seg.seq, off}); ok && n <= s.end-off-headerLen {
		// The header is intact, the payload is not: just this record.
		return hole{off, off + headerLen + n}, nil
	}
	for c := off + 1; c < s.end; {
		b, err := s.view(c, headerLen)
		if err != nil {
			return hole{}, err
		}
		if len(b) < len(magic) {
			break
		}
		i := bytes.Index(b, magic[:])
		if i < 0 {
			c += int64(len(b) - len(magic) + 1)
			continue
		}
		c += int64(i)
		h, err := s.at(c, headerLen)
		if err != nil {
			return hole{}, err
		}
		// The length is checked first: it is cheaper than the checksum.
		if len(h) == headerLen && int64(binary.LittleEndian.Uint32(h[4:])) <= s.end-c-headerLen {
			if _, _, ok := decodeHeader(h, pos{s.seg.seq, c}); ok {
				return hole{off, c}, nil
			}
		}
		c++
	}
	return hole{off, s.end}, nil
}

func (s *scanner) legacyHole(off int64) (hole, error) {
	// Pass 1: the first record after off whose lengths chain on, to the end
	// or for legacyChainHops records; a false candidate seldom does, so few
	// payloads are checksummed.
	next := s.end
	var err error
	for c := off + 1; s.budget > 0; c++ {
		if c, err = s.skipZeros(c, s.end); err != nil {
			return hole{}, err
		}
		if c+legacyHeaderLen > s.end {
			break
		}
		ok, err := s.chains(c)
		if err == nil && ok {
			ok, err = s.legacyCandidate(c, s.end)
		}
		if err != nil {
			return hole{}, err
		}
		if ok {
			next = c
			break
		}
	}
	// Pass 2: every offset before it, for a record that ends by then: an
	// intact record whose chain breaks on damage further on, or runs into
	// a torn end.
	for c := off + 1; s.budget > 0; c++ {
		if c, err = s.skipZeros(c, next); err != nil {
			return hole{}, err
		}
		if c+legacyHeaderLen > next {
			break
		}
		if ok, err := s.legacyCandidate(c, next); err != nil || ok {
			return hole{off, c}, err
		}
	}
	if s.budget > 0 || next < s.end {
		return hole{off, next}, nil
	}
	// Budget spent: where the damaged length points, if a record is there.
	h, err := s.at(off, legacyHeaderLen)
	if err != nil || len(h) < legacyHeaderLen {
		return hole{off, s.end}, err
	}
	if guess := off + legacyHeaderLen + int64(binary.LittleEndian.Uint32(h)); guess < s.end {
		if _, ok, err := s.legacyRecord(guess); err != nil || ok {
			return hole{off, guess}, err
		}
	}
	return hole{off, s.end}, nil
}

// skipZeros returns the first offset from c, before limit, whose header is
// not all zeros: no legacy record starts there (the checksum of a zero
// length is not zero), and a power loss leaves long runs of them.
func (s *scanner) skipZeros(c, limit int64) (int64, error) {
	for c < limit {
		b, err := s.view(c, legacyHeaderLen)
		if err != nil || len(b) < legacyHeaderLen {
			return c, err
		}
		b = b[:min(int64(len(b)), limit-c)]
		i := 0
		for i < len(b) && b[i] == 0 {
			i++
		}
		if i < legacyHeaderLen {
			return c, nil
		}
		if i < len(b) {
			return c + int64(i) - legacyHeaderLen + 1, nil
		}
		c += int64(len(b)) - legacyHeaderLen + 1
	}
	return c, nil
}

// legacyChainHops is how many records a candidate's lengths must chain
// through (when they do not reach the end first) to be checksummed in the
// first pass of a legacy resync. About a fifth of the offsets in protobuf
// payloads read as a length that fits in a segment, so a false chain goes
// on that long with a chance near 0.2^8.
const legacyChainHops = 8

// chains reports whether the lengths from c chain through legacyChainHops
// records that fit, or land on the end of the scan.
func (s *scanner) chains(c int64) (bool, error) {
	for range legacyChainHops {
		n, ok, err := s.peekLen(c)
		if err != nil || !ok {
			return false, err
		}
		c += legacyHeaderLen + n
		if c >= s.end {
			return c == s.end, nil
		}
	}
	return true, nil
}

// peekLen returns the length field of a legacy header at c, from the window
// or with a read of its own: chains jump around the segment. Both are
// charged to the budget.
func (s *scanner) peekLen(c int64) (int64, bool, error) {
	if c >= s.winOff && c+legacyHeaderLen <= s.winOff+int64(len(s.win)) {
		s.budget -= peekCost
		return int64(binary.LittleEndian.Uint32(s.win[c-s.winOff:])), true, nil
	}
	s.budget -= readCost
	m, err := s.r.ReadAt(s.peek[:], c)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, err
	}
	return int64(binary.LittleEndian.Uint32(s.peek[:])), m == len(s.peek), nil
}

// legacyCandidate is legacyRecordBefore for a resync: a failed checksum is
// charged to the budget.
func (s *scanner) legacyCandidate(c, limit int64) (bool, error) {
	size, ok, err := s.legacyRecordBefore(c, limit)
	if err == nil && !ok {
		s.budget -= size
	}
	return ok, err
}
