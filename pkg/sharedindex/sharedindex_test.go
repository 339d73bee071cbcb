package sharedindex

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/redistest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

var (
	trace1 = pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	trace2 = pcommon.TraceID{2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	outer  = pcommon.SpanID{0xa, 1, 1, 1, 1, 1, 1, 1}
	inner  = pcommon.SpanID{0xb, 2, 2, 2, 2, 2, 2, 2}
	other  = pcommon.SpanID{0xc, 3, 3, 3, 3, 3, 3, 3}
)

func span(tr pcommon.TraceID, id, parent pcommon.SpanID, start uint64, name string) index.Span {
	return index.Span{TraceID: tr, SpanID: id, ParentID: parent, Project: "proj", Name: name,
		Start: pcommon.Timestamp(start), Seen: time.Now()}
}

func newIndex(t *testing.T, url string, mut ...func(*Config)) (*Index, *Metrics) {
	t.Helper()
	cfg := Config{URL: url, MaxAge: time.Hour, Timeout: 500 * time.Millisecond}
	for _, m := range mut {
		m(&cfg)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s, err := New(cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, m
}

// written waits until the backlog is empty and every write succeeded.
func written(t *testing.T, s *Index) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.Backlog() == 0 && s.Degraded() == "" {
			time.Sleep(20 * time.Millisecond) // the last pipeline's answer
			if s.Backlog() == 0 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("backlog %d not written: %s", s.Backlog(), s.Degraded())
}

func get(t *testing.T, s *Index, id string) (index.Span, bool) {
	t.Helper()
	got, err := s.Find(context.Background(), []string{id})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		return index.Span{}, false
	}
	return got[0].Span, true
}

func TestPutGet(t *testing.T) {
	srv := redistest.Start(t)
	s, m := newIndex(t, srv.URL())
	s.Start(nil, nil)
	want := span(trace1, inner, outer, 1_700_000_000_123_456_789, `chat "gpt" | ü`)
	s.Put([]index.Entry{{ResponseID: "chatcmpl-1", Span: want}})
	written(t, s)
	got, ok := get(t, s, "chatcmpl-1")
	if !ok {
		t.Fatal("not found")
	}
	if got.TraceID != want.TraceID || got.SpanID != want.SpanID || got.ParentID != want.ParentID ||
		got.Start != want.Start || got.Name != want.Name || got.Project != want.Project || !got.Seen.Equal(want.Seen.Round(0)) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, ok := get(t, s, "chatcmpl-missing"); ok {
		t.Fatal("a missing id was found")
	}
	if v := testutil.ToFloat64(m.writes.WithLabelValues("written")); v != 1 {
		t.Errorf("writes written = %v, want 1", v)
	}
	// The key lives for what is left of MaxAge.
	ttl := srv.Do("PTTL", DefaultPrefix+"r:chatcmpl-1")
	if !strings.HasPrefix(ttl, ":35") && !strings.HasPrefix(ttl, ":36") {
		t.Errorf("PTTL = %s, want about 3,600,000 ms", ttl)
	}
}

func TestInnermostWinsAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newIndex(t, srv.URL())
	b, _ := newIndex(t, srv.URL())
	a.Start(nil, nil)
	b.Start(nil, nil)
	var zero pcommon.SpanID
	tests := []struct {
		name        string
		first, then index.Span
		want        pcommon.SpanID
	}{
		{"outer after inner keeps inner", span(trace1, inner, outer, 20, "llm"), span(trace1, outer, zero, 10, "chain"), inner},
		{"inner after outer takes over", span(trace1, outer, zero, 10, "chain"), span(trace1, inner, outer, 20, "llm"), inner},
		{"unrelated spans: the later start wins", span(trace1, other, zero, 30, "late"), span(trace1, inner, zero, 20, "early"), other},
		{"unrelated spans, later one second", span(trace1, inner, zero, 20, "early"), span(trace1, other, zero, 30, "late"), other},
		{"another trace that started later replaces", span(trace1, inner, outer, 20, "old"), span(trace2, other, zero, 30, "new"), other},
		{"another trace that started earlier does not (a backlog written late)", span(trace1, inner, outer, 20, "new"), span(trace2, other, zero, 5, "old"), inner},
		{"two roots with no span id are not parent and child", span(trace1, inner, zero, 20, "a"), span(trace1, zero, zero, 10, "b"), inner},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "chatcmpl-" + string(rune('a'+i))
			a.Put([]index.Entry{{ResponseID: id, Span: tt.first}})
			written(t, a)
			b.Put([]index.Entry{{ResponseID: id, Span: tt.then}})
			written(t, b)
			got, ok := get(t, a, id)
			if !ok || got.SpanID != tt.want {
				t.Fatalf("span = %s (found %v), want %s", got.SpanID, ok, tt.want)
			}
		})
	}
}

func TestNotifiesOtherReplicas(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newIndex(t, srv.URL())
	b, mb := newIndex(t, srv.URL())
	var mu sync.Mutex
	var got []index.Entry
	subscribed := make(chan struct{}, 4)
	a.Start(nil, nil)
	b.Start(func(e index.Entry) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}, func() { subscribed <- struct{}{} })
	<-subscribed
	want := span(trace1, inner, outer, 20, "llm")
	a.Put([]index.Entry{{ResponseID: "resp_1", Span: want}})
	// A write the script keeps (outer after inner) announces nothing.
	a.Put([]index.Entry{{ResponseID: "resp_1", Span: span(trace1, outer, pcommon.SpanID{}, 10, "chain")}})
	written(t, a)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].ResponseID != "resp_1" || got[0].Span.SpanID != inner {
		t.Fatalf("notified %+v, want resp_1 -> the inner span once", got)
	}
	if v := testutil.ToFloat64(mb.notifications); v != 1 {
		t.Errorf("notifications = %v, want 1", v)
	}
}

func TestRedisDownKeepsBacklogThenWrites(t *testing.T) {
	srv := redistest.Start(t)
	s, m := newIndex(t, srv.URL())
	resubscribed := make(chan struct{}, 8)
	s.Start(nil, func() { resubscribed <- struct{}{} })
	<-resubscribed
	s.Put([]index.Entry{{ResponseID: "chatcmpl-before", Span: span(trace1, inner, outer, 1, "llm")}})
	written(t, s)

	srv.Stop()
	s.Put([]index.Entry{{ResponseID: "chatcmpl-during", Span: span(trace1, other, outer, 2, "llm")}})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.Degraded(), "write failing") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := s.Degraded(); !strings.Contains(d, "write failing") || !strings.Contains(d, "1 entries waiting") {
		t.Fatalf("Degraded() = %q, want the write failing and the entry waiting", d)
	}
	if _, err := s.Find(context.Background(), []string{"chatcmpl-before"}); err == nil {
		t.Fatal("Get with Redis down: no error")
	}
	if v := testutil.ToFloat64(m.errors.WithLabelValues(opWrite)); v < 1 {
		t.Errorf("write errors = %v, want some", v)
	}

	// Back up: the restarted server has lost its script cache (NOSCRIPT);
	// the backlog is written and the subscription comes back.
	srv.Restart()
	written(t, s)
	for _, id := range []string{"chatcmpl-before", "chatcmpl-during"} {
		if _, ok := get(t, s, id); !ok {
			t.Errorf("%s not in Redis after the restart", id)
		}
	}
	select {
	case <-resubscribed:
	case <-time.After(20 * time.Second):
		t.Fatal("not resubscribed after Redis came back")
	}
}

func TestBacklogIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	s, m := newIndex(t, srv.URL(), func(c *Config) { c.MaxBacklog = 10 })
	s.Start(nil, nil)
	for i := range 25 {
		s.Put([]index.Entry{{ResponseID: "chatcmpl-" + string(rune('A'+i)), Span: span(trace1, inner, outer, 1, "llm")}})
	}
	s.mu.Lock()
	waiting := len(s.backlog) // those being written (the oldest) aside
	s.mu.Unlock()
	if waiting > 10 {
		t.Fatalf("backlog = %d, want at most 10", waiting)
	}
	srv.Restart()
	written(t, s)
	// Those being written when the backlog filled were dropped when
	// they came back unwritten.
	if v := testutil.ToFloat64(m.dropped); v != 15 {
		t.Fatalf("dropped = %v, want 15", v)
	}
	// The newest ten were kept.
	if _, ok := get(t, s, "chatcmpl-Y"); !ok {
		t.Error("the newest entry was not written")
	}
	if _, ok := get(t, s, "chatcmpl-A"); ok {
		t.Error("the oldest entry was written, though the backlog was full")
	}
}

func TestExpiredEntriesAreNotWritten(t *testing.T) {
	srv := redistest.Start(t)
	s, m := newIndex(t, srv.URL())
	s.Start(nil, nil)
	old := span(trace1, inner, outer, 1, "llm")
	old.Seen = time.Now().Add(-2 * time.Hour)
	s.Put([]index.Entry{{ResponseID: "chatcmpl-old", Span: old}})
	written(t, s)
	if _, ok := get(t, s, "chatcmpl-old"); ok {
		t.Fatal("an entry past MaxAge was written")
	}
	if v := testutil.ToFloat64(m.writes.WithLabelValues("expired")); v != 1 {
		t.Fatalf("expired = %v, want 1", v)
	}
}

func TestUnreadableValuesAreIgnored(t *testing.T) {
	srv := redistest.Start(t)
	s, m := newIndex(t, srv.URL())
	srv.Do("SET", DefaultPrefix+"r:chatcmpl-junk", "not a value")
	if _, ok := get(t, s, "chatcmpl-junk"); ok {
		t.Fatal("a junk value was returned")
	}
	if v := testutil.ToFloat64(m.lookups.WithLabelValues("unreadable")); v != 1 {
		t.Fatalf("unreadable = %v, want 1", v)
	}
	// A write over junk replaces it.
	s.Start(nil, nil)
	s.Put([]index.Entry{{ResponseID: "chatcmpl-junk", Span: span(trace1, inner, outer, 1, "llm")}})
	written(t, s)
	if _, ok := get(t, s, "chatcmpl-junk"); !ok {
		t.Fatal("junk was not replaced")
	}
}

func TestConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "a Redis URL is required"},
		{"bad scheme", Config{URL: "http://x:1"}, "want redis://"},
		{"negative backlog", Config{URL: "redis://x:1", MaxBacklog: -1}, "MaxBacklog"},
		{"negative timeout", Config{URL: "redis://x:1", Timeout: -1}, "Timeout"},
		{"good", Config{URL: "rediss://u:p@x:1/2"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if got := Redacted("redis://alice:s3cret@h:6380/3"); got != "redis://alice:xxxxx@h:6380/3" {
		t.Errorf("Redacted = %q", got)
	}
	if got := Redacted("rediss://:s3cret@h:6380"); got != "rediss://:xxxxx@h:6380/0" {
		t.Errorf("Redacted = %q", got)
	}
}

func TestValueRoundTrip(t *testing.T) {
	in := span(trace1, inner, outer, 1<<63, "n\n\"\x00")
	got, err := decode(encode(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Start != in.Start || got.Name != in.Name || got.SpanID != in.SpanID {
		t.Fatalf("got %+v", got)
	}
	if strings.Contains(encode(in), "\n") {
		t.Fatal("a value holds a newline: the message format splits on the first")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(span(trace1, inner, outer, 5, "x")))
	f.Add("1")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := decode(v)
		if err != nil {
			return
		}
		if again, err := decode(encode(s)); err != nil || again.SpanID != s.SpanID || again.Name != s.Name {
			t.Fatalf("re-encoded %q does not decode back: %v", v, err)
		}
	})
}

func TestVotesKeepTheLatest(t *testing.T) {
	srv := redistest.Start(t)
	b, mb := newIndex(t, srv.URL())
	c, _ := newIndex(t, srv.URL())
	ctx := context.Background()
	t0 := time.Now()
	var writes []string
	wrote := func(who string) func() error {
		return func() error { writes = append(writes, who); return nil }
	}
	write := func(r *Index, key, digest string, at time.Time, who string) bool {
		t.Helper()
		sup, err := r.Votes().Write(ctx, key, digest, at, wrote(who))
		if err != nil {
			t.Fatal(err)
		}
		return sup
	}

	// B holds "up" (t0), C "down" (t0+1s). Whichever writes first, Phoenix
	// ends with C's: B first is overwritten, B second is superseded.
	if write(b, "k1", "up", t0, "b") || write(c, "k1", "down", t0.Add(time.Second), "c") {
		t.Fatal("a vote was superseded though it came first")
	}
	if !write(b, "k1", "up", t0, "b") {
		t.Fatal("B's older vote, claimed after C's, was not superseded")
	}
	if write(c, "k2", "down", t0.Add(time.Second), "c") {
		t.Fatal("C's vote, first on k2, was superseded")
	}
	if !write(b, "k2", "up", t0, "b") {
		t.Fatal("B's older vote, after C wrote the newer, was not superseded")
	}
	if got := strings.Join(writes, ","); got != "b,c,c" {
		t.Fatalf("writes = %s, want b,c,c", got)
	}
	if v := testutil.ToFloat64(mb.superseded); v != 2 {
		t.Errorf("superseded = %v, want 2", v)
	}

	// The same content from two replicas, whatever its times: both write.
	writes = nil
	if write(c, "k3", "up", t0.Add(time.Second), "c") || write(b, "k3", "up", t0, "b") {
		t.Fatal("the same vote was superseded")
	}
	if len(writes) != 2 {
		t.Fatalf("writes = %v", writes)
	}

	// While one replica writes, the other waits for the lock: the two
	// writes never overlap, and no lock is left behind.
	var mu sync.Mutex
	inside, overlap := 0, false
	slow := func() error {
		mu.Lock()
		inside++
		overlap = overlap || inside > 1
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		inside--
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	for _, r := range []*Index{b, c} {
		wg.Go(func() { _, _ = r.Votes().Write(ctx, "k4", "up", t0, slow) })
	}
	wg.Wait()
	if overlap {
		t.Fatal("two replicas wrote the same key at once")
	}
	if got := srv.Do("EXISTS", DefaultPrefix+"l:k4"); got != ":0" {
		t.Fatalf("lock left behind: EXISTS = %s", got)
	}
	// The latest vote is kept for VoteTTL (an hour by default).
	if ttl := srv.Do("PTTL", DefaultPrefix+"v:k4"); !strings.HasPrefix(ttl, ":35") && !strings.HasPrefix(ttl, ":36") {
		t.Errorf("PTTL = %s, want about an hour", ttl)
	}
}

func TestVotesUnorderedWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	b, mb := newIndex(t, srv.URL())
	srv.Stop()
	ran := 0
	for range 2 {
		sup, err := b.Votes().Write(context.Background(), "k", "up", time.Now(), func() error { ran++; return nil })
		if sup || err != nil {
			t.Fatalf("Write with Redis down: superseded %v, err %v; want written anyway", sup, err)
		}
	}
	if ran != 2 {
		t.Fatalf("written %d times, want 2", ran)
	}
	if v := testutil.ToFloat64(mb.unordered); v != 2 {
		t.Fatalf("unordered = %v, want 2", v)
	}
	// The second was not even asked: Redis had just failed.
	if v := testutil.ToFloat64(mb.errors.WithLabelValues(opVote)); v != 1 {
		t.Fatalf("vote errors = %v, want 1", v)
	}
}

// TestRedisSlow: a Redis that stalls (DEBUG SLEEP) costs a lookup its
// timeout at most, and Put nothing: entries wait and are written after.
func TestRedisSlow(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newIndex(t, srv.URL(), func(c *Config) { c.Timeout = 200 * time.Millisecond })
	s.Start(nil, nil)
	stalled := make(chan struct{})
	go func() { srv.Do("DEBUG", "SLEEP", "2"); close(stalled) }()
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	s.Put([]index.Entry{{ResponseID: "chatcmpl-slow", Span: span(trace1, inner, outer, 1, "llm")}})
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Put took %s while Redis stalled", d)
	}
	start = time.Now()
	if _, err := s.Find(context.Background(), []string{"chatcmpl-x"}); err == nil {
		t.Error("Find answered while Redis stalled")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Find took %s with a 200 ms timeout", d)
	}
	<-stalled
	written(t, s)
	if _, ok := get(t, s, "chatcmpl-slow"); !ok {
		t.Fatal("the entry put while Redis stalled was not written")
	}
}

func TestWantFiltersAnnouncements(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newIndex(t, srv.URL())
	b, mb := newIndex(t, srv.URL())
	got := make(chan string, 4)
	subscribed := make(chan struct{}, 4)
	b.Want(func(id string) bool { return id == "chatcmpl-wanted" })
	a.Start(nil, nil)
	b.Start(func(e index.Entry) { got <- e.ResponseID }, func() { subscribed <- struct{}{} })
	<-subscribed
	a.Put([]index.Entry{
		{ResponseID: "chatcmpl-other", Span: span(trace1, inner, outer, 1, "llm")},
		{ResponseID: "chatcmpl-wanted", Span: span(trace2, inner, outer, 1, "llm")},
	})
	select {
	case id := <-got:
		if id != "chatcmpl-wanted" {
			t.Fatalf("handed on %s", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the wanted announcement did not come")
	}
	time.Sleep(100 * time.Millisecond)
	if len(got) != 0 || testutil.ToFloat64(mb.notifications) != 2 {
		t.Fatalf("%d more handed on, %v received; want the wanted one only handed on, both received", len(got), testutil.ToFloat64(mb.notifications))
	}
}

// TestRefusedEntriesAreGivenUp: entries Redis refuses (out of memory here)
// are tried a few times, then dropped and counted, and hold nothing back.
func TestRefusedEntriesAreGivenUp(t *testing.T) {
	srv := redistest.Start(t)
	s, m := newIndex(t, srv.URL())
	s.Start(nil, nil)
	if got := srv.Do("CONFIG", "SET", "maxmemory", "1"); got != "+OK" {
		t.Fatalf("CONFIG SET maxmemory: %s", got)
	}
	s.Put([]index.Entry{
		{ResponseID: "chatcmpl-oom1", Span: span(trace1, inner, outer, 1, "llm")},
		{ResponseID: "chatcmpl-oom2", Span: span(trace2, inner, outer, 1, "llm")},
	})
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(m.dropped) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped = %v after 20 s, backlog %d: %s", testutil.ToFloat64(m.dropped), s.Backlog(), s.Degraded())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.Backlog(); n != 0 {
		t.Fatalf("backlog = %d after the refused entries were given up", n)
	}
	srv.Do("CONFIG", "SET", "maxmemory", "0")
	s.Put([]index.Entry{{ResponseID: "chatcmpl-after", Span: span(trace1, inner, outer, 1, "llm")}})
	written(t, s)
	if _, ok := get(t, s, "chatcmpl-after"); !ok {
		t.Fatal("an entry put after Redis took writes again was not written")
	}
}
