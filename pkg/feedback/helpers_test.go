package feedback_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// answer is what the fake annotator does on one call.
type answer struct {
	err   error
	delay time.Duration // the call takes this long (virtual time)
	gated bool          // the call waits for fakeAnnotator.release
}

var (
	accept   = answer{}
	notFound = answer{err: &phoenix.APIError{StatusCode: 404, Message: "Spans with IDs 0000000000000001 do not exist."}}
	gated    = answer{gated: true}
	// unreadableAnswer is Phoenix's 200 with a body that is not its JSON,
	// as a proxy in front of it may answer.
	unreadableAnswer = &phoenix.UnreadableAnswerError{StatusCode: 200, Err: errors.New("decoding: invalid character '<' looking for beginning of value")}
)

func status(code int) answer { return answer{err: &phoenix.APIError{StatusCode: code}} }

// call is one AnnotateSpans call as the fake saw it.
type call struct {
	at  time.Time
	ann phoenix.SpanAnnotation
}

// fakeAnnotator plays Phoenix's sync annotation endpoint. Call n gets
// answers[n], the last answer repeating; script, when set, decides instead.
// Successful calls get the ids "ann-1", "ann-2", ... in call order.
type fakeAnnotator struct {
	gate chan struct{}

	mu          sync.Mutex
	answers     []answer
	script      func(n int, a phoenix.SpanAnnotation) answer
	calls       []call
	inFlight    int
	maxInFlight int
}

func (f *fakeAnnotator) AnnotateSpans(ctx context.Context, anns []phoenix.SpanAnnotation) ([]string, error) {
	if len(anns) != 1 {
		panic(fmt.Sprintf("fakeAnnotator: want one annotation per call, got %d", len(anns)))
	}
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, call{at: time.Now(), ann: anns[0]})
	var a answer
	switch {
	case f.script != nil:
		a = f.script(n, anns[0])
	case len(f.answers) > 0:
		a = f.answers[min(n, len(f.answers)-1)]
	}
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()

	if a.gated {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a.delay > 0 {
		t := time.NewTimer(a.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a.err != nil {
		return nil, a.err
	}
	return []string{fmt.Sprintf("ann-%d", n+1)}, nil
}

// release lets n gated calls answer; they must be waiting already.
func (f *fakeAnnotator) release(n int) {
	for range n {
		f.gate <- struct{}{}
	}
}

func (f *fakeAnnotator) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// forgetCalls drops the calls recorded so far, and the annotations they
// hold, for tests that weigh the heap.
func (f *fakeAnnotator) forgetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = make([]call, len(f.calls)) // call n still gets id ann-(n+1)
}

func (f *fakeAnnotator) InFlight() (now, most int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight, f.maxInFlight
}

// syncBuffer is a log destination safe for the service's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a service with a real index, a fake Phoenix, its own registry
// and a captured log.
type harness struct {
	svc  *feedback.Service
	ix   *index.Index
	ann  *fakeAnnotator
	reg  *prometheus.Registry
	logs *syncBuffer
}

// testConfig keeps the numbers small enough to reason about: attempts at
// 0, 1, 3, 7, 15, 23, ... seconds after the first, expiry after a minute.
func testConfig() feedback.Config {
	return feedback.Config{
		MaxAge:     time.Minute,
		MinBackoff: time.Second,
		MaxBackoff: 8 * time.Second,
		SyncWait:   -1,
	}
}

// inBubble runs fn in a synctest bubble with a fresh harness and shuts the
// service down after it (synctest.Test fails on goroutines left behind).
func inBubble(t *testing.T, cfg feedback.Config, answers []answer, fn func(t *testing.T, h *harness)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, cfg, answers...)
		fn(t, h)
		if err := h.svc.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

func newHarness(t *testing.T, cfg feedback.Config, answers ...answer) *harness {
	t.Helper()
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		ix:   ix,
		ann:  &fakeAnnotator{answers: answers, gate: make(chan struct{})},
		reg:  prometheus.NewRegistry(),
		logs: &syncBuffer{},
	}
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	h.svc, err = feedback.New(cfg, ix, h.ann, feedback.NewMetrics(h.reg), log)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// span returns a distinct span for n.
func span(n byte) index.Span {
	return index.Span{
		TraceID: pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, n},
		SpanID:  pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, n},
		Project: "support",
		Name:    "ChatCompletion",
	}
}

// indexSpan indexes span(n) under responseID and tells the service, as the
// proxy's span path does.
func (h *harness) indexSpan(responseID string, n byte) index.Span {
	added := h.ix.Add([]index.Entry{{ResponseID: responseID, Span: span(n)}})
	h.svc.Indexed(added)
	return span(n)
}

func (h *harness) submit(t *testing.T, items ...feedback.Feedback) []feedback.Status {
	t.Helper()
	st, err := h.svc.Submit(items)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return st
}

// one returns the only feedback kept for responseID.
func (h *harness) one(t *testing.T, responseID string) feedback.Status {
	t.Helper()
	st := h.svc.Lookup(responseID)
	if len(st) != 1 {
		t.Fatalf("Lookup(%q) = %d feedbacks, want 1: %+v", responseID, len(st), st)
	}
	return st[0]
}

// metric returns the value of the counter or gauge name with the given
// label pair ("" for none), 0 if absent.
func (h *harness) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

type option func(*feedback.Feedback)

func identifier(id string) option { return func(f *feedback.Feedback) { f.Identifier = id } }

func metadata(md map[string]any) option { return func(f *feedback.Feedback) { f.Metadata = md } }

// vote is a thumbs feedback as a client would send it.
func vote(responseID, thumbs string, opts ...option) feedback.Feedback {
	f := feedback.Feedback{ResponseID: responseID, Thumbs: thumbs}
	for _, o := range opts {
		o(&f)
	}
	return f
}

func labelOf(a phoenix.SpanAnnotation) string {
	if a.Result.Label == nil {
		return "<nil>"
	}
	return *a.Result.Label
}
