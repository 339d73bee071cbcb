// Package store keeps the proxy's state in its data directory, so that a
// restart, even a SIGKILL, loses no accepted feedback and no indexed span.
//
// # On disk
//
// One file, state.db in the data directory, a bbolt database (a B+tree in a
// memory-mapped file, copy-on-write: a transaction is either entirely in the
// file or not at all, also after a crash). A second process opening the same
// directory waits for the file's lock and then fails. Buckets:
//
//	meta      "format" -> "1"
//	feedback  key(response id, name, identifier) -> JSON {"v":1,"feedback":{...},"received":...,"deadline":...}
//	index     response id -> binary span (see encodeSpan)
//
// A feedback key is each of its three strings as a uvarint length and the
// bytes. The feedback is the normalized POST /feedback object, so the file
// reads as the API does. The feedback bucket holds the pending feedbacks
// only; the index bucket holds exactly what the index does (evicted entries
// are deleted in the transaction of the Add that evicted them), so the file
// stays bounded by the two limits (bbolt reuses freed pages; it does not
// shrink the file).
//
// # Durability
//
// Without Options.Sync (the default) bbolt does not fsync: a transaction is
// in the page cache when it returns, which outlives the process, so a
// SIGKILL or a crash of the proxy loses nothing; a power loss or kernel
// crash may lose the last transactions, or leave the file unreadable (bbolt
// orders its writes with fsync). With Sync every transaction is on stable
// storage when it returns, at the price of one fsync per POST /feedback and
// per export with an LLM span (see BenchmarkIndexAddStore in pkg/index).
//
// # Damage
//
// A damaged file (a disk error, a power loss without Sync, a copy cut
// short) must neither stop the proxy nor be emptied without a word. bbolt
// cannot be trusted with one: it follows the file's page ids through a
// memory map, so a damaged page panics or faults (SIGBUS past the end of a
// truncated file), some of it in bbolt's own goroutines where no recover
// reaches. So Open first reads the file itself, with ReadAt (scan.go): both
// meta pages, then every page reachable from the newest one, checked as
// bbolt's Tx.Check and its free-page scan would, plus what bbolt would only
// trip over during a later write, plus every record decoding. Only a file
// that passes goes to bbolt (and even then bbolt runs with panics and
// faults recovered). On 100,000 index entries this costs about 10 ms, as
// much as bbolt's own Open (BenchmarkScan100k, BenchmarkBoltOpen100k).
//
// A file that fails (or an empty one: bbolt writes a new file's first pages
// before Open returns, so an empty state.db was cut short) is replaced:
//
//   - every record still readable is written to state.db.salvage: the same
//     walk goes on past a bad page, so a damaged page costs the records on
//     it (or under it, for a branch page), not the rest of the bucket;
//   - the damaged file gets a name of its own beside it,
//     state.db.damaged-<UTC time, 20060102T150405Z>, and stays there;
//   - state.db.salvage is renamed to state.db.
//
// Where a part of the tree cannot be read, its records are looked for in
// the pages outside the tree, older copies that bbolt freed but has not
// reused yet (copy on write puts the newest pages, the root among them, at
// the end of the file, so a file cut short loses every path down while
// most leaves remain). Only keys in the lost part's key range are taken,
// and only those the tree does not have; such a record may be outdated or
// deleted since (an index entry evicted, a feedback already written to
// Phoenix, which is then written again as the same annotation), and two
// copies of a feedback that differ are both dropped.
//
// Open then returns the store with a Recovery (also logged at ERROR): the
// damaged file's new name, why, the records salvaged (and how many of them
// from older copies), those found but unreadable (lost for certain), and
// whether more may be lost (a page, a meta page or the end of the file
// unreadable: how many records were on it is unknown). A crash during all
// this finds the damaged file again at the next start.
//
// What is not detected: bbolt has no checksum on data pages and the records
// have none, so a byte changed inside a value that still decodes (a digit
// of a score, a byte of a trace id) reads back changed. A feedback's key is
// checked against its record, and key order against the tree. If both meta
// pages are damaged, nothing is salvaged: without a root no key range is
// known, and reading every free page would bring back what was deleted.
package store
