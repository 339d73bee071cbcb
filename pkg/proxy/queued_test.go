package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// sent is one request as the upstream got it.
type sent struct {
	names   []string // span names, in order
	project string
	gzipped []byte // nil when sent as protobuf
}

// flakyUpstream accepts exports while up, and answers with err while down;
// refuse, when set, refuses for good the requests that hold a span of that
// name (InvalidArgument).
type flakyUpstream struct {
	compression string // what Compression says: gzip or none

	mu     sync.Mutex
	err    error
	refuse string
	got    []sent
	seen   int // calls, accepted or not
}

func (u *flakyUpstream) Compression() string { return u.compression }

func (u *flakyUpstream) Export(_ context.Context, e *otlp.Export) error {
	names := spanNames(e.Body)
	if e.Gzipped != nil {
		if plain := gunzipAll(e.Gzipped); !bytes.Equal(plain, e.Body) {
			panic("Export.Gzipped does not decompress to Export.Body")
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen++
	if u.err != nil {
		return u.err
	}
	if u.refuse != "" && slices.Contains(names, u.refuse) {
		return otlp.Errorf(codes.InvalidArgument, "upstream answered 400: %s is refused", u.refuse)
	}
	u.got = append(u.got, sent{names: names, project: e.Project, gzipped: bytes.Clone(e.Gzipped)})
	return nil
}

func (u *flakyUpstream) set(err error) {
	u.mu.Lock()
	u.err = err
	u.mu.Unlock()
}

func (u *flakyUpstream) refusing(name string) {
	u.mu.Lock()
	u.refuse = name
	u.mu.Unlock()
}

// accepted returns the span names accepted, in order, and the requests.
func (u *flakyUpstream) accepted() ([]string, []sent) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var names []string
	for _, s := range u.got {
		names = append(names, s.names...)
	}
	return names, slices.Clone(u.got)
}

func gunzipAll(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		panic(err)
	}
	return out
}

func spanNames(body []byte) []string {
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
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

func spanName(e *otlp.Export) string { return spanNames(e.Body)[0] }

func namedExport(name, project string) *otlp.Export {
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName(name)
	e := exportOf(td)
	e.Project = project
	return e
}

// gzippedExport is namedExport as a client that compresses sends it.
func gzippedExport(t testing.TB, name, project string) *otlp.Export {
	e := namedExport(name, project)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(e.Body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	e.Gzipped = buf.Bytes()
	return e
}

// deliveries records what the forwarder says was delivered: the span names
// in order, the project of each, and how many calls.
type deliveries struct {
	mu    sync.Mutex
	names []string
	proj  []string
	calls int
}

func (d *deliveries) add(e *otlp.Export) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	for _, n := range spanNames(e.Body) {
		d.names = append(d.names, n)
		d.proj = append(d.proj, e.Project)
	}
}

func (d *deliveries) list() ([]string, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.names), slices.Clone(d.proj)
}

func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.names)
}

func openQueue(t *testing.T, dir string, maxBytes int64) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Config{Dir: dir, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func newTestQueued(t *testing.T, q *queue.Queue, up Forwarder, d *deliveries) *queuedForwarder {
	t.Helper()
	f := newQueuedForwarder(up, d.add, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	f.attach(q)
	f.minBackoff, f.maxBackoff = time.Millisecond, 5*time.Millisecond
	f.batch.linger = 20 * time.Millisecond
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

func exportAll(t *testing.T, f *queuedForwarder, es ...*otlp.Export) {
	t.Helper()
	for _, e := range es {
		if err := f.Export(context.Background(), e); err != nil {
			t.Fatalf("export %s: %v", spanName(e), err)
		}
	}
}

// Exports are answered once on disk, and reach Phoenix in order, a batch of
// one project in one request, indexed a batch at a time.
func TestQueuedForwarderBatches(t *testing.T) {
	for _, compression := range []string{"gzip", "none"} {
		t.Run(compression, func(t *testing.T) {
			up := &flakyUpstream{compression: compression}
			d := &deliveries{}
			q := openQueue(t, t.TempDir(), 1<<20)
			defer q.Close()
			f := newTestQueued(t, q, up, d)
			f.batch.linger = time.Hour // sent once the batch is full, or at stop
			f.batch.records = 3
			exportAll(t, f, gzippedExport(t, "a", ""), namedExport("b", ""), gzippedExport(t, "c", ""),
				gzippedExport(t, "d", ""), gzippedExport(t, "e", "p2"), gzippedExport(t, "f", "p2"), namedExport("g", "p2"))
			if q.Len() != 7 || d.count() != 0 {
				t.Fatalf("before delivery: %d queued, %d delivered; want 7 on disk, none delivered", q.Len(), d.count())
			}
			f.start()
			waitFor(t, "two full batches delivered", func() bool { return d.count() >= 6 })
			f.stop() // delivers the rest, without waiting
			want := []string{"a", "b", "c", "d", "e", "f", "g"}
			names, projects := d.list()
			upNames, reqs := up.accepted()
			if !slices.Equal(names, want) || !slices.Equal(upNames, want) {
				t.Fatalf("delivered %v, upstream accepted %v; want %v", names, upNames, want)
			}
			if !slices.Equal(projects, []string{"", "", "", "", "p2", "p2", "p2"}) {
				t.Errorf("projects %v, want them kept through the queue", projects)
			}
			// Batches: at most 3 exports, one project and one encoding
			// each. With gzip upstream, an export the client compressed
			// is sent as it came, and so is a batch of them.
			var got [][]string
			for _, r := range reqs {
				got = append(got, r.names)
				if compression == "none" && r.gzipped != nil {
					t.Errorf("sent gzip members to an upstream without compression")
				}
			}
			// Read three at a time: a b c, d e f, g.
			wantReqs := [][]string{{"a", "b", "c"}, {"d"}, {"e", "f"}, {"g"}}
			if compression == "gzip" {
				wantReqs = [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e", "f"}, {"g"}}
				for _, r := range reqs {
					if (r.gzipped != nil) != (r.names[0] != "b" && r.names[0] != "g") {
						t.Errorf("request %v: gzip members %v", r.names, r.gzipped != nil)
					}
				}
			}
			if !slices.EqualFunc(got, wantReqs, slices.Equal) {
				t.Errorf("requests %v, want %v", got, wantReqs)
			}
			if d.calls != len(wantReqs) {
				t.Errorf("indexed in %d calls, want one a request (%d)", d.calls, len(wantReqs))
			}
			if q.Len() != 0 {
				t.Errorf("queue holds %d after stop", q.Len())
			}
		})
	}
}

// A batch waits for more exports at most the linger after its first came.
func TestQueuedForwarderLinger(t *testing.T) {
	up := &flakyUpstream{compression: "gzip"}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	f.batch.linger = 200 * time.Millisecond
	f.start()
	defer f.stop()
	start := time.Now()
	exportAll(t, f, gzippedExport(t, "a", ""), gzippedExport(t, "b", ""))
	waitFor(t, "delivery", func() bool { return d.count() == 2 })
	if took := time.Since(start); took < f.batch.linger {
		t.Errorf("delivered after %s, before the linger (%s)", took, f.batch.linger)
	}
	if _, reqs := up.accepted(); len(reqs) != 1 {
		t.Errorf("%d requests, want the two exports in one", len(reqs))
	}
}

func TestQueuedForwarderOutage(t *testing.T) {
	up := &flakyUpstream{compression: "gzip"}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	f.start()
	defer f.stop()

	exportAll(t, f, namedExport("a", ""))
	waitFor(t, "a delivered", func() bool { return d.count() == 1 })

	// Phoenix down: exports are acknowledged, kept on disk, not indexed.
	up.set(errDown)
	exportAll(t, f, namedExport("b", "proj-b"), gzippedExport(t, "c", "proj-c"), namedExport("d", "proj-d"))
	waitFor(t, "a delivery tried", func() bool { up.mu.Lock(); defer up.mu.Unlock(); return up.seen > 2 })
	if d.count() != 1 || q.Len() != 3 {
		t.Fatalf("during the outage: delivered %d, queued %d; want 1, 3", d.count(), q.Len())
	}

	// Back: delivered in order, with their projects.
	up.set(nil)
	waitFor(t, "queue drained", func() bool { return d.count() == 4 })
	names, projects := d.list()
	upNames, _ := up.accepted()
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(names, want) || !slices.Equal(upNames, want) {
		t.Errorf("delivered %v, upstream accepted %v; want %v", names, upNames, want)
	}
	if !slices.Equal(projects, []string{"", "proj-b", "proj-c", "proj-d"}) {
		t.Errorf("projects = %v, want them kept through the queue", projects)
	}
	waitFor(t, "acknowledged", func() bool { return q.Len() == 0 })
}

// An export Phoenix refuses for good is dropped alone: its batch is sent
// again in halves. The app was answered; the operator is told.
func TestQueuedForwarderRefusedExport(t *testing.T) {
	up := &flakyUpstream{compression: "gzip"}
	up.refusing("bad")
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	f.batch.linger = time.Hour
	exportAll(t, f, namedExport("a", ""), namedExport("b", ""), namedExport("bad", ""), namedExport("c", ""), namedExport("d", ""))
	f.start()
	f.stop()
	names, _ := d.list()
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(names, want) {
		t.Errorf("delivered %v, want %v: all but the refused one", names, want)
	}
	if n := testutil.ToFloat64(f.metrics.dropped.WithLabelValues("refused")); n != 1 {
		t.Errorf("dropped %v spans as refused, want 1", n)
	}
	if q.Len() != 0 {
		t.Errorf("queue holds %d", q.Len())
	}
	// Refused for what it holds: the apps' next exports are queued as
	// before.
	if err := f.Export(context.Background(), namedExport("e", "")); err != nil || q.Len() != 1 {
		t.Errorf("after a refused export: %v, %d queued; want queued", err, q.Len())
	}
}

// Refused for a reason that is not the export's (authentication, here),
// the apps hear it: their exports go straight to Phoenix until one goes
// through, and then through the queue again.
func TestQueuedForwarderRefusedForGood(t *testing.T) {
	up := &flakyUpstream{compression: "gzip"}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	f.start()
	defer f.stop()
	ctx := context.Background()

	denied := otlp.Errorf(codes.Unauthenticated, "upstream answered 401: bad API key")
	up.set(denied)
	exportAll(t, f, namedExport("a", ""))
	waitFor(t, "the queued export dropped", func() bool { return q.Len() == 0 })
	var oe *otlp.Error
	if err := f.Export(ctx, namedExport("b", "")); !errors.As(err, &oe) || oe.Code != codes.Unauthenticated || q.Len() != 0 {
		t.Fatalf("while Phoenix refuses: err %v, queued %d; want Unauthenticated, nothing queued", err, q.Len())
	}
	// Fixed: the export goes through, straight, and the next is queued.
	up.set(nil)
	exportAll(t, f, namedExport("c", ""))
	if names, _ := d.list(); !slices.Equal(names, []string{"c"}) {
		t.Fatalf("delivered %v, want [c] at once", names)
	}
	exportAll(t, f, namedExport("d", ""))
	waitFor(t, "d delivered through the queue", func() bool { return d.count() == 2 })
	if n := testutil.ToFloat64(f.metrics.dropped.WithLabelValues("refused")); n != 1 {
		t.Errorf("dropped %v spans as refused, want 1 (a)", n)
	}
}

func TestQueuedForwarderFull(t *testing.T) {
	up := &flakyUpstream{compression: "gzip"}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 600)
	defer q.Close()
	f := newTestQueued(t, q, up, d) // not started: nothing drains

	// The budget: once full, the app is told to back off, never dropped.
	var full error
	for i := range 100 {
		if err := f.Export(context.Background(), gzippedExport(t, "x", "")); err != nil {
			full = err
			if i == 0 {
				t.Fatalf("the first export did not fit: %v", err)
			}
			break
		}
	}
	var oe *otlp.Error
	if !errors.As(full, &oe) || oe.Code != codes.ResourceExhausted || oe.RetryAfter <= 0 {
		t.Fatalf("full queue: err %v, want ResourceExhausted with a retry delay", full)
	}
	// What is kept in memory of the gzip exports is what was queued.
	if n, size := len(f.kept.m), int(f.kept.bytes); n != q.Len() || size != n*len(namedExport("x", "").Body) {
		t.Errorf("%d exports (%d bytes) kept in memory for %d queued", n, size, q.Len())
	}
}

// What a process left in the queue is delivered by the next, gzip exports
// decompressed from the disk (nothing of them is kept in memory).
func TestQueuedForwarderSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	up := &flakyUpstream{compression: "gzip"}
	up.set(errDown)
	d := &deliveries{}
	q := openQueue(t, dir, 1<<20)
	f := newTestQueued(t, q, up, d)
	f.start()
	exportAll(t, f, gzippedExport(t, "a", "p"), namedExport("b", "p"), gzippedExport(t, "c", "p"), gzippedExport(t, "d", "p"))
	f.stop()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	up.set(nil)
	q = openQueue(t, dir, 1<<20)
	defer q.Close()
	f = newTestQueued(t, q, up, d)
	f.start()
	defer f.stop()
	waitFor(t, "delivery after restart", func() bool { return d.count() == 4 })
	names, projects := d.list()
	if !slices.Equal(names, []string{"a", "b", "c", "d"}) || !slices.Equal(projects, []string{"p", "p", "p", "p"}) {
		t.Errorf("delivered %v (projects %v) after the restart, want [a b c d] in p", names, projects)
	}
	if _, reqs := up.accepted(); len(reqs) != 3 || len(reqs[2].names) != 2 || reqs[2].gzipped == nil {
		t.Errorf("requests %+v; want a, b, then c and d as one gzip batch", reqs)
	}
}

// stop delivers what waits for its batch, and stops at once when Phoenix is
// down, leaving the queue on disk.
func TestQueuedForwarderStop(t *testing.T) {
	up := &flakyUpstream{compression: "gzip"}
	d := &deliveries{}
	q := openQueue(t, t.TempDir(), 1<<20)
	defer q.Close()
	f := newTestQueued(t, q, up, d)
	f.batch.linger = time.Hour
	f.start()
	exportAll(t, f, namedExport("a", ""), namedExport("b", ""))
	f.stop()
	if d.count() != 2 || q.Len() != 0 {
		t.Fatalf("after stop: %d delivered, %d queued; want both delivered", d.count(), q.Len())
	}

	f = newTestQueued(t, q, up, d)
	f.batch.linger = time.Hour
	f.start()
	exportAll(t, f, namedExport("c", ""))
	up.set(errDown)
	start := time.Now()
	f.stop()
	if took := time.Since(start); took > time.Second || q.Len() != 1 {
		t.Fatalf("stop with Phoenix down took %s and left %d queued; want at once, 1", took, q.Len())
	}
}

func TestRecordHeader(t *testing.T) {
	e := namedExport("llm", "chatbot")
	tests := []struct {
		name string
		h    recordHeader
		body []byte
	}{
		{"protobuf", recordHeader{project: "chatbot", spans: 1, plainLen: len(e.Body), nonce: 7, id: 9}, e.Body},
		{"gzip", recordHeader{gzip: true, spans: 1, plainLen: len(e.Body), nonce: 7, id: 10}, gzippedExport(t, "llm", "").Gzipped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := append(tc.h.encode(), tc.body...)
			h, body, err := decodeRecordHeader(rec)
			if err != nil || h != tc.h || !bytes.Equal(body, tc.body) {
				t.Fatalf("round trip = %+v, %d bytes, %v; want %+v", h, len(body), err, tc.h)
			}
		})
	}
	v2 := append(tests[0].h.encode(), e.Body...)
	for _, bad := range [][]byte{
		nil, {9, 0, 0}, {recordV1, 5, 0, 'a'}, {recordV1, 0, 0, 0x0a, 0x05}, // the last: a well-framed record whose export is not OTLP
		v2[:recordV2Fixed-1], v2[:len(v2)-1], // short
		append([]byte{recordV2, 2}, v2[2:]...), // unknown flag
	} {
		if _, _, err := decodeRecordHeader(bad); err == nil {
			t.Errorf("decodeRecordHeader(%v) accepted a malformed record", bad)
		}
	}
}

// The records of both versions, as written to disk, are pinned: a change
// to the format must fail here, and give it a new version.
func TestRecordGolden(t *testing.T) {
	e := namedExport("llm", "chatbot")
	for _, tc := range []struct {
		file string
		rec  []byte
		want recordHeader
	}{
		{"testdata/record-v1.bin", append([]byte{recordV1, 7, 0}, append([]byte("chatbot"), e.Body...)...),
			recordHeader{project: "chatbot", spans: 1, plainLen: len(e.Body)}},
		{"testdata/record-v2.bin", append((recordHeader{project: "chatbot", spans: 1, plainLen: len(e.Body), nonce: 0x0102030405060708, id: 42}).encode(), e.Body...),
			recordHeader{project: "chatbot", spans: 1, plainLen: len(e.Body), nonce: 0x0102030405060708, id: 42}},
	} {
		if os.Getenv("UPDATE_GOLDEN") != "" {
			if err := os.MkdirAll(filepath.Dir(tc.file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tc.file, tc.rec, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		golden, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
		}
		if !bytes.Equal(golden, tc.rec) {
			t.Errorf("%s differs from the record written now: the format changed; give it a new version and keep reading this one", tc.file)
		}
		h, body, err := decodeRecordHeader(golden)
		if err != nil || h != tc.want || !strings.Contains(spanNames(body)[0], "llm") {
			t.Errorf("%s decodes as %+v, %v; want %+v", tc.file, h, err, tc.want)
		}
	}
}
