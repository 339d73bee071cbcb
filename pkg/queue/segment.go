package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

const (
	headerLen  = 8 // length uint32 + crc uint32
	segSuffix  = ".seg"
	segNameLen = 20 + len(segSuffix)
	lockName   = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum covers the length field too: a corrupted length, or zeros where a
// record should be, then fail the check instead of framing garbage.
func checksum(hdr, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(hdr[:4], castagnoli), castagnoli, payload)
}

// appendRecord appends rec, framed, to buf.
func appendRecord(buf, rec []byte) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(rec)))
	buf = binary.LittleEndian.AppendUint32(buf, checksum(buf[start:], rec))
	return append(buf, rec...)
}

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

// parseSegName returns the sequence of a segment file name; names this
// package did not write are not segments.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(name) != segNameLen {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// listSegments returns the sequences of the segments in dir, oldest first.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		if seq, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// scanned is what a scan of a segment found.
type scanned struct {
	// good is where the good records end; size is the size of the file.
	good, size int64
	// head is the start of the record that holds the offset the scan was
	// asked about (or good, past them all), and n the good records from
	// there on.
	head int64
	n    int
}

// scanSegment reads f from the start, up to the first record that is cut
// short or fails its checksum. from is the acknowledged offset in f, 0 for
// a segment not yet acknowledged into. A length field is checked against
// what is left of the file before anything is allocated for it; not against
// the budget, which may have been lowered since the record was written.
func scanSegment(f *os.File, from int64) (scanned, error) {
	fi, err := f.Stat()
	if err != nil {
		return scanned{}, err
	}
	s := scanned{size: fi.Size()}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, s.size), 256<<10)
	var hdr [headerLen]byte
	var payload []byte
	for off := int64(0); ; {
		if off <= from {
			s.head, s.n = off, 0
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return s, readErr(err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[:4]))
		if n > s.size-off-headerLen {
			return s, nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return s, readErr(err)
		}
		if checksum(hdr[:], payload) != binary.LittleEndian.Uint32(hdr[4:]) {
			return s, nil
		}
		off += headerLen + n
		s.good = off
		s.n++
	}
}

// readErr keeps the errors of the disk; a short read only ends the scan.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// pos is a place in the queue: a segment and an offset in it.
type pos struct {
	seq uint64
	off int64
}

func (p pos) less(q pos) bool {
	return p.seq < q.seq || (p.seq == q.seq && p.off < q.off)
}

// syncDir makes created, renamed and removed names in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
