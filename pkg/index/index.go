package index

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Span identifies the span that produced a response.
type Span struct {
	TraceID  pcommon.TraceID
	SpanID   pcommon.SpanID
	ParentID pcommon.SpanID
	// Project is the Phoenix project the span was exported to.
	Project string
	// Name is the span's name, e.g. "ChatCompletion" or "chat gpt-4o".
	Name string
	// Start is the span's start time, used to tell an inner span from an
	// outer one that carries the same response id.
	Start pcommon.Timestamp
	// Seen is when the proxy indexed the span (set by Index.Add).
	Seen time.Time
}

// Entry is one response id and the span that produced it.
type Entry struct {
	ResponseID string
	Span       Span
}

// Defaults for Config.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxAge     = 24 * time.Hour
)

// Config bounds an Index.
type Config struct {
	// MaxEntries is the number of response ids kept; the least recently
	// added is evicted first. Zero means DefaultMaxEntries. An entry
	// replaced by an inner span keeps its place until the oldest entries
	// reach it, so after replacements the index holds a few less.
	MaxEntries int
	// MaxAge is how long an entry stays resolvable after it was added.
	// Zero means DefaultMaxAge.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// StoreDelay is how long a change may wait to be written to the Store
	// (see Restore), so that the Adds within it share one transaction.
	// Zero writes an Add's changes before it returns.
	StoreDelay time.Duration
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("index: MaxEntries must be positive, got %d", c.MaxEntries))
	}
	if c.MaxEntries > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("index: MaxEntries must be at most %d, got %d", math.MaxInt32, c.MaxEntries))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("index: MaxAge must be positive, got %s", c.MaxAge))
	}
	if c.StoreDelay < 0 {
		errs = append(errs, fmt.Errorf("index: StoreDelay must be zero or positive, got %s", c.StoreDelay))
	}
	return errors.Join(errs...)
}

// Index maps response ids to spans, bounded by count and by age. It is safe
// for concurrent use.
//
// Lookups do not refresh an entry: a response is as old as its span, however
// often feedback asks for it. So the entries are kept in the order of Add, a
// FIFO: the oldest entries are the first evicted when the index is full, and
// also the first to expire.
//
// The FIFO is a ring of fixed-size records without pointers (see fifo.go)
// rather than golang-lru's simplelru, for memory: a million responses (half
// "chatcmpl-" ids of 38 bytes, half "resp_" ids of 53) take 116 B each of
// live heap, against 306 B in simplelru with the Span as it is, and still
// 240 B with a 56-byte pointer-free value: simplelru's list element alone
// is 144 B (three pointers, the key's string header, and an expiry time
// the simple LRU never sets), the key's bytes and the map the rest.
// BenchmarkIndexMemory measures it; bench_test.go has the numbers.
type Index struct {
	cfg     Config
	metrics *Metrics

	mu      sync.Mutex
	entries fifo
	// store, when set, is told every change, in order; changes holds those
	// made under mu and not yet written (see Restore).
	store   Store
	changes []Change
	// flush is armed (under mu) while changes wait for StoreDelay.
	flush *time.Timer
	// storeMu is held while changes are written: one write at a time, each
	// taking every change queued, so the file sees them in memory's order.
	storeMu sync.Mutex
}

// Eviction reasons, the label of feedbackproxy_index_evictions_total.
const (
	reasonCapacity = "capacity"
	reasonAge      = "age"
)

// New returns an empty index. metrics may be nil: the index then counts
// into metrics registered nowhere.
func New(cfg Config, metrics *Metrics) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	ix := &Index{cfg: cfg, metrics: metrics, entries: newFIFO(cfg.MaxEntries)}
	metrics.observe(ix)
	return ix, nil
}

// Add indexes entries and returns those that now resolve to a new span: an
// entry whose response id already points at an inner span of the same trace
// is ignored, so an outer span that copied the id never takes over.
func (ix *Index) Add(entries []Entry) []Entry {
	if len(entries) == 0 {
		return nil
	}
	now := ix.cfg.Now()
	seen := now.UnixNano()
	var added []Entry
	ix.mu.Lock()
	ix.expireLocked(seen)
	for i, e := range entries {
		h := ix.entries.hash(e.ResponseID)
		if slot, ok := ix.entries.find(h, e.ResponseID); ok {
			old := ix.entries.span(slot)
			if !ix.expired(ix.entries.rec(slot).seen, seen) && (old.SpanID == e.Span.SpanID || !InnerThan(e.Span, old, nil)) {
				continue
			}
			// Replaced: the id stays, so this is no eviction, and the
			// store overwrites it.
			ix.entries.unlink(slot)
		}
		if ix.entries.full() {
			ix.evictOldest(reasonCapacity)
		}
		e.Span.Seen = now
		e.Span.Project, e.Span.Name = cutName(e.Span.Project), cutName(e.Span.Name)
		ix.entries.push(h, e.ResponseID, e.Span, seen)
		if ix.store != nil {
			ix.changes = append(ix.changes, Change{Entry: e})
		}
		if added == nil {
			added = make([]Entry, 0, len(entries)-i)
		}
		added = append(added, e)
	}
	ix.unlockAndWrite()
	return added
}

// MaxNameLen is the most the index keeps of a span's name and of its
// project's: enough for any real one, and what keeps the memory of an entry
// bounded when a span's name is a whole document. Longer ones are cut (at a
// character boundary); annotations go by span id, so only what GET
// /feedback shows is shortened.
const MaxNameLen = 256

func cutName(s string) string {
	if len(s) <= MaxNameLen {
		return s
	}
	i := MaxNameLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	// A copy: s[:i] would keep the whole name alive wherever the cut one
	// is held (a change waiting for StoreDelay, the index's own copy).
	return strings.Clone(s[:i])
}

// Lookup returns the span that produced responseID.
func (ix *Index) Lookup(responseID string) (Span, bool) {
	now := ix.cfg.Now().UnixNano()
	h := ix.entries.hash(responseID)
	var s Span
	ix.mu.Lock()
	slot, ok := ix.entries.find(h, responseID)
	if ok {
		if ix.expired(ix.entries.rec(slot).seen, now) {
			ix.evict(slot, reasonAge)
			ok = false
		} else {
			s = ix.entries.span(slot)
		}
	}
	ix.mu.Unlock()
	if ok {
		ix.metrics.hits.Inc()
	} else {
		ix.metrics.misses.Inc()
	}
	return s, ok
}

// Len returns the number of entries, including any that expired but were
// not yet swept.
func (ix *Index) Len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.entries.live
}

// Cap returns the maximum number of entries.
func (ix *Index) Cap() int { return ix.cfg.MaxEntries }

// expired reports whether an entry seen at seen is past MaxAge at now, both
// in Unix nanoseconds.
func (ix *Index) expired(seen, now int64) bool {
	return now-seen >= int64(ix.cfg.MaxAge)
}

// expireLocked removes expired entries from the old end of the FIFO. It
// stops at the first live entry that has not expired, so the cost is paid
// once per expired entry.
func (ix *Index) expireLocked(now int64) {
	for ix.entries.used > 0 {
		if r := ix.entries.rec(ix.entries.head); r.flags&live != 0 && !ix.expired(r.seen, now) {
			return
		}
		ix.evictOldest(reasonAge)
	}
}

// evictOldest removes the oldest slot of the FIFO, counting it as an
// eviction for reason if it held a live entry.
func (ix *Index) evictOldest(reason string) {
	ix.evict(ix.entries.head, reason)
	ix.entries.popOldest()
}

// evict removes the entry in slot, if it is live, counts it and tells the
// store.
func (ix *Index) evict(slot uint32, reason string) {
	if ix.entries.rec(slot).flags&live == 0 {
		return
	}
	ix.metrics.evictions.WithLabelValues(reason).Inc()
	if ix.store != nil {
		ix.changes = append(ix.changes, Change{Entry: Entry{ResponseID: ix.entries.responseID(slot)}, Removed: true})
	}
	ix.entries.unlink(slot)
}
