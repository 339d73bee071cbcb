package queue

import "log/slog"

// Corruption is damage the queue found on disk and went past: records it
// will not deliver, or an acknowledged position it lost. Config.OnCorrupt
// receives one for each; Queue.CorruptBytes sums their Bytes.
type Corruption struct {
	Kind CorruptionKind
	// File is the path of the segment (or, for AckLost, of the ack file).
	File string
	// Offset is where the skipped bytes start in File.
	Offset int64
	// Bytes is how many bytes were skipped: the damaged records with their
	// headers, or bytes that do not frame as records. How many records they
	// held cannot be told once their framing is damaged. Zero for AckLost.
	Bytes int64
}

// CorruptionKind says what a Corruption cost.
type CorruptionKind uint8

const (
	// CorruptRecords is a range of a segment, followed by an intact record
	// or by the end of a segment that is not the newest, that does not
	// frame as intact records: what it held is lost.
	CorruptRecords CorruptionKind = iota + 1
	// TornTail is the end of the newest segment, after its last intact
	// record, found by Open and cut off (a legacy segment, no longer
	// appended to, is left as it is): usually an append a crash cut short
	// (never reported to its caller as done), but without Config.Sync a
	// power loss can also damage records Append had accepted.
	TornTail
	// AckLost is an ack file with no readable position (both slots
	// damaged, or the file gone while records are queued): every record
	// on disk is delivered again, including those already acknowledged.
	AckLost
)

// String returns a name fit for a metric label.
func (k CorruptionKind) String() string {
	switch k {
	case CorruptRecords:
		return "records"
	case TornTail:
		return "torn_tail"
	case AckLost:
		return "ack_lost"
	}
	return "unknown"
}

// logCorruption logs c at the level its cost deserves: lost records are an
// error, a torn append or a repeated delivery a warning.
func logCorruption(log *slog.Logger, c Corruption) {
	switch c.Kind {
	case AckLost:
		log.Warn("queue: ack position lost; delivering every record again", "file", c.File)
	case TornTail:
		log.Warn("queue: cut off a torn or damaged end of the newest segment",
			"segment", c.File, "offset", c.Offset, "bytes", c.Bytes)
	default:
		log.Error("queue: skipped damaged records",
			"segment", c.File, "offset", c.Offset, "bytes", c.Bytes)
	}
}
