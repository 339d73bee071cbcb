package queue

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// format is the record format of a segment, told by the suffix of its name:
// a damaged header cannot change it.
type format uint8

const (
	// legacy is the format before sync markers: length, crc, payload.
	// Segments in it are still read (a proxy upgraded with exports queued
	// delivers them) but no longer written.
	legacy format = 1
	// current is the format Append writes: see the package documentation.
	current format = 2
)

const (
	headerLen       = 16 // magic, length, crc, header crc
	legacyHeaderLen = 8  // length, crc
	segSuffix       = ".seg2"
	legacySuffix    = ".seg"
	lockName        = "LOCK"
)

// magic starts every record of the current format; a resync after damage
// looks for it. Chosen not to be ASCII, a small integer or a common protobuf
// prefix, so that it seldom occurs in payloads (and when it does, the header
// checksum rules it out).
var magic = [4]byte{0x9e, 0x51, 0x7c, 0xe3}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (f format) headerLen() int64 {
	if f == legacy {
		return legacyHeaderLen
	}
	return headerLen
}

func (f format) suffix() string {
	if f == legacy {
		return legacySuffix
	}
	return segSuffix
}

// segFile is a segment file: its sequence and its format.
type segFile struct {
	seq uint64
	f   format
}

func (s segFile) name() string { return fmt.Sprintf("%020d%s", s.seq, s.f.suffix()) }

// segName is the name of the segment seq in the current format.
func segName(seq uint64) string { return segFile{seq, current}.name() }

// parseSegName returns the segment a file name is; names this package did
// not write are not segments.
func parseSegName(name string) (segFile, bool) {
	for _, f := range []format{current, legacy} {
		digits, ok := strings.CutSuffix(name, f.suffix())
		if !ok || len(digits) != 20 {
			continue
		}
		seq, err := strconv.ParseUint(digits, 10, 64)
		return segFile{seq, f}, err == nil
	}
	return segFile{}, false
}

// listSegments returns the segments in dir, oldest first. Only a proxy
// downgraded and upgraded again can leave a sequence in both formats; the
// legacy one is taken as the older.
func listSegments(dir string) ([]segFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segFile
	for _, e := range entries {
		if s, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, s)
		}
	}
	slices.SortFunc(segs, func(a, b segFile) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.f, b.f))
	})
	return segs, nil
}

// appendRecord appends rec, framed in the current format to be written at
// at, to buf:
//
//	magic [4]byte, length uint32, crc uint32 (of the payload), hcrc uint32
//
// where hcrc is the CRC-32C of the twelve bytes before it, then of at's
// segment and offset (uint64 each). Binding the header to its place means a
// copy of a record found elsewhere (inside a payload, or a stale block) is
// never taken for one.
func appendRecord(buf []byte, at pos, rec []byte) []byte {
	return appendParts(buf, at, [][]byte{rec})
}

// appendParts is appendRecord for the record made of parts, one after the
// other.
func appendParts(buf []byte, at pos, parts [][]byte) []byte {
	start := len(buf)
	n, crc := 0, uint32(0)
	for _, p := range parts {
		n += len(p)
		crc = crc32.Update(crc, castagnoli, p)
	}
	buf = append(buf, magic[:]...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
	buf = binary.LittleEndian.AppendUint32(buf, crc)
	buf = binary.LittleEndian.AppendUint32(buf, headerChecksum(buf[start:], at))
	for _, p := range parts {
		buf = append(buf, p...)
	}
	return buf
}

func headerChecksum(h []byte, at pos) uint32 {
	crc := crc32.Checksum(h[:12], castagnoli)
	return updateUint64(updateUint64(crc, at.seq), uint64(at.off))
}

// updateUint64 is crc32.Update(crc, castagnoli, v little endian), without
// the allocation a slice passed to crc32 costs.
func updateUint64(crc uint32, v uint64) uint32 {
	crc = ^crc
	for range 8 {
		crc = castagnoli[byte(crc)^byte(v)] ^ crc>>8
		v >>= 8
	}
	return ^crc
}

// decodeHeader returns the payload length and checksum of a record header
// in the current format found at at; ok only if the header is intact and
// was written there.
func decodeHeader(h []byte, at pos) (n int64, crc uint32, ok bool) {
	if len(h) < headerLen || [4]byte(h[:4]) != magic || headerChecksum(h, at) != binary.LittleEndian.Uint32(h[12:]) {
		return 0, 0, false
	}
	return int64(binary.LittleEndian.Uint32(h[4:])), binary.LittleEndian.Uint32(h[8:]), true
}

// legacyChecksum is the checksum of a legacy record: its length field, then
// its payload.
func legacyChecksum(hdr, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(hdr[:4], castagnoli), castagnoli, payload)
}

// pos is a place in the queue: a segment and an offset in it.
type pos struct {
	seq uint64
	off int64
}

func (p pos) less(q pos) bool {
	return p.seq < q.seq || (p.seq == q.seq && p.off < q.off)
}

func removeSegments(dir string, segs []segFile) error {
	var errs []error
	for _, s := range segs {
		if err := os.Remove(filepath.Join(dir, s.name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("queue: %w", err))
		}
	}
	return errors.Join(errs...)
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
