// Package queue is a bounded, durable FIFO of records on disk, so exports
// accepted while the upstream is down survive a restart or a SIGKILL.
//
// One consumer delivers in order: [Queue.Next] returns the oldest record not
// yet acknowledged, the same one again until [Queue.Ack] is called for it, so
// a failed delivery is retried by calling Next again. Delivery is
// at-least-once: after a crash the record that was in flight (handed out,
// delivered, not yet acknowledged) is handed out again; no other record is
// repeated and no appended record is lost, unless the disk damages it: then
// that record, and only that one, is skipped and reported (see Damage).
//
// # On disk
//
// A directory holds segment files named by sequence number
// (00000000000000000001.seg2, ...), appended to in order and rolled once
// SegmentBytes is reached. A segment is a series of records, each
//
//	magic   9e 51 7c e3
//	length  uint32, little endian: payload bytes
//	crc     uint32, little endian: CRC-32C (Castagnoli) of the payload
//	hcrc    uint32, little endian: CRC-32C of the 12 bytes before it, then
//	        of the segment's sequence and the record's offset in it
//	        (uint64, little endian, each)
//	payload
//
// The header checksum vouches for the length, so a damaged payload costs
// exactly its record, and a run of zeros (what a file system may show after
// a power loss) is never taken for one. The magic lets a scan find the next
// record after a damaged header; binding the header to its place means a
// record-shaped run of bytes found elsewhere (inside a payload, a stale
// block) is never taken for a record. Segments entirely acknowledged are
// deleted, so a missing segment counts as acknowledged. The position of the
// oldest unacknowledged record is in the file "ack": two slots, at offsets
// 0 and 512, each holding
//
//	segment uint64, offset uint64, generation uint64, CRC-32C of the three
//
// written in turn in place; the valid slot of the higher generation is the
// position. A "LOCK" file, locked while the queue is open, keeps a second
// queue out of the directory.
//
// # Format versions
//
// The suffix of a segment's name gives its format, so no damage to its
// contents can change how it is read. ".seg2" is the format above, the
// only one written. ".seg" is the legacy format, written before it, whose
// records are
//
//	length  uint32, little endian: payload bytes
//	crc     uint32, little endian: CRC-32C of length and payload
//	payload
//
// Legacy segments are still read, so a proxy upgraded with exports queued
// delivers them: Open appends to a new ".seg2" segment after them, and the
// legacy ones are deleted once consumed. Ack positions are the same in both.
// A version older than the ".seg2" format ignores ".seg2" files: downgrading
// with records queued is not supported. testdata/ pins both formats with
// golden directories.
//
// # Damage
//
// Open scans every segment not yet acknowledged. Bytes that do not frame as
// an intact record form a hole, which ends at the next intact record: a
// record whose header is intact but whose payload is not is a hole of
// exactly its size; after a damaged header the scan looks for the next
// magic (bytes.Index) whose header is intact and names that place. A scan
// therefore costs time linear in the segment: about 1 ms for 8 MiB, damaged
// or not, and 45 ms for 8 MiB of payloads made of nothing but the magic
// with every header damaged (BenchmarkScan). In legacy segments, where
// nothing but a record's checksum vouches for its length, the scan tries
// the offsets after the damage, checksumming first only candidates whose
// lengths chain on through the following records, and bounds its work
// (1 to 5 ms for damage near the start of 8 MiB, 120 ms at worst); past
// that bound the rest of the segment may be lost, and is reported.
//
// Holes are skipped, never delivered, and reported: each is logged (segment,
// offset, bytes), passed to Config.OnCorrupt as a [Corruption] and counted
// in [Queue.CorruptBytes]. Only at the end of the newest segment, where
// appends continue, damage with no intact record after it is cut off (a
// torn append, reported as TornTail). Next checks each record again as it
// reads it; if the disk changed one since Open, Next scans the rest of that
// segment the same way, reports the new damage, and returns the next intact
// record: it never returns a damaged one, nor ErrCorrupt. Once the consumer
// is past a hole, the ack position is past it too, so a restart does not
// report it again; a hole not yet reached is reported by each Open.
//
// If neither slot of the ack file holds a valid position, every record on
// disk is delivered again (at-least-once), and an AckLost Corruption says
// so. A damaged slot alone costs at most the last acknowledgement, as a
// write torn by a power loss does.
//
// The checks cannot see a segment other than the newest cut at a record
// boundary (without Config.Sync a power loss can do that to a segment
// rolled shortly before, as a roll does not flush it): the records lost with
// its end are not reported.
//
// # Durability
//
// With Config.Sync off, Append returns once the record is in the operating
// system's page cache (one write call, no user-space buffer): it survives the
// process being killed, but not a power loss or a kernel crash. With Sync
// on, Append returns once the record is on stable storage; concurrent
// appends share an fsync (group commit).
package queue
