package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// readSeg is a segment as the read side sees it.
type readSeg struct {
	segFile
	end   int64 // where its records end; appends to the newest move it
	n     int   // intact records not yet acknowledged
	bytes int64 // their size on disk
	holes []hole
}

// reader is the read side of a queue: the segments from the oldest
// unacknowledged record on, the damage in them not yet passed, and the ack
// file. The Queue calls it under its lock.
type reader struct {
	dir  string
	ack  *ackFile
	segs []readSeg // oldest first; the last is the one appended to
	head int64     // offset of the oldest unacknowledged record in segs[0]
	// n and bytes are the sums of the segments' n and bytes.
	n     int
	bytes int64

	f    *os.File // segs[0] once read from
	fseg segFile
	sc   *scanner // for damage found while open, made when needed
	hdr  [headerLen]byte
	log  *slog.Logger
}

func (r *reader) path(s segFile) string { return filepath.Join(r.dir, s.name()) }

// pushed adds a record appended at at, of size bytes on disk.
func (r *reader) pushed(at pos, size int64) {
	if r.segs[len(r.segs)-1].seq != at.seq {
		r.segs = append(r.segs, readSeg{segFile: segFile{at.seq, current}, end: at.off})
	}
	s := &r.segs[len(r.segs)-1]
	s.end = at.off + size
	s.n++
	s.bytes += size
	r.n++
	r.bytes += size
}

// settle moves the head past segments finished but the newest, and with
// skip past the holes it reaches. It returns the segments finished, for
// removing, and whether the head moved.
func (r *reader) settle(skip bool) (done []segFile, moved bool) {
	for {
		s := &r.segs[0]
		switch {
		case skip && len(s.holes) > 0 && s.holes[0].off <= r.head:
			r.head = max(r.head, s.holes[0].end)
			s.holes = s.holes[1:]
		case len(r.segs) > 1 && r.head >= s.end:
			r.n -= s.n // 0 but for a segment shorter than recovery saw
			r.bytes -= s.bytes
			done = append(done, s.segFile)
			r.segs = r.segs[1:]
			r.head = 0
		default:
			if len(done) > 0 && r.f != nil {
				r.f.Close()
				r.f = nil
			}
			return done, moved
		}
		moved = true
	}
}

// next returns the oldest unacknowledged records, going past damage: a
// record that fails its check is the start of a hole, found by scanning
// the rest of its segment again, reported and skipped. It returns the
// record at the head and the intact ones after it in the same segment, as
// many as fit in maxRecords and maxBytes of payload (the first whatever
// its size), read at once into buf when it is large enough. None means
// damage took every record left.
func (r *reader) next(maxRecords int, maxBytes int64, buf []byte) ([]Record, []Corruption, error) {
	var found []Corruption
	for {
		if done, moved := r.settle(true); moved {
			// Past damage: written now, as the Ack that would write it
			// may never come, so that a restart does not report it again.
			// A failure costs only that.
			err := errors.Join(r.ack.write(pos{r.segs[0].seq, r.head}), removeSegments(r.dir, done))
			if err != nil {
				r.log.Warn("queue: record the position past damage", "err", err)
			}
		}
		if r.n == 0 {
			return nil, found, nil
		}
		recs, err := r.read(maxRecords, maxBytes, buf)
		if err != nil || len(recs) > 0 {
			return recs, found, err
		}
		more, err := r.rescan()
		found = append(found, more...)
		if err != nil {
			return nil, found, err
		}
		if h := r.segs[0].holes; len(h) == 0 || h[0].off != r.head {
			// Each turn skips a hole, but the disk must agree with itself.
			return nil, found, fmt.Errorf("queue: %s at %d: a record failed its check, then passed it", r.f.Name(), r.head)
		}
	}
}

// open opens the head segment for reading, unless it is open already.
func (r *reader) open() error {
	seg := &r.segs[0]
	if r.f != nil && r.fseg == seg.segFile {
		return nil
	}
	if r.f != nil {
		r.f.Close()
	}
	f, err := os.Open(r.path(seg.segFile))
	if err != nil {
		r.f = nil
		return fmt.Errorf("queue: %w", err)
	}
	r.f, r.fseg = f, seg.segFile
	return nil
}

// read reads the record at the head and the intact records that follow it
// in the head segment, in one read from the disk (two for a first record
// larger than the limits), as many as fit in maxRecords and maxBytes of
// payload, the first whatever its size. It stops before a known hole, a
// record that fails its check (next finds the damage once it is at the
// head) and the segment's end. None when the record at the head fails its
// check.
func (r *reader) read(maxRecords int, maxBytes int64, buf []byte) ([]Record, error) {
	if err := r.open(); err != nil {
		return nil, err
	}
	seg := &r.segs[0]
	hl := seg.f.headerLen()
	at := r.head
	// Payloads and their headers, whole records only: the tail of the
	// chunk that starts a record past the limits is read again next time.
	want := min(seg.end-at, max(hl, maxBytes+int64(maxRecords)*hl))
	chunk, err := r.readChunk(buf, at, want)
	if err != nil {
		return nil, err
	}
	var recs []Record
	room := maxBytes
	for off := int64(0); len(recs) < maxRecords && off+hl <= int64(len(chunk)); {
		h := chunk[off : off+hl]
		var size int64
		var sum uint32
		ok := true
		if seg.f == legacy {
			size, sum = int64(binary.LittleEndian.Uint32(h)), binary.LittleEndian.Uint32(h[4:])
		} else {
			size, sum, ok = decodeHeader(h, pos{seg.seq, at + off})
		}
		if !ok || at+off+hl+size > seg.end || (len(recs) > 0 && size > room) {
			break
		}
		if end := off + hl + size; end > int64(len(chunk)) {
			if len(recs) > 0 {
				break
			}
			// The first record, larger than the limits: read the rest.
			if chunk, err = r.readMore(chunk, at, end); err != nil || int64(len(chunk)) < end {
				return nil, err
			}
			h = chunk[off : off+hl]
		}
		data := chunk[off+hl : off+hl+size : off+hl+size]
		crc := crc32.Checksum(data, castagnoli)
		if seg.f == legacy {
			crc = legacyChecksum(h, data)
		}
		if crc != sum {
			break
		}
		recs = append(recs, Record{Data: data, seq: seg.seq, off: at + off, size: hl + size})
		room -= size
		off += hl + size
		if r.holeAt(at + off) {
			break
		}
	}
	return recs, nil
}

// readChunk reads n bytes of the head segment at off into buf, if large
// enough, else into new memory. It returns fewer at the file's end.
func (r *reader) readChunk(buf []byte, off, n int64) ([]byte, error) {
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	got, err := r.f.ReadAt(buf[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, readErr(r.f, off, err)
	}
	return buf[:got], nil
}

// readMore extends chunk, read from off, to n bytes, in new memory: the
// records already taken from chunk, if any, keep theirs.
func (r *reader) readMore(chunk []byte, off, n int64) ([]byte, error) {
	more := make([]byte, n)
	copy(more, chunk)
	got, err := r.f.ReadAt(more[len(chunk):], off+int64(len(chunk)))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, readErr(r.f, off, err)
	}
	return more[:len(chunk)+got], nil
}

// holeAt reports whether a hole known in the head segment starts at off.
func (r *reader) holeAt(off int64) bool {
	for _, h := range r.segs[0].holes {
		if h.off == off {
			return true
		}
	}
	return false
}

// readErr keeps the errors of the disk; a file shorter than recovery saw
// is damage, which a rescan finds.
func readErr(f *os.File, off int64, err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("queue: read %s at %d: %w", f.Name(), off, err)
}

// rescan scans the head segment again from the head, after the record
// there failed its check, and reports the damage not known before.
func (r *reader) rescan() ([]Corruption, error) {
	if r.sc == nil {
		r.sc = newScanner()
	}
	seg := &r.segs[0]
	s, err := r.sc.scan(r.f, seg.segFile, r.head, seg.end, r.head)
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", r.f.Name(), err)
	}
	var found []Corruption
	for _, h := range s.holes {
		for _, h := range subtract(h, seg.holes) {
			found = append(found, Corruption{Kind: CorruptRecords, File: r.f.Name(), Offset: h.off, Bytes: h.len()})
		}
	}
	r.n += s.n - seg.n
	r.bytes += s.bytes - seg.bytes
	seg.n, seg.bytes, seg.holes = s.n, s.bytes, s.holes
	return found, nil
}

// subtract returns the parts of h outside the holes known, which are in
// order and do not overlap.
func subtract(h hole, known []hole) []hole {
	var out []hole
	from := h.off
	for _, k := range known {
		if k.end <= from || k.off >= h.end {
			continue
		}
		if k.off > from {
			out = append(out, hole{from, k.off})
		}
		from = max(from, k.end)
	}
	if from < h.end {
		out = append(out, hole{from, h.end})
	}
	return out
}

// acknowledge moves the head past recs, each the oldest unacknowledged
// record in turn, and writes the new position once. A record out of turn
// stops it: those before it are acknowledged.
func (r *reader) acknowledge(recs []Record) error {
	var (
		done  []segFile
		moved bool
		bad   error
	)
	for _, rec := range recs {
		seg := &r.segs[0]
		if rec.size == 0 || rec.seq != seg.seq || rec.off != r.head {
			bad = fmt.Errorf("queue: ack of a record that is not the oldest unacknowledged one (segment %d offset %d)", rec.seq, rec.off)
			break
		}
		r.head += rec.size
		seg.n--
		seg.bytes -= rec.size
		r.n--
		r.bytes -= rec.size
		d, _ := r.settle(true)
		done = append(done, d...)
		moved = true
	}
	if !moved {
		return bad
	}
	err := r.ack.write(pos{r.segs[0].seq, r.head})
	// Removing a segment acknowledges it even if the ack file is stale:
	// Open takes a missing segment for an acknowledged one.
	return errors.Join(bad, err, removeSegments(r.dir, done))
}

func (r *reader) close() error {
	var errs []error
	if r.f != nil {
		errs = append(errs, r.f.Close())
		r.f = nil
	}
	if r.ack != nil {
		errs = append(errs, r.ack.f.Close())
		r.ack = nil
	}
	return errors.Join(errs...)
}
