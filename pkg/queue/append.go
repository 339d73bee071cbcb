package queue

import (
	"fmt"
	"os"
	"path/filepath"
)

// appender is the append side of a queue: the segment appended to, always
// in the current format, and what of it is on stable storage. The Queue
// calls it under its lock.
type appender struct {
	dir          string
	segmentBytes int64
	sync         bool

	f    *os.File // the segment appended to
	seq  uint64
	size int64  // its end: the next record goes there
	buf  []byte // the record being appended, framed

	// With sync: everything before synced is on stable storage; syncing is
	// the file an fsync is running on, which a roll must not close; syncErr,
	// once set, fails every later append, as a failed fsync may have lost
	// written pages (https://lwn.net/Articles/752063/).
	synced  pos
	syncing *os.File
	syncErr error
}

func (a *appender) end() pos { return pos{a.seq, a.size} }

// append writes the record made of parts, framed, at the end of the
// segment appended to, first rolling to the next segment if it would take
// this one past segmentBytes. It returns where the record went and its size
// on disk.
func (a *appender) append(parts [][]byte, n int) (pos, int64, error) {
	if a.syncErr != nil {
		return pos{}, 0, fmt.Errorf("queue: an earlier fsync failed: %w", a.syncErr)
	}
	size := int64(headerLen + n)
	if a.size > 0 && a.size+size > a.segmentBytes {
		if err := a.roll(); err != nil {
			return pos{}, 0, err
		}
	}
	at := a.end()
	a.buf = appendParts(a.buf[:0], at, parts)
	// One write, at an explicit offset: a record is never split across
	// calls, and a failed write (ENOSPC) is overwritten by the next.
	if _, err := a.f.WriteAt(a.buf, a.size); err != nil {
		a.f.Truncate(a.size)
		return pos{}, 0, fmt.Errorf("queue: %w", err)
	}
	a.size += size
	return at, size, nil
}

// roll closes the segment appended to and starts the next.
func (a *appender) roll() error {
	old := a.f
	if a.sync {
		if err := old.Sync(); err != nil {
			a.syncErr = err
			return fmt.Errorf("queue: %w", err)
		}
	}
	f, err := createSegment(a.dir, a.seq+1, a.sync)
	if err != nil {
		return err
	}
	a.f, a.seq, a.size = f, a.seq+1, 0
	if a.sync {
		a.synced = a.end()
	}
	if a.syncing != old { // else the Queue closes it when its fsync is done
		old.Close()
	}
	return nil
}

// createSegment creates the segment seq, empty, for appending.
func createSegment(dir string, seq uint64, sync bool) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, segName(seq)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if sync {
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	return f, nil
}
