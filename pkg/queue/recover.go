package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// recovered is what a previous process left in a directory, checked and
// repaired: the ack file and its position, the segments from the head on,
// the segment to append to, and the damage found.
type recovered struct {
	ack   *ackFile
	ackAt pos
	ackOK bool // false: the position was lost or never written
	segs  []readSeg
	head  int64 // in segs[0]
	tail  *os.File
	found []Corruption
}

// recoverDir reads the ack position and scans every segment not yet
// acknowledged, removing those that are, cutting the torn end off the
// newest, and opening the segment to append to: the newest, or a new one
// if there is none or it is in the legacy format.
func recoverDir(dir string, sync bool) (rec recovered, err error) {
	af, ackAt, ok, err := openAck(dir, sync)
	if err != nil {
		return recovered{}, fmt.Errorf("queue: read ack position: %w", err)
	}
	rec = recovered{ack: af, ackAt: ackAt, ackOK: ok}
	defer func() {
		if err != nil {
			af.f.Close()
			if rec.tail != nil {
				rec.tail.Close()
			}
		}
	}()
	files, err := listSegments(dir)
	if err != nil {
		return rec, fmt.Errorf("queue: %w", err)
	}
	sc := newScanner()
	var anything bool // a segment holds bytes
	for i, sf := range files {
		path := filepath.Join(dir, sf.name())
		if ok && sf.seq < ackAt.seq {
			// Acknowledged entirely; a crash came between writing the ack
			// position and removing the segment.
			if err := os.Remove(path); err != nil {
				return rec, fmt.Errorf("queue: %w", err)
			}
			continue
		}
		from := int64(0)
		if ok && sf.seq == ackAt.seq {
			from = ackAt.off
		}
		seg, head, found, size, err := recoverSegment(path, sf, from, i == len(files)-1, sync, sc)
		if err != nil {
			return rec, err
		}
		if len(rec.segs) == 0 {
			rec.head = head
		}
		rec.segs = append(rec.segs, seg)
		rec.found = append(rec.found, found...)
		anything = anything || size > 0
	}
	if fi, err := af.f.Stat(); err == nil && !ok && (fi.Size() > 0 || anything) {
		rec.found = append([]Corruption{{Kind: AckLost, File: af.f.Name()}}, rec.found...)
	}
	next := ackAt.seq + 1
	if len(rec.segs) > 0 {
		next = rec.segs[len(rec.segs)-1].seq + 1
	}
	if len(rec.segs) > 0 && rec.segs[len(rec.segs)-1].f == current {
		last := rec.segs[len(rec.segs)-1]
		rec.tail, err = os.OpenFile(filepath.Join(dir, last.name()), os.O_WRONLY, 0)
		if err != nil {
			return rec, fmt.Errorf("queue: %w", err)
		}
		return rec, nil
	}
	if rec.tail, err = createSegment(dir, next, sync); err != nil {
		return rec, err
	}
	rec.segs = append(rec.segs, readSeg{segFile: segFile{next, current}})
	return rec, nil
}

// recoverSegment scans the segment at path, from its start; from is its
// acknowledged offset. The newest segment in the current format is cut
// after its last intact record, as appends go there. It returns the
// segment as the read side sees it, its head (the first unacknowledged
// byte), the damage from there on, and its size as found.
func recoverSegment(path string, sf segFile, from int64, newest, sync bool, sc *scanner) (readSeg, int64, []Corruption, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return readSeg{}, 0, nil, 0, fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return readSeg{}, 0, nil, 0, fmt.Errorf("queue: %w", err)
	}
	s, err := sc.scan(f, sf, 0, fi.Size(), from)
	if err != nil {
		return readSeg{}, 0, nil, 0, fmt.Errorf("queue: read %s: %w", path, err)
	}
	seg := readSeg{segFile: sf, end: s.end, n: s.n, bytes: s.bytes, holes: s.holes}
	head := s.head
	_, torn := s.trailing()
	torn = torn && newest
	var found []Corruption
	for i, h := range s.holes {
		kind := CorruptRecords
		if torn && i == len(s.holes)-1 {
			kind = TornTail
		}
		found = append(found, Corruption{Kind: kind, File: path, Offset: h.off, Bytes: h.len()})
	}
	// A legacy segment is not appended to any more: its torn end stays,
	// skipped like any hole.
	if newest && sf.f == current && s.good < s.end {
		if err := errors.Join(f.Truncate(s.good), syncIf(f, sync)); err != nil {
			return readSeg{}, 0, nil, 0, fmt.Errorf("queue: %w", err)
		}
		seg.end = s.good
		head = min(head, s.good)
		if torn {
			seg.holes = seg.holes[:len(seg.holes)-1]
		}
	}
	return seg, head, found, fi.Size(), nil
}

func syncIf(f *os.File, sync bool) error {
	if sync {
		return f.Sync()
	}
	return nil
}
