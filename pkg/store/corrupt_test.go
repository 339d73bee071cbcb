package store

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// template is a state.db with a history: feedbacks saved in small batches
// and some removed, index entries written in batches that evict the oldest,
// so it has free pages and a tree of some depth, as a running proxy's has.
type template struct {
	file     []byte
	pageSize int
	inUse    []bool                    // by page: a meta page or in the tree
	feedback map[string]feedback.Saved // by key
	index    map[string]index.Span     // by response id
}

var (
	templateOnce sync.Once
	templ        template
	templErr     error

	writeTemplate = flag.Bool("write-template", false, "write testdata/"+templateFile+" anew (it is what TestOpenDamaged damages)")
)

// templateFile is the template's file, kept because bbolt's hashmap free
// list places pages in map order: a file written anew has another layout
// at every run, and a damage another outcome. It is also the golden file
// of a whole state.db as this version writes it (TestTemplateFile).
const templateFile = "state-v1.db"

// kept is the template: 50 pending feedbacks, 200 index entries.
func kept(t testing.TB) template {
	t.Helper()
	templateOnce.Do(func() { templ, templErr = loadTemplate() })
	if templErr != nil {
		t.Fatal(templErr)
	}
	return templ
}

// loadTemplate writes the template's history to a new store, for the
// records it leaves, and takes the file from testdata.
func loadTemplate() (template, error) {
	tp, err := buildTemplate()
	if err != nil {
		return template{}, err
	}
	path := filepath.Join("testdata", templateFile)
	if *writeTemplate {
		if err := os.WriteFile(path, tp.file, 0o644); err != nil {
			return template{}, err
		}
	}
	if tp.file, err = os.ReadFile(path); err != nil {
		return template{}, fmt.Errorf("%w (go test -run TestTemplateFile -write-template writes it)", err)
	}
	m, err := parseMeta(tp.file)
	if err != nil {
		return template{}, err
	}
	tp.pageSize = int(m.pageSize)
	res := &scanResult{}
	meta, _ := readMetas(bytes.NewReader(tp.file), int64(len(tp.file)), res)
	w := &walker{r: bytes.NewReader(tp.file), size: int64(len(tp.file)), meta: meta, seen: make([]bool, meta.hwm), res: res}
	w.bucket(kindRoot, meta.root, nil, 0)
	if res.nproblems != 0 {
		return template{}, fmt.Errorf("template: %v", res.problems)
	}
	tp.inUse = w.seen
	tp.inUse[0], tp.inUse[1] = true, true
	return tp, nil
}

func buildTemplate() (template, error) {
	dir, err := os.MkdirTemp("", "store-template")
	if err != nil {
		return template{}, err
	}
	defer os.RemoveAll(dir)
	st, err := Open(dir, Options{LockTimeout: time.Second})
	if err != nil {
		return template{}, err
	}
	tp := template{feedback: map[string]feedback.Saved{}, index: map[string]index.Span{}}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var batch []feedback.Saved
	for i := range 70 {
		f := feedback.Feedback{
			ResponseID: fmt.Sprintf("chatcmpl-%03d", i), Label: ptr("thumbs-up"), Score: ptr(1.0),
			Explanation: ptr(strings.Repeat("fine answer ", i%7)), Name: feedback.DefaultName,
			Identifier: fmt.Sprintf("user-%d", i%13), AnnotatorKind: feedback.DefaultAnnotatorKind,
			Metadata: map[string]any{"app": "support-bot", "turn": float64(i)},
		}
		sv := feedback.Saved{Feedback: f, Received: t0.Add(time.Duration(i) * time.Second), Deadline: t0.Add(time.Hour)}
		batch = append(batch, sv)
		tp.feedback[string(feedbackKey(f.ResponseID, f.Name, f.Identifier, f.Target))] = sv
		if len(batch) == 1+i%3 {
			if err := st.SaveFeedback(batch); err != nil {
				return template{}, err
			}
			batch = nil
		}
	}
	if err := st.SaveFeedback(batch); err != nil {
		return template{}, err
	}
	for i := 0; i < 70; i += 7 {
		for _, j := range []int{i, i + 3} {
			f := tp.feedback[string(feedbackKey(fmt.Sprintf("chatcmpl-%03d", j), feedback.DefaultName, fmt.Sprintf("user-%d", j%13), ""))].Feedback
			if err := st.RemoveFeedback(f.ResponseID, f.Name, f.Identifier, f.Target); err != nil {
				return template{}, err
			}
			delete(tp.feedback, string(feedbackKey(f.ResponseID, f.Name, f.Identifier, f.Target)))
		}
	}
	var order []string
	for b := range 30 {
		var changes []index.Change
		for i := range 10 {
			n := b*10 + i
			id := fmt.Sprintf("chatcmpl-%04d", n)
			span := index.Span{
				TraceID: pcommon.TraceID{0x5b, 0x8e, 14: byte(n >> 8), 15: byte(n)}, SpanID: pcommon.SpanID{0xee, 6: byte(n >> 8), 7: byte(n)},
				ParentID: pcommon.SpanID{0xaa, 7: byte(n)}, Project: "support", Name: "ChatCompletion",
				Start: pcommon.Timestamp(1_772_000_000_000_000_000 + int64(n)), Seen: t0.Add(time.Duration(n) * time.Millisecond),
			}
			changes = append(changes, index.Change{Entry: index.Entry{ResponseID: id, Span: span}})
			tp.index[id] = span
			order = append(order, id)
		}
		// Capacity 200: the oldest go, in the same transaction.
		for len(order) > 200 {
			changes = append(changes, index.Change{Entry: index.Entry{ResponseID: order[0]}, Removed: true})
			delete(tp.index, order[0])
			order = order[1:]
		}
		if err := st.WriteIndex(changes); err != nil {
			return template{}, err
		}
	}
	if err := st.Close(); err != nil {
		return template{}, err
	}
	if tp.file, err = os.ReadFile(filepath.Join(dir, FileName)); err != nil {
		return template{}, err
	}
	return tp, nil
}

// TestTemplateFile opens the template's file: a state.db written by this
// version opens as it is and reads back what was written.
func TestTemplateFile(t *testing.T) {
	tp := kept(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), tp.file, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &levelCounter{}
	st, err := Open(dir, Options{Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Recovery() != nil || logs.count(slog.LevelWarn) != 0 {
		t.Fatalf("Recovery %v, %d warnings", st.Recovery(), logs.count(slog.LevelWarn))
	}
	out := readBack(t, st, tp)
	if out.fbKept != len(tp.feedback) || out.ixKept != len(tp.index) || out.fbChanged+out.ixChanged+(out.fbStray+out.ixStray) != 0 {
		t.Errorf("read back %d+%d+%d feedbacks and %d+%d index entries (unchanged+changed, %d stray), want %d and %d unchanged",
			out.fbKept, out.fbChanged, (out.fbStray + out.ixStray), out.ixKept, out.ixChanged, (out.fbStray + out.ixStray), len(tp.feedback), len(tp.index))
	}
}

// damageCase is a copy of the template's file, damaged.
type damageCase struct {
	kind, name string
	file       []byte
}

// damages are the cases of TestOpenDamaged: at every page of the file, runs
// of 200 bytes flipped (inverted) at its start, past its header, in its
// middle and at its end; at every page in use (free pages are never read),
// single bytes flipped in the fields that bbolt trusts (flags, count, the
// first element's position and key size) and in the data, and in the first
// and a middle key (out of order, which bbolt's Open panics on where no
// recover reaches); every page zeroed; the file cut to 0, 1, 100 bytes, to half, at every page
// boundary and in the middle of some pages.
func damages(tp template) []damageCase {
	ps, size := tp.pageSize, len(tp.file)
	var cases []damageCase
	add := func(kind, name string, f func(b []byte) []byte) {
		cases = append(cases, damageCase{kind: kind, name: name, file: f(bytes.Clone(tp.file))})
	}
	flip := func(off, n int) func([]byte) []byte {
		return func(b []byte) []byte {
			for i := off; i < min(off+n, len(b)); i++ {
				b[i] ^= 0xff
			}
			return b
		}
	}
	for p := range size / ps {
		for _, at := range []int{0, pageHeaderSize, ps / 2, ps - 200} {
			add("flip 200 bytes", fmt.Sprintf("page %d +%d", p, at), flip(p*ps+at, 200))
		}
		for _, at := range []int{8, 10, pageHeaderSize + 4, pageHeaderSize + 8, ps / 2} {
			if tp.inUse[p] {
				add("flip 1 byte", fmt.Sprintf("page %d +%d", p, at), flip(p*ps+at, 1))
			}
		}
		// A key out of order makes bbolt's Open panic in a goroutine of its
		// own, where nothing recovers: the one damage scanFile must catch.
		if pg := tp.file[p*ps:]; tp.inUse[p] && p > 1 {
			n := int(ne.Uint16(pg[10:]))
			for _, i := range []int{0, n / 2} {
				at := pageHeaderSize + i*elemSize
				pos := int(ne.Uint32(pg[at:]))
				if ne.Uint16(pg[8:]) == leafPage {
					pos = int(ne.Uint32(pg[at+4:]))
				}
				add("change a key", fmt.Sprintf("page %d key %d", p, i), flip(p*ps+at+pos, 1))
			}
		}
		add("zero a page", fmt.Sprintf("page %d", p), func(b []byte) []byte {
			clear(b[p*ps : (p+1)*ps])
			return b
		})
	}
	for _, n := range []int{0, 1, 100, ps - 1, ps + 100, size / 2, size - 1} {
		add("truncate", fmt.Sprintf("to %d", n), func(b []byte) []byte { return b[:n] })
	}
	for p := 2; p < size/ps; p++ {
		add("truncate", fmt.Sprintf("to page %d", p), func(b []byte) []byte { return b[:p*ps] })
		if p%4 == 0 {
			add("truncate", fmt.Sprintf("to page %d.5", p), func(b []byte) []byte { return b[:p*ps+ps/2] })
		}
	}
	return cases
}

// outcome is what one damaged file became.
type outcome struct {
	kind                           string
	recovered, lostUnknown         bool
	fbKept, ixKept                 int // read back unchanged
	fbChanged, ixChanged           int // read back under their key, different
	fbStray, ixStray               int // read back under a key not kept
	fbReportedLost, ixReportedLost int
	saved                          []feedback.Saved
	entries                        []index.Entry
}

// TestOpenDamaged damages a file of 50 pending feedbacks and 200 index
// entries in many ways: Open must return a store that works, report a
// Recovery whenever anything is not read back unchanged, keep the damaged
// file as it was, and count what it salvaged and lost truthfully.
func TestOpenDamaged(t *testing.T) {
	tp := kept(t)
	if len(tp.feedback) != 50 || len(tp.index) != 200 {
		t.Fatalf("template: %d feedbacks, %d index entries", len(tp.feedback), len(tp.index))
	}
	cases := damages(tp)
	if raceEnabled {
		// Each case runs alone: the race detector has little to find in
		// them, and makes them ten times slower. A third of each kind.
		seen := map[string]int{}
		cases = slices.DeleteFunc(cases, func(c damageCase) bool {
			seen[c.kind]++
			return seen[c.kind]%3 != 1
		})
		t.Logf("-race: %d cases, a third of each kind", len(cases))
	}
	outcomes := make([]outcome, len(cases))
	t.Run("cases", func(t *testing.T) {
		for i, c := range cases {
			t.Run(c.kind+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				outcomes[i] = checkDamaged(t, tp, c)
			})
		}
	})
	summarize(t, outcomes)
}

func checkDamaged(t *testing.T, tp template, c damageCase) outcome {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, c.file, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &levelCounter{}
	st, err := Open(dir, Options{LockTimeout: time.Second, Logger: slog.New(logs)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { _ = st.Close() }()
	rec := st.Recovery()
	out := readBack(t, st, tp)
	out.kind, out.recovered = c.kind, rec != nil
	saved, entries := out.saved, out.entries
	missing := len(tp.feedback) + len(tp.index) - (out.fbKept + out.fbChanged + out.ixKept + out.ixChanged)
	if rec == nil {
		// A byte changed inside a value that still decodes cannot be told
		// (no checksums in bbolt or in the records): counted, not failed.
		if missing != 0 || (out.fbStray+out.ixStray) != 0 {
			t.Errorf("no Recovery, yet %d records missing and %d under keys never written", missing, (out.fbStray + out.ixStray))
		}
		if logs.count(slog.LevelWarn) != 0 {
			t.Errorf("no Recovery, yet %d warnings or errors logged", logs.count(slog.LevelWarn))
		}
	} else {
		out.lostUnknown = rec.LostUnknown
		out.fbReportedLost, out.ixReportedLost = rec.FeedbackLost, rec.IndexLost
		t.Logf("%v", rec)
		if rec.FeedbackSalvaged != len(saved) || rec.IndexSalvaged != len(entries) {
			t.Errorf("Recovery says %d feedbacks and %d index entries salvaged, %d and %d read back",
				rec.FeedbackSalvaged, rec.IndexSalvaged, len(saved), len(entries))
		}
		// Exact counts add up: each record is read back or counted lost.
		if !rec.LostUnknown && (len(saved)+rec.FeedbackLost != len(tp.feedback) || len(entries)+rec.IndexLost != len(tp.index)) {
			t.Errorf("Recovery counts exactly %d+%d feedbacks and %d+%d index entries (read back + lost), want %d and %d",
				len(saved), rec.FeedbackLost, len(entries), rec.IndexLost, len(tp.feedback), len(tp.index))
		}
		if rec.Reason == "" || len(rec.Problems) == 0 || rec.Problems[0] != rec.Reason {
			t.Errorf("Recovery without a reason: %+v", rec)
		}
		checkNoPanic(t, rec)
		kept, err := os.ReadFile(rec.MovedTo)
		if err != nil || !bytes.Equal(kept, c.file) {
			t.Errorf("the damaged file is not kept as it was at %s: %v", rec.MovedTo, err)
		}
		if filepath.Dir(rec.MovedTo) != dir || !strings.HasPrefix(filepath.Base(rec.MovedTo), FileName+".damaged-") {
			t.Errorf("moved to %s", rec.MovedTo)
		}
		if logs.count(slog.LevelError) != 1 || logs.count(slog.LevelWarn) != 1 {
			t.Errorf("logged %d errors and %d warnings or errors, want the Recovery only", logs.count(slog.LevelError), logs.count(slog.LevelWarn))
		}
	}
	checkUsable(t, st, len(saved), len(entries))
	return out
}

// readBack loads st and sorts its records against the template's.
func readBack(t *testing.T, st *Store, tp template) outcome {
	t.Helper()
	var out outcome
	var err error
	if out.saved, err = st.LoadFeedback(); err != nil {
		t.Fatalf("LoadFeedback: %v", err)
	}
	if out.entries, err = st.LoadIndex(); err != nil {
		t.Fatalf("LoadIndex: %v", err)
	}
	for _, sv := range out.saved {
		f := sv.Feedback
		want, ok := tp.feedback[string(feedbackKey(f.ResponseID, f.Name, f.Identifier, f.Target))]
		switch {
		case !ok:
			out.fbStray++
		case reflect.DeepEqual(want.Feedback, f) && want.Received.Equal(sv.Received) && want.Deadline.Equal(sv.Deadline):
			out.fbKept++
		default:
			out.fbChanged++
		}
	}
	for _, e := range out.entries {
		want, ok := tp.index[e.ResponseID]
		if ok && want.Seen.Equal(e.Span.Seen) {
			want.Seen = e.Span.Seen
		}
		switch {
		case !ok:
			out.ixStray++
		case want == e.Span:
			out.ixKept++
		default:
			out.ixChanged++
		}
	}
	return out
}

// checkNoPanic fails if scanFile or bbolt panicked on the file: both are
// recovered, but the first is a bug in scanFile, the second a damage it
// missed, which could as well have panicked where nothing recovers.
func checkNoPanic(t *testing.T, rec *Recovery) {
	t.Helper()
	for _, p := range rec.Problems {
		if strings.HasPrefix(p, "reading the file failed") || strings.HasPrefix(p, "bbolt panicked") {
			t.Errorf("panic: %s", p)
		}
	}
}

// checkUsable writes to st, reopens it and reads the writes back.
func checkUsable(t *testing.T, st *Store, feedbacks, entries int) {
	t.Helper()
	dir := filepath.Dir(st.Path())
	f := feedback.Feedback{ResponseID: "after", Name: feedback.DefaultName, Score: ptr(1.0), AnnotatorKind: "HUMAN"}
	if err := st.SaveFeedback([]feedback.Saved{{Feedback: f, Received: time.Unix(1, 0), Deadline: time.Unix(2, 0)}}); err != nil {
		t.Fatalf("SaveFeedback after Open: %v", err)
	}
	if err := st.RemoveFeedback("after", feedback.DefaultName, "", ""); err != nil {
		t.Fatalf("RemoveFeedback after Open: %v", err)
	}
	if err := st.SaveFeedback([]feedback.Saved{{Feedback: f, Received: time.Unix(1, 0), Deadline: time.Unix(2, 0)}}); err != nil {
		t.Fatalf("SaveFeedback after Open: %v", err)
	}
	if err := st.WriteIndex([]index.Change{{Entry: index.Entry{ResponseID: "after", Span: testSpan(1, time.Unix(3, 0))}}}); err != nil {
		t.Fatalf("WriteIndex after Open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	*st = *again
	if r := again.Recovery(); r != nil {
		t.Errorf("reopened with a Recovery: %v", r)
	}
	if c, err := again.Count(); err != nil || c != (Counts{Feedback: feedbacks + 1, Index: entries + 1}) {
		t.Errorf("reopened: Count = %+v, %v; want %d and %d", c, err, feedbacks+1, entries+1)
	}
}

// summarize logs, by kind of damage, how much was read back: unchanged
// ("kept", of 50 feedbacks and 200 index entries), counted lost by the
// Recovery, changed without a Recovery (a value that still decodes), and
// with a Recovery the older copies read back: outdated versions of a record
// and records deleted before the damage.
func summarize(t *testing.T, outcomes []outcome) {
	type sum struct {
		cases, recovered, intact, unknown    int
		fb, ix, fbMin, ixMin, fbLost, ixLost int
		silent                               int // changed, no Recovery
		outdated, fbDeleted, ixDeleted       int // with a Recovery
	}
	var kinds []string
	sums := map[string]*sum{}
	for _, o := range outcomes {
		s := sums[o.kind]
		if s == nil {
			s = &sum{fbMin: 1 << 30, ixMin: 1 << 30}
			sums[o.kind] = s
			kinds = append(kinds, o.kind)
		}
		s.cases++
		if o.recovered {
			s.recovered++
		}
		if o.lostUnknown {
			s.unknown++
		}
		if o.fbKept == 50 && o.ixKept == 200 && o.fbChanged+o.ixChanged+o.fbStray+o.ixStray == 0 {
			s.intact++
		}
		s.fb += o.fbKept
		s.ix += o.ixKept
		s.fbMin, s.ixMin = min(s.fbMin, o.fbKept), min(s.ixMin, o.ixKept)
		s.fbLost += o.fbReportedLost
		s.ixLost += o.ixReportedLost
		if o.recovered {
			s.outdated += o.fbChanged + o.ixChanged
			s.fbDeleted += o.fbStray
			s.ixDeleted += o.ixStray
		} else {
			s.silent += o.fbChanged + o.ixChanged
		}
	}
	t.Logf("%-14s %5s %9s %6s %15s %16s %7s %7s %7s %6s %8s %10s %10s", "damage", "cases", "recovered", "intact",
		"feedback kept", "index kept", "fb lost", "ix lost", "unknown", "silent", "outdated", "fb deleted", "ix deleted")
	for _, k := range kinds {
		s := sums[k]
		t.Logf("%-14s %5d %9d %6d %5.1f%% (min %2d) %5.1f%% (min %3d) %7d %7d %7d %6d %8d %10d %10d", k, s.cases, s.recovered, s.intact,
			100*float64(s.fb)/float64(50*s.cases), s.fbMin, 100*float64(s.ix)/float64(200*s.cases), s.ixMin,
			s.fbLost, s.ixLost, s.unknown, s.silent, s.outdated, s.fbDeleted, s.ixDeleted)
	}
}

// levelCounter is a slog.Handler that counts records by level.
type levelCounter struct {
	mu     sync.Mutex
	levels []slog.Level
}

func (h *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levelCounter) WithGroup(string) slog.Handler            { return h }
func (h *levelCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.levels = append(h.levels, r.Level)
	return nil
}

// count returns how many records of level l or above were logged.
func (h *levelCounter) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.levels {
		if v >= l {
			n++
		}
	}
	return n
}

// FuzzOpenDamaged flips the bits of patch into the template at off, then
// cuts it to cut bytes (0: not cut): Open must neither fail nor crash (a
// panic in one of bbolt's own goroutines, which scanFile exists to prevent,
// kills the fuzzer), report any loss, and leave a store that works.
func FuzzOpenDamaged(f *testing.F) {
	f.Add(uint32(5*4096+10), []byte{0xff}, uint32(0))
	f.Add(uint32(2*4096+16), bytes.Repeat([]byte{0xff}, 200), uint32(0))
	f.Add(uint32(4096+56), []byte{0x01}, uint32(0))
	f.Add(uint32(0), []byte{}, uint32(70000))
	f.Fuzz(func(t *testing.T, off uint32, patch []byte, cut uint32) {
		tp := kept(t)
		b := bytes.Clone(tp.file)
		for i, p := range patch {
			b[(int(off)+i)%len(b)] ^= p
		}
		if cut > 0 {
			b = b[:int(cut)%len(b)]
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Open(dir, Options{LockTimeout: time.Second})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer func() { _ = st.Close() }()
		saved, err := st.LoadFeedback()
		if err != nil {
			t.Fatal(err)
		}
		entries, err := st.LoadIndex()
		if err != nil {
			t.Fatal(err)
		}
		if st.Recovery() == nil && (len(saved) != len(tp.feedback) || len(entries) != len(tp.index)) {
			t.Fatalf("no Recovery, yet %d feedbacks and %d index entries read back", len(saved), len(entries))
		}
		if rec := st.Recovery(); rec != nil {
			checkNoPanic(t, rec)
		}
		checkUsable(t, st, len(saved), len(entries))
	})
}
