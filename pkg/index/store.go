package index

import (
	"errors"
	"slices"
	"time"
)

// Why the index is persisted rather than rebuilt by asking Phoenix: after a
// restart, feedback for a response whose span went through the proxy before
// it must still resolve. Phoenix could only answer "which span has this
// response id" through its GraphQL span filter DSL, once per project (the
// REST span query, GET /v1/projects/{project}/spans, filters by trace id,
// span id and name, never by attribute), and for OpenInference spans the id
// is not even an attribute but a key inside the JSON of output.value. That
// is a query per feedback per project against Phoenix's database, which may
// be down just when the proxy restarts. Writing the index to the data
// directory instead costs, per Add into a full index of 10,000 (so each Add
// also deletes what it evicts), BenchmarkIndexAddStore on 2 vCPUs with ext4
// on a virtual disk, best and median of 5 runs on a busy host:
//
//	batch of         memory          bbolt NoSync (default)   bbolt Sync (--data-sync)
//	1                0.4 / 0.5 µs    46 / 53 µs               2.7 / 3.7 ms
//	100              137 / 243 µs    0.35 / 0.68 ms           2.5 / 3.8 ms
//	1, 8 at once     1.5 / 9.5 µs    54 / 573 µs              1.2 / 2.3 ms (writes grouped)
//
// NoSync is small beside the export to Phoenix that precedes every Add on
// the span path (a network round trip), and the index then resolves with no
// Phoenix at all; Sync costs an fsync pair per Add, shared by the Adds that
// wait for it.

// Change is one change to the index, as it is written to a Store: an entry
// added (or replaced by an inner span), or a response id removed.
type Change struct {
	Entry
	// Removed: the response id left the index (capacity or age); Entry.Span
	// is then zero.
	Removed bool
}

// Store keeps the index across restarts; *store.Store is one.
type Store interface {
	// WriteIndex applies changes in order, in one transaction: all or none.
	WriteIndex(changes []Change) error
	// LoadIndex returns every entry kept, each with its Span.Seen.
	LoadIndex() ([]Entry, error)
}

// Restore loads the entries st kept, oldest Seen first, and from then on
// writes every change to st: each Add is one transaction holding its
// entries and the removal of those it evicted, so st holds no more than the
// index does (entries removed by Lookup because of their age are removed
// from st by the next Add). Entries past MaxAge are not loaded and are
// removed from st. Call it once, before the first Add; it returns the
// number of entries loaded.
//
// An entry keeps its Seen time, so it expires when it would have without
// the restart, and its trace, parent and start, so an outer span seen after
// the restart still does not take over from its inner LLM span.
func (ix *Index) Restore(st Store) (int, error) {
	entries, err := st.LoadIndex()
	if err != nil {
		return 0, err
	}
	// Add order is Seen order, and expireLocked relies on it.
	slices.SortStableFunc(entries, func(a, b Entry) int { return a.Span.Seen.Compare(b.Span.Seen) })
	now := ix.cfg.Now().UnixNano()
	ix.mu.Lock()
	if ix.store != nil {
		ix.mu.Unlock()
		return 0, errors.New("index: Restore called twice")
	}
	ix.store = st
	ix.metrics.observeStore()
	for _, e := range entries {
		seen := e.Span.Seen.UnixNano()
		if ix.expired(seen, now) {
			ix.changes = append(ix.changes, Change{Entry: Entry{ResponseID: e.ResponseID}, Removed: true})
			continue
		}
		h := ix.entries.hash(e.ResponseID)
		if _, ok := ix.entries.find(h, e.ResponseID); ok {
			continue // added since: newer than what was kept
		}
		if ix.entries.full() {
			ix.evictOldest(reasonCapacity)
		}
		// Written by a version that kept names whole, maybe.
		e.Span.Project, e.Span.Name = cutName(e.Span.Project), cutName(e.Span.Name)
		ix.entries.push(h, e.ResponseID, e.Span, seen)
	}
	n := ix.entries.live
	ix.unlockAndWrite()
	return n, nil
}

// maxDelayedChanges bounds the changes that wait for StoreDelay: past it,
// an Add writes them before it returns, so a store slower than the Adds
// holds them back rather than memory growing.
const maxDelayedChanges = 8192

// unlockAndWrite releases mu and has the changes made under it written:
// before it returns, or with StoreDelay within that delay. Changes queue
// up under mu, in the order memory saw them, and whoever holds storeMu
// writes all that are queued in one transaction: Adds that come while a
// write is on the disk are written together by the next one (a group
// commit, which matters with fsync), and Lookups never wait for the disk.
//
// Why a delay: a transaction per Add was the largest single cost of an
// export once it was received (12-29% of the proxy's CPU under a steady
// load in bench/results, bbolt's commit most of it); with 100 ms, the
// Adds of 100 ms share one. What it risks: a crash (not a Shutdown, which
// flushes) forgets the entries of the last StoreDelay, whose feedback
// then resolves through the Phoenix lookup (pkg/seek) as any entry lost
// with the data directory does.
//
// A failed write is counted (feedbackproxy_index_store_errors_total) and
// otherwise ignored: the index in memory is right, only a restart would
// forget the entries; the removals it missed are made by the next Restore,
// which drops what is past MaxAge or over MaxEntries.
func (ix *Index) unlockAndWrite() {
	if ix.store == nil || len(ix.changes) == 0 {
		ix.mu.Unlock()
		return
	}
	if d := ix.cfg.StoreDelay; d > 0 && len(ix.changes) < maxDelayedChanges {
		if ix.flush == nil {
			ix.flush = time.AfterFunc(d, ix.Flush)
		}
		ix.mu.Unlock()
		return
	}
	ix.mu.Unlock()
	ix.Flush()
}

// CloseStore writes the changes not yet written and detaches the store:
// from then on the index keeps its entries in memory only, so an Add that
// comes late (an export still being handled when a shutdown gave up
// waiting for it) does not write to a closed store. Call it before closing
// the store.
func (ix *Index) CloseStore() {
	ix.Flush()
	ix.storeMu.Lock()
	defer ix.storeMu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if len(ix.changes) > 0 && ix.store != nil {
		// Made between the Flush and the locks above.
		if err := ix.store.WriteIndex(ix.changes); err != nil {
			ix.metrics.storeErrors.Inc()
		}
	}
	ix.store, ix.changes = nil, nil
	if ix.flush != nil {
		ix.flush.Stop()
		ix.flush = nil
	}
}

// Flush writes the changes not yet written to the store, in one
// transaction: with StoreDelay, changes may be waiting.
func (ix *Index) Flush() {
	ix.storeMu.Lock()
	defer ix.storeMu.Unlock()
	ix.mu.Lock()
	st, changes := ix.store, ix.changes
	ix.changes = nil
	if ix.flush != nil {
		ix.flush.Stop()
		ix.flush = nil
	}
	ix.mu.Unlock()
	if st == nil || len(changes) == 0 {
		return // written by the Flush before this one
	}
	if err := st.WriteIndex(changes); err != nil {
		ix.metrics.storeErrors.Inc()
	}
}
