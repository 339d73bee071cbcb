package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The ack file holds the acknowledged position in two slots a sector apart,
// written in turn, each with a generation and a checksum; the valid slot of
// the higher generation wins. A write torn by a power loss damages one slot
// and the other still holds the position before, as bbolt's two meta pages
// do. One small write in place costs a few microseconds; replacing the file
// by rename cost about a millisecond on ext4 (see BenchmarkNextAck), which
// flushes the data of a file renamed over another.
const (
	ackName    = "ack"
	ackSlotOff = 512
	ackRecLen  = 8 + 8 + 8 + 4 // segment, offset, generation, crc
)

type ackFile struct {
	f    *os.File
	gen  uint64
	sync bool
	buf  [ackRecLen]byte
}

// openAck opens the ack file in dir, creating it if missing, and returns
// the position it holds; false if it holds none that can be trusted.
func openAck(dir string, sync bool) (*ackFile, pos, bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, ackName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, pos{}, false, err
	}
	a := &ackFile{f: f, sync: sync}
	var best pos
	found := false
	for slot := range 2 {
		var b [ackRecLen]byte
		if _, err := f.ReadAt(b[:], int64(slot)*ackSlotOff); err != nil {
			if errors.Is(err, io.EOF) {
				continue
			}
			f.Close()
			return nil, pos{}, false, err
		}
		p, gen, ok := decodeAck(b)
		if ok && (!found || gen > a.gen) {
			best, a.gen, found = p, gen, true
		}
	}
	return a, best, found, nil
}

func decodeAck(b [ackRecLen]byte) (p pos, gen uint64, ok bool) {
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]) {
		return pos{}, 0, false
	}
	p = pos{seq: binary.LittleEndian.Uint64(b[:8]), off: int64(binary.LittleEndian.Uint64(b[8:16]))}
	return p, binary.LittleEndian.Uint64(b[16:24]), p.off >= 0
}

// write records p in the slot not holding the latest position.
func (a *ackFile) write(p pos) error {
	b := a.buf[:]
	gen := a.gen + 1
	binary.LittleEndian.PutUint64(b[:8], p.seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(p.off))
	binary.LittleEndian.PutUint64(b[16:24], gen)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	_, err := a.f.WriteAt(b, int64(gen%2)*ackSlotOff)
	if err == nil && a.sync {
		err = a.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("queue: write ack position: %w", err)
	}
	a.gen = gen
	return nil
}
