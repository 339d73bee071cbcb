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
package store
