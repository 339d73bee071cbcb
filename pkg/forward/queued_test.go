package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

// flakyUpstream accepts exports while up, and answers with err while down;
// refuse, if set, refuses for good an export holding a span of that name;
// maxSpans, if set, times out (retryably) an export of more spans.
type flakyUpstream struct {
	mu       sync.Mutex
	err      error
	refuse   string
	maxSpans int
	got      []string // span names, in the order they were accepted
	requests int      // exports accepted
	seen     int      // calls, accepted or not
}

func (u *flakyUpstream) Export(_ context.Context, e *otlp.Export) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen++
	if u.err != nil {
		return u.err
	}
	names := spanNames(e)
	if u.maxSpans > 0 && len(names) > u.maxSpans {
		return &otlp.Error{Code: codes.Unavailable, Msg: "upstream timed out"}
	}
	if u.refuse != "" && slices.Contains(names, u.refuse) {
		return otlp.Errorf(codes.InvalidArgument, "upstream answered 400: span %s", u.refuse)
	}
	u.got = append(u.got, names...)
	u.requests++
	return nil
}

func (u *flakyUpstream) acceptedRequests() ([]string, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...), u.requests
}

func (u *flakyUpstream) set(err error) {
	u.mu.Lock()
	u.err = err
	u.mu.Unlock()
}

func (u *flakyUpstream) accepted() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

func spanName(e *otlp.Export) string { return spanNames(e)[0] }

// spanNames are the names of e's spans, in order: a batch of queued
// exports holds several.
func spanNames(e *otlp.Export) []string {
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(e.Body); err != nil {
		panic(err)
	}
	var names []string
	rss := req.Traces().ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				names = append(names, spans.At(k).Name())
			}
		}
	}
	return names
}

func exportOf(td ptrace.Traces) *otlp.Export {
	e, err := otlp.NewExport(ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		panic(err)
	}
	e.Transport = "http"
	return e
}

func namedExport(name, project string) *otlp.Export {
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName(name)
	e := exportOf(td)
	e.Project = project
	return e
}

type deliveries struct {
	mu    sync.Mutex
	names []string
	proj  []string
}

func (d *deliveries) add(e *otlp.Export) {
	d.mu.Lock()
	for _, n := range spanNames(e) {
		d.names = append(d.names, n)
		d.proj = append(d.proj, e.Project)
	}
	d.mu.Unlock()
}

func (d *deliveries) list() ([]string, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.names...), append([]string(nil), d.proj...)
}

func openQueue(t *testing.T, dir string, maxBytes int64) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Config{Dir: dir, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func newTestQueued(t *testing.T, q *queue.Queue, up Exporter, d *deliveries) *Queued {
	t.Helper()
	f := NewQueued(up, d.add, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	f.Attach(q, 0)
	f.minBackoff, f.maxBackoff = time.Millisecond, 5*time.Millisecond
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var errDown = &otlp.Error{Code: codes.Unavailable, Msg: "upstream answered 503"}

func TestQueuedOutage(t *testing.T) {
	up := &flakyUpstream{}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	f.Start()
	defer f.Stop()
	ctx := context.Background()

	// Healthy: straight through, nothing on disk.
	if err := f.Export(ctx, namedExport("a", "")); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatalf("a healthy export was queued")
	}

	// Phoenix down: exports are acknowledged, kept on disk, not indexed.
	up.set(errDown)
	for _, n := range []string{"b", "c", "d"} {
		if err := f.Export(ctx, namedExport(n, "proj-"+n)); err != nil {
			t.Fatalf("export %s during the outage: %v, want it queued", n, err)
		}
	}
	if names, _ := d.list(); len(names) != 1 {
		t.Fatalf("delivered during the outage: %v", names)
	}

	// Back: delivered in order, with their projects, then straight again.
	up.set(nil)
	waitFor(t, "queue drained", func() bool { names, _ := d.list(); return len(names) == 4 })
	if err := f.Export(ctx, namedExport("e", "")); err != nil {
		t.Fatal(err)
	}
	names, projects := d.list()
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(names, want) || !slices.Equal(up.accepted(), want) {
		t.Errorf("delivered %v, upstream accepted %v; want %v", names, up.accepted(), want)
	}
	if projects[1] != "proj-b" || projects[3] != "proj-d" {
		t.Errorf("projects = %v, want them kept through the queue", projects)
	}
	if q.Len() != 0 {
		t.Errorf("queue holds %d after draining", q.Len())
	}
}

func TestQueuedPermanentAndFull(t *testing.T) {
	up := &flakyUpstream{}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 600)
	defer q.Close()
	f := newTestQueued(t, q, up, d) // not started: nothing drains
	ctx := context.Background()

	// A permanent refusal is the app's to hear; queuing would not help.
	up.set(otlp.Errorf(codes.InvalidArgument, "upstream answered 400"))
	var oe *otlp.Error
	if err := f.Export(ctx, namedExport("bad", "")); !errors.As(err, &oe) || oe.Code != codes.InvalidArgument || q.Len() != 0 {
		t.Fatalf("permanent refusal: err %v, queued %d; want InvalidArgument, nothing queued", err, q.Len())
	}

	// The budget: once full, the app is told to back off, never dropped.
	up.set(errDown)
	var full error
	for i := range 100 {
		if err := f.Export(ctx, namedExport("x", "")); err != nil {
			full = err
			if i == 0 {
				t.Fatalf("the first export did not fit: %v", err)
			}
			break
		}
	}
	if !errors.As(full, &oe) || oe.Code != codes.ResourceExhausted || oe.RetryAfter <= 0 {
		t.Fatalf("full queue: err %v, want ResourceExhausted with a retry delay", full)
	}
}

func TestQueuedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	up := &flakyUpstream{}
	up.set(errDown)
	d := &deliveries{}
	q := openQueue(t, dir, 1<<20)
	f := newTestQueued(t, q, up, d)
	f.Start()
	for _, n := range []string{"a", "b"} {
		if err := f.Export(context.Background(), namedExport(n, "")); err != nil {
			t.Fatal(err)
		}
	}
	f.Stop()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	up.set(nil)
	q = openQueue(t, dir, 1<<20)
	defer q.Close()
	f = newTestQueued(t, q, up, d)
	if !f.backlog {
		t.Fatal("a reopened queue with exports in it does not hold new exports behind them")
	}
	f.Start()
	defer f.Stop()
	waitFor(t, "delivery after restart", func() bool { names, _ := d.list(); return len(names) == 2 })
	if names, _ := d.list(); !slices.Equal(names, []string{"a", "b"}) {
		t.Errorf("delivered %v after the restart, want [a b]", names)
	}
}

// The backlog goes up in batches of one project, in order, and a batch
// Phoenix refuses for good costs only the export it refuses.
func TestQueuedBatchesBacklog(t *testing.T) {
	up := &flakyUpstream{}
	up.set(errDown)
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d) // started once the backlog is queued
	reg := prometheus.NewRegistry()
	f.metrics = newQueueMetrics(reg, f)
	ctx := context.Background()
	var want []string
	add := func(name, project string) {
		t.Helper()
		if err := f.Export(ctx, namedExport(name, project)); err != nil {
			t.Fatalf("export %s: %v", name, err)
		}
		if name != "bad" {
			want = append(want, name)
		}
	}
	for i := range 30 {
		add(fmt.Sprintf("p%02d", i), "p")
	}
	add("q0", "q")
	add("q1", "q")
	for i := range 7 {
		add(fmt.Sprintf("r%d", i), "p")
	}
	add("bad", "p")
	add("r7", "p")
	up.mu.Lock()
	up.refuse = "bad"
	up.mu.Unlock()
	up.set(nil)
	f.Start()
	defer f.Stop()
	waitFor(t, "queue drained", func() bool { return q.Len() == 0 })

	got, requests := up.acceptedRequests()
	if !slices.Equal(got, want) {
		t.Fatalf("upstream accepted %v, want %v", got, want)
	}
	names, projects := d.list()
	if !slices.Equal(names, want) || projects[0] != "p" || projects[30] != "q" || projects[32] != "p" {
		t.Errorf("delivered %v in projects %v", names, projects)
	}
	// p00-p29, q0-q1, then r0-r7 with bad: refused whole, then in halves
	// (r0-r3 | r4-r6 bad r7 -> r4 r5 | r6 bad -> r6 | bad, r7).
	if requests < 3 || requests > 8 {
		t.Errorf("the backlog of %d exports took %d requests, want it batched (3 batches, then halves of the refused one)", len(want)+1, requests)
	}
	if n := testutil.ToFloat64(f.metrics.dropped.WithLabelValues("refused")); n != 1 {
		t.Errorf("dropped as refused: %v spans, want 1", n)
	}
}

// A batch that keeps failing for a reason worth retrying (too large to go
// through in time, say) is sent in halves: nothing is dropped, and the
// backlog does not stall behind it.
func TestQueuedHalvesABatchThatKeepsFailing(t *testing.T) {
	up := &flakyUpstream{}
	up.set(errDown)
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	var want []string
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		if err := f.Export(context.Background(), namedExport(name, "")); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	up.mu.Lock()
	up.err, up.maxSpans = nil, 4
	up.mu.Unlock()
	f.Start()
	defer f.Stop()
	waitFor(t, "queue drained", func() bool { return q.Len() == 0 })
	if got, _ := up.acceptedRequests(); !slices.Equal(got, want) {
		t.Fatalf("upstream accepted %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(f.metrics.dropped.WithLabelValues("refused")); n != 0 {
		t.Errorf("dropped %v spans, want none", n)
	}
}
