package seek

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// waiters stands in for the feedback service: a set of ids, emptied as
// spans are learned.
type waiters struct {
	mu      sync.Mutex
	ids     map[string]bool
	learned []index.Entry
}

func newWaiters(ids ...string) *waiters {
	w := &waiters{ids: map[string]bool{}}
	for _, id := range ids {
		w.ids[id] = true
	}
	return w
}

func (w *waiters) Waiting() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id := range w.ids {
		out = append(out, id)
	}
	return out
}

func (w *waiters) IsWaiting(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ids[id]
}

func (w *waiters) learn(es []index.Entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range es {
		delete(w.ids, e.ResponseID)
		w.learned = append(w.learned, e)
	}
}

func (w *waiters) learnedIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for _, e := range w.learned {
		ids = append(ids, e.ResponseID)
	}
	slices.Sort(ids)
	return ids
}

// source holds entries and records when each id was asked about.
type source struct {
	mu      sync.Mutex
	entries map[string]index.Entry
	asked   map[string][]time.Time
	err     error
}

func newSource() *source {
	return &source{entries: map[string]index.Entry{}, asked: map[string][]time.Time{}}
}

func (s *source) put(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[id] = index.Entry{ResponseID: id, Span: index.Span{SpanID: pcommon.SpanID{1}}}
}

func (s *source) Find(_ context.Context, ids []string) ([]index.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []index.Entry
	for _, id := range ids {
		s.asked[id] = append(s.asked[id], time.Now())
		if e, ok := s.entries[id]; ok {
			out = append(out, e)
		}
	}
	return out, s.err
}

func (s *source) times(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asked[id])
}

func TestFindAsksTheSharedIndexOnly(t *testing.T) {
	w := newWaiters()
	shared, ph := newSource(), newSource()
	shared.put("chatcmpl-a")
	ph.put("chatcmpl-b")
	k := New(w, w.learn, shared, ph, nil, nil)
	k.Find(context.Background(), []string{"chatcmpl-a", "chatcmpl-b"})
	if got := w.learnedIDs(); !slices.Equal(got, []string{"chatcmpl-a"}) {
		t.Fatalf("learned %v, want chatcmpl-a only (Phoenix is left to the loop)", got)
	}
	if len(ph.times("chatcmpl-b")) != 0 {
		t.Fatal("Find asked Phoenix")
	}
}

func TestNotifiedLearnsOnlyWhatIsWaitedFor(t *testing.T) {
	w := newWaiters("resp_wanted")
	k := New(w, w.learn, newSource(), nil, nil, nil)
	k.Notified(index.Entry{ResponseID: "resp_other"})
	k.Notified(index.Entry{ResponseID: "resp_wanted"})
	if got := w.learnedIDs(); !slices.Equal(got, []string{"resp_wanted"}) {
		t.Fatalf("learned %v", got)
	}
	if v := testutil.ToFloat64(k.metrics.found.WithLabelValues("announcement")); v != 1 {
		t.Fatalf("found via announcement = %v", v)
	}
}

func TestScheduleBacksOffAndFindsLateSpans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWaiters("chatcmpl-late", "msg_phoenix")
		shared, ph := newSource(), newSource()
		k := New(w, w.learn, shared, ph, nil, nil)
		start := time.Now()
		k.Start()
		defer k.Stop()

		time.Sleep(10 * time.Second)
		synctest.Wait()
		// The shared index: at once, then 1, 2, 4 s apart...
		asked := shared.times("chatcmpl-late")
		if len(asked) < 4 || len(asked) > 6 {
			t.Fatalf("shared index asked %d times in 10 s, want 4 to 6 (backoff from 1 s): %v", len(asked), asked)
		}
		if d := asked[0].Sub(start); d > tick {
			t.Errorf("first shared lookup after %s, want at once", d)
		}
		// Phoenix, behind the shared index: not before 30 s.
		if pa := ph.times("msg_phoenix"); len(pa) != 0 {
			t.Fatalf("Phoenix asked at %v, want not before 30 s", pa)
		}
		time.Sleep(25 * time.Second)
		synctest.Wait()
		if pa := ph.times("msg_phoenix"); len(pa) != 1 || pa[0].Sub(start) < 30*time.Second {
			t.Fatalf("Phoenix asked at %v, want once, at 30 s", pa)
		}

		// The span shows up in the shared index: found within the backoff.
		shared.put("chatcmpl-late")
		ph.put("msg_phoenix")
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := w.learnedIDs(); !slices.Equal(got, []string{"chatcmpl-late", "msg_phoenix"}) {
			t.Fatalf("learned %v", got)
		}
		// Found ids are no longer asked about.
		n := len(shared.times("chatcmpl-late"))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if m := len(shared.times("chatcmpl-late")); m != n {
			t.Fatalf("asked %d more times after it was found", m-n)
		}
	})
}

func TestResyncMakesEverythingDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWaiters("chatcmpl-x")
		shared := newSource()
		k := New(w, w.learn, shared, nil, nil, nil)
		k.Start()
		defer k.Stop()
		time.Sleep(30 * time.Second) // backoff now well past 8 s
		synctest.Wait()
		before := len(shared.times("chatcmpl-x"))
		shared.put("chatcmpl-x")
		k.Resync()
		time.Sleep(time.Second)
		synctest.Wait()
		if len(shared.times("chatcmpl-x")) != before+1 || len(w.learnedIDs()) != 1 {
			t.Fatalf("after Resync: asked %d more times, learned %v; want one lookup that finds it",
				len(shared.times("chatcmpl-x"))-before, w.learnedIDs())
		}
	})
}

func TestIdsNoLongerWaitingAreDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWaiters("chatcmpl-gone")
		shared := newSource()
		k := New(w, w.learn, shared, nil, nil, nil)
		k.Start()
		defer k.Stop()
		time.Sleep(time.Second)
		synctest.Wait()
		w.mu.Lock()
		delete(w.ids, "chatcmpl-gone") // expired, or resolved another way
		w.mu.Unlock()
		n := len(shared.times("chatcmpl-gone"))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if m := len(shared.times("chatcmpl-gone")); m != n {
			t.Fatalf("asked %d more times after it stopped waiting", m-n)
		}
		if k.shared.len() != 0 {
			t.Fatalf("%d ids still scheduled", k.shared.len())
		}
	})
}

func TestErrorsAreCountedAndRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWaiters("chatcmpl-e")
		shared := newSource()
		shared.err = errors.New("connection refused")
		k := New(w, w.learn, shared, nil, nil, nil)
		k.Start()
		defer k.Stop()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if v := testutil.ToFloat64(k.metrics.lookups.WithLabelValues("shared", "error")); v < 2 {
			t.Fatalf("errors = %v, want the lookups retried", v)
		}
	})
}

// fakePhoenix answers like phoenix.Client, counting requests.
type fakePhoenix struct {
	mu       sync.Mutex
	projects []string
	spans    map[string]map[string][]phoenix.Span // project -> id -> spans
	requests []time.Time
}

func (f *fakePhoenix) Projects(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, time.Now())
	return f.projects, nil
}

func (f *fakePhoenix) SpansByResponseID(_ context.Context, project, id string) ([]phoenix.Span, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, time.Now())
	if project == "gone" {
		return nil, &phoenix.APIError{StatusCode: 404}
	}
	return f.spans[project][id], nil
}

func TestPhoenixSourceIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePhoenix{projects: []string{"a", "b"}}
		p := NewPhoenixSource(f, PhoenixConfig{Rate: 5, Burst: 1})
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = "chatcmpl-" + string(rune('a'+i))
		}
		start := time.Now()
		if _, err := p.Find(context.Background(), ids); err != nil {
			t.Fatal(err)
		}
		// 1 project list + 10 ids x 2 projects = 21 requests at 5/s.
		if n := len(f.requests); n != 21 {
			t.Fatalf("%d requests, want 21", n)
		}
		if d := time.Since(start); d < 4*time.Second {
			t.Fatalf("21 requests took %s at 5/s, want at least 4 s", d)
		}
	})
}

func TestPhoenixSourcePicksTheInnermostSpan(t *testing.T) {
	ts := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	f := &fakePhoenix{projects: []string{"gone", "p"}, spans: map[string]map[string][]phoenix.Span{"p": {
		"chatcmpl-x": {
			{Name: "chain", Context: phoenix.SpanContext{TraceID: "0102030405060708090a0b0c0d0e0f10", SpanID: "0a01010101010101"}, StartTime: ts},
			{Name: "ChatCompletion", Context: phoenix.SpanContext{TraceID: "0102030405060708090a0b0c0d0e0f10", SpanID: "0b02020202020202"},
				ParentID: "0a01010101010101", StartTime: ts.Add(time.Millisecond)},
			{Name: "junk", Context: phoenix.SpanContext{TraceID: "zz", SpanID: "0c"}},
		},
	}}}
	p := NewPhoenixSource(f, PhoenixConfig{})
	got, err := p.Find(context.Background(), []string{"chatcmpl-x", "chatcmpl-none"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Span.Name != "ChatCompletion" || got[0].Span.Project != "p" ||
		got[0].Span.SpanID.String() != "0b02020202020202" || got[0].Span.ParentID.String() != "0a01010101010101" {
		t.Fatalf("found %+v, want the ChatCompletion span of project p", got)
	}
}

func TestPhoenixSourceAsksTheProjectsItSawFirst(t *testing.T) {
	f := &fakePhoenix{projects: []string{"newest", "mine", "old"}}
	p := NewPhoenixSource(f, PhoenixConfig{MaxProjects: 3})
	p.Saw("other")
	p.Saw("mine")
	p.Saw("mine")
	got, err := p.projectList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mine", "other", "newest"}; !slices.Equal(got, want) {
		t.Fatalf("projects asked = %v, want %v", got, want)
	}
}

// Without a shared index Phoenix is asked from 5 s on, six times at most,
// and ids asked about least go first.
func TestPhoenixScheduleEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWaiters("chatcmpl-never")
		ph := newSource()
		k := New(w, w.learn, nil, ph, nil, nil)
		start := time.Now()
		k.Start()
		defer k.Stop()
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		var at []time.Duration
		for _, a := range ph.times("chatcmpl-never") {
			at = append(at, a.Sub(start).Round(time.Second))
		}
		want := []time.Duration{5 * time.Second, 10 * time.Second, 25 * time.Second, 70 * time.Second, 205 * time.Second, 610 * time.Second}
		if len(at) != len(want) {
			t.Fatalf("asked at %v, want %v", at, want)
		}
		for i := range at {
			if d := at[i] - want[i]; d < 0 || d > time.Second {
				t.Fatalf("asked at %v, want %v", at, want)
			}
		}
	})
}

func TestFewestTriesFirst(t *testing.T) {
	r := newRun("x", newSource(), schedule{batch: 1, factor: 2, max: time.Minute})
	now := time.Now()
	r.sync([]string{"old"}, now.Add(-time.Hour))
	r.reschedule([]string{"old"}, now.Add(-time.Hour)) // one try, due long ago
	r.sync([]string{"old", "new"}, now)
	if got := r.dueBatch(now.Add(time.Second)); len(got) != 1 || got[0] != "new" {
		t.Fatalf("first due = %v, want the id never asked about", got)
	}
}
