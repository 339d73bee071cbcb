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

// next returns the oldest unacknowledged record, going past damage: a
// record that fails its check is the start of a hole, found by scanning
// the rest of its segment again, reported and skipped. The zero Record
// means damage took every record left.
func (r *reader) next() (Record, []Corruption, error) {
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
			return Record{}, found, nil
		}
		rec, ok, err := r.read()
		if err != nil || ok {
			return rec, found, err
		}
		more, err := r.rescan()
		found = append(found, more...)
		if err != nil {
			return Record{}, found, err
		}
		if h := r.segs[0].holes; len(h) == 0 || h[0].off != r.head {
			// Each turn skips a hole, but the disk must agree with itself.
			return Record{}, found, fmt.Errorf("queue: %s at %d: a record failed its check, then passed it", r.f.Name(), r.head)
		}
	}
}

// read reads the record at the head; false if it fails its check.
func (r *reader) read() (Record, bool, error) {
	seg := &r.segs[0]
	if r.f == nil || r.fseg != seg.segFile {
		if r.f != nil {
			r.f.Close()
		}
		f, err := os.Open(r.path(seg.segFile))
		if err != nil {
			r.f = nil
			return Record{}, false, fmt.Errorf("queue: %w", err)
		}
		r.f, r.fseg = f, seg.segFile
	}
	hl := seg.f.headerLen()
	h := r.hdr[:hl]
	if _, err := r.f.ReadAt(h, r.head); err != nil {
		return Record{}, false, readErr(r.f, r.head, err)
	}
	n, want, ok := int64(binary.LittleEndian.Uint32(h)), binary.LittleEndian.Uint32(h[4:]), true
	if seg.f != legacy {
		n, want, ok = decodeHeader(h, pos{seg.seq, r.head})
	}
	if !ok {
		return Record{}, false, nil
	}
	rec := Record{seq: seg.seq, off: r.head, size: hl + n}
	if r.head+rec.size > seg.end {
		return Record{}, false, nil
	}
	rec.Data = make([]byte, n)
	if _, err := r.f.ReadAt(rec.Data, r.head+hl); err != nil {
		return Record{}, false, readErr(r.f, r.head, err)
	}
	crc := crc32.Checksum(rec.Data, castagnoli)
	if seg.f == legacy {
		crc = legacyChecksum(h, rec.Data)
	}
	return rec, crc == want, nil
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

// acknowledge moves the head past rec, the record next returned, and
// writes the new position.
func (r *reader) acknowledge(rec Record) error {
	seg := &r.segs[0]
	if rec.size == 0 || rec.seq != seg.seq || rec.off != r.head {
		return fmt.Errorf("queue: ack of a record that is not the oldest unacknowledged one (segment %d offset %d)", rec.seq, rec.off)
	}
	r.head += rec.size
	seg.n--
	seg.bytes -= rec.size
	r.n--
	r.bytes -= rec.size
	done, _ := r.settle(true)
	err := r.ack.write(pos{r.segs[0].seq, r.head})
	// Removing a segment acknowledges it even if the ack file is stale:
	// Open takes a missing segment for an acknowledged one.
	return errors.Join(err, removeSegments(r.dir, done))
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
