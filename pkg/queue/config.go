package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
)

// Defaults for Config.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultSegmentBytes = 8 << 20
)

// Config says where the queue lives and how much it may hold.
type Config struct {
	// Dir is the directory of the queue, created if missing. Required; one
	// queue per directory.
	Dir string
	// MaxBytes is the budget of unacknowledged records on disk, counting
	// each record's header (16 bytes; 8 in legacy segments). An Append
	// beyond it fails with ErrFull. The directory may use up to one
	// segment more: acknowledged records, and damaged ones skipped, are
	// removed a whole segment at a time. Zero means DefaultMaxBytes.
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed and the next
	// one started; a record larger than that gets a segment of its own.
	// Zero means DefaultSegmentBytes.
	SegmentBytes int64
	// Sync makes Append, Ack and Close wait for the disk (fsync). Off, a
	// SIGKILL loses nothing (the page cache outlives the process); only a
	// power loss or kernel crash can lose the last records, or the last
	// acknowledgements (which are then delivered again).
	Sync bool
	// Logger reports what Open had to discard, and damage found later;
	// nil means no logging.
	Logger *slog.Logger
	// OnCorrupt, if not nil, is called for each damage the queue finds and
	// goes past (see Corruption), after it is logged: by Open, before it
	// returns, for what recovery found, and by Next for damage that appears
	// while the queue is open. It is never called concurrently with itself
	// (Next has one consumer) nor with the queue's lock held, so it may call
	// Len or Bytes; it should return quickly, Next waits for it.
	OnCorrupt func(Corruption)
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("queue: dir is required"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("queue: max bytes must be positive, got %d", c.MaxBytes))
	}
	if c.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("queue: segment bytes must be positive, got %d", c.SegmentBytes))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// maxRecord is the largest payload Append takes: the length field's limit,
// or the budget.
func (c Config) maxRecord() int64 {
	return min(c.MaxBytes-headerLen, math.MaxUint32)
}
