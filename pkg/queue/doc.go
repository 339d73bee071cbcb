// Package queue is a bounded, durable FIFO of records on disk, so exports
// accepted while the upstream is down survive a restart or a SIGKILL.
//
// One consumer delivers in order: [Queue.Next] returns the oldest record not
// yet acknowledged, the same one again until [Queue.Ack] is called for it, so
// a failed delivery is retried by calling Next again. Delivery is
// at-least-once: after a crash the record that was in flight (handed out,
// delivered, not yet acknowledged) is handed out again; no other record is
// repeated and no appended record is lost.
//
// # On disk
//
// A directory holds segment files named by sequence number
// (00000000000000000001.seg, ...), appended to in order and rolled once
// SegmentBytes is reached. A segment is a series of records, each
//
//	length  uint32, little endian: payload bytes
//	crc     uint32, little endian: CRC-32C (Castagnoli) of length and payload
//	payload
//
// The CRC covers the length, so a torn write, a corrupted length or a run of
// zeros (what a file system may show after a power loss) is never taken for
// a record. Segments entirely acknowledged are deleted, so a missing segment
// counts as acknowledged. The position of the oldest unacknowledged record
// is in the file "ack": two slots, at offsets 0 and 512, each holding
//
//	segment uint64, offset uint64, generation uint64, CRC-32C of the three
//
// written in turn in place; the valid slot of the higher generation is the
// position. A "LOCK" file, locked while the queue is open, keeps a second
// queue out of the directory.
//
// Open replays the segments, checks every record and truncates each segment
// after its last good one: a record cut short by a crash, or garbage after
// it, is dropped, and Open succeeds.
//
// # Durability
//
// With Config.Sync off, Append returns once the record is in the operating
// system's page cache (one write call, no user-space buffer): it survives the
// process being killed, but not a power loss or a kernel crash. With Sync
// on, Append returns once the record is on stable storage; concurrent
// appends share an fsync (group commit).
package queue
