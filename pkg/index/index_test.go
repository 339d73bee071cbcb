package index

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var traceA = pcommon.TraceID{0xa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

func sid(b byte) pcommon.SpanID { return pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, b} }

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func entry(id string, span byte, parent byte, start int) Entry {
	return Entry{ResponseID: id, Span: Span{TraceID: traceA, SpanID: sid(span), ParentID: sid(parent), Start: pcommon.Timestamp(start)}}
}

func TestIndex(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	reg := prometheus.NewPedanticRegistry()
	ix, err := New(Config{MaxEntries: 2, MaxAge: time.Hour, Now: clk.now}, NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}

	if got := ix.Add([]Entry{entry("a", 1, 0, 1), entry("b", 2, 0, 1)}); len(got) != 2 {
		t.Fatalf("Add returned %d entries, want 2", len(got))
	}
	if s, ok := ix.Lookup("a"); !ok || s.SpanID != sid(1) || !s.Seen.Equal(clk.t) {
		t.Fatalf("Lookup(a) = %+v, %v", s, ok)
	}
	if _, ok := ix.Lookup("nope"); ok {
		t.Fatal("Lookup(nope) hit")
	}

	// Capacity: the least recently added goes first; lookups do not refresh.
	ix.Add([]Entry{entry("c", 3, 0, 1)})
	if _, ok := ix.Lookup("a"); ok {
		t.Error("a survived eviction although it was added first")
	}
	if ix.Len() != 2 {
		t.Errorf("Len = %d, want 2", ix.Len())
	}

	// Age: entries older than MaxAge do not resolve, and are swept on Add.
	clk.advance(30 * time.Minute)
	ix.Add([]Entry{entry("d", 4, 0, 1)})
	clk.advance(31 * time.Minute)
	if _, ok := ix.Lookup("c"); ok {
		t.Error("c resolves after its maximum age")
	}
	if _, ok := ix.Lookup("d"); !ok {
		t.Error("d does not resolve before its maximum age")
	}

	want := `
# HELP feedbackproxy_index_capacity Maximum number of response ids the index keeps.
# TYPE feedbackproxy_index_capacity gauge
feedbackproxy_index_capacity 2
# HELP feedbackproxy_index_entries Response ids currently indexed.
# TYPE feedbackproxy_index_entries gauge
feedbackproxy_index_entries 1
# HELP feedbackproxy_index_evictions_total Entries removed from the index, by reason: capacity (LRU full) or age (older than the maximum age).
# TYPE feedbackproxy_index_evictions_total counter
feedbackproxy_index_evictions_total{reason="age"} 1
feedbackproxy_index_evictions_total{reason="capacity"} 2
# HELP feedbackproxy_index_lookups_total Response-id lookups, by result: hit or miss.
# TYPE feedbackproxy_index_lookups_total counter
feedbackproxy_index_lookups_total{result="hit"} 2
feedbackproxy_index_lookups_total{result="miss"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestIndexKeepsInnermostAcrossExports(t *testing.T) {
	ix, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The LLM span ends first, so it usually arrives in an earlier export
	// than the handler span around it.
	ix.Add([]Entry{entry("chatcmpl-1", 2, 1, 10)})
	if got := ix.Add([]Entry{entry("chatcmpl-1", 1, 0, 5)}); len(got) != 0 {
		t.Errorf("the parent replaced its child: %+v", got)
	}
	// A child arriving after its parent takes over.
	ix.Add([]Entry{entry("chatcmpl-2", 1, 0, 5)})
	ix.Add([]Entry{entry("chatcmpl-2", 2, 1, 10)})
	// The same span again (an exporter retry) is not news.
	if got := ix.Add([]Entry{entry("chatcmpl-2", 2, 1, 10)}); len(got) != 0 {
		t.Errorf("a re-sent span was reported as new: %+v", got)
	}
	for _, id := range []string{"chatcmpl-1", "chatcmpl-2"} {
		if s, _ := ix.Lookup(id); s.SpanID != sid(2) {
			t.Errorf("%s -> span %v, want the inner span %v", id, s.SpanID, sid(2))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{MaxEntries: -1, MaxAge: -time.Second}, nil); err == nil ||
		!strings.Contains(err.Error(), "MaxEntries") || !strings.Contains(err.Error(), "MaxAge") {
		t.Errorf("New with negative bounds: err = %v, want both fields named", err)
	}
}

// Names are kept cut to MaxNameLen, at a character boundary: an entry's
// memory does not grow with a span whose name is a whole document.
func TestIndexCutsLongNames(t *testing.T) {
	ix, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 10_000)                                 // two bytes each: the cut falls inside one
	for i, id := range []string{"short-id", strings.Repeat("x", 200)} { // interned, spilled
		e := entry(id, byte(i+1), 0, 1)
		e.Span.Name, e.Span.Project = "x"+long, long
		added := ix.Add([]Entry{e})
		s, ok := ix.Lookup(id)
		if !ok {
			t.Fatalf("%s: not indexed", id)
		}
		for _, got := range []string{s.Name, s.Project, added[0].Span.Name} {
			if len(got) > MaxNameLen || len(got) < MaxNameLen-1 || !utf8.ValidString(got) {
				t.Errorf("%s: kept a name of %d bytes (valid UTF-8: %v); want %d at most, cut at a character", id, len(got), utf8.ValidString(got), MaxNameLen)
			}
		}
	}
}
