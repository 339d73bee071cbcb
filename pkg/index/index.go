package index

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
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
	// added is evicted first. Zero means DefaultMaxEntries.
	MaxEntries int
	// MaxAge is how long an entry stays resolvable after it was added.
	// Zero means DefaultMaxAge.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("index: MaxEntries must be positive, got %d", c.MaxEntries))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("index: MaxAge must be positive, got %s", c.MaxAge))
	}
	return errors.Join(errs...)
}

// Index maps response ids to spans, bounded by count and by age. It is safe
// for concurrent use.
//
// Lookups do not refresh an entry: a response is as old as its span, however
// often feedback asks for it. So the LRU order is the order of Add, and the
// oldest entries are also the first to expire.
type Index struct {
	cfg     Config
	metrics *Metrics

	mu  sync.Mutex
	lru *simplelru.LRU[string, Span]
	// evictReason is read by the eviction callback, which runs under mu.
	evictReason string
	// store, when set, is told every change, in order; changes holds those
	// made under mu and not yet written (see Restore).
	store   Store
	changes []Change
	// storeMu is held while changes are written: one write at a time, each
	// taking every change queued, so the file sees them in memory's order.
	storeMu sync.Mutex
}

// New returns an empty index. metrics may be nil.
func New(cfg Config, metrics *Metrics) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	ix := &Index{cfg: cfg, metrics: metrics}
	lru, err := simplelru.NewLRU(cfg.MaxEntries, ix.onEvict)
	if err != nil {
		return nil, err
	}
	ix.lru = lru
	if metrics != nil {
		metrics.observe(ix)
	}
	return ix, nil
}

func (ix *Index) onEvict(responseID string, _ Span) {
	if ix.metrics != nil && ix.evictReason != "" {
		ix.metrics.evictions.WithLabelValues(ix.evictReason).Inc()
	}
	if ix.store != nil {
		ix.changes = append(ix.changes, Change{Entry: Entry{ResponseID: responseID}, Removed: true})
	}
}

// Add indexes entries and returns those that now resolve to a new span: an
// entry whose response id already points at an inner span of the same trace
// is ignored, so an outer span that copied the id never takes over.
func (ix *Index) Add(entries []Entry) []Entry {
	if len(entries) == 0 {
		return nil
	}
	now := ix.cfg.Now()
	added := entries[:0:0]
	ix.mu.Lock()
	ix.expireLocked(now)
	for _, e := range entries {
		if old, ok := ix.lru.Peek(e.ResponseID); ok && !ix.expired(old, now) {
			if old.SpanID == e.Span.SpanID || !innerThan(e.Span, old, nil) {
				continue
			}
		}
		e.Span.Seen = now
		ix.evictReason = "capacity"
		ix.lru.Add(e.ResponseID, e.Span)
		ix.evictReason = ""
		if ix.store != nil {
			ix.changes = append(ix.changes, Change{Entry: e})
		}
		added = append(added, e)
	}
	ix.unlockAndWrite()
	return added
}

// Lookup returns the span that produced responseID.
func (ix *Index) Lookup(responseID string) (Span, bool) {
	now := ix.cfg.Now()
	ix.mu.Lock()
	s, ok := ix.lru.Peek(responseID)
	if ok && ix.expired(s, now) {
		ix.evictReason = "age"
		ix.lru.Remove(responseID)
		ix.evictReason = ""
		ok = false
	}
	ix.mu.Unlock()
	if ix.metrics != nil {
		if ok {
			ix.metrics.hits.Inc()
		} else {
			ix.metrics.misses.Inc()
		}
	}
	return s, ok
}

// Len returns the number of entries, including any that expired but were
// not yet swept.
func (ix *Index) Len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.lru.Len()
}

// Cap returns the maximum number of entries.
func (ix *Index) Cap() int { return ix.cfg.MaxEntries }

func (ix *Index) expired(s Span, now time.Time) bool {
	return now.Sub(s.Seen) >= ix.cfg.MaxAge
}

// expireLocked removes expired entries from the old end of the LRU. Since
// the order is the order of Add, it stops at the first live entry, so the
// cost is paid once per expired entry.
func (ix *Index) expireLocked(now time.Time) {
	ix.evictReason = "age"
	defer func() { ix.evictReason = "" }()
	for {
		_, s, ok := ix.lru.GetOldest()
		if !ok || !ix.expired(s, now) {
			return
		}
		ix.lru.RemoveOldest()
	}
}
