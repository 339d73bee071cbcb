package feedback_test

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// heapInUse is the memory the program holds after a collection: the heap
// and the goroutine stacks.
func heapInUse() int {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int(m.HeapAlloc + m.StackInuse)
}

// fullMetadata returns metadata whose JSON is MaxMetadataBytes or just
// under, in two shapes: one long string, and many small numbers, which a
// map[string]any holds in several times the bytes of its JSON.
var fullMetadata = []struct {
	name string
	md   func(i int) map[string]any
}{
	{"one long string", func(i int) map[string]any {
		// {"blob":"..."} is 11 bytes around the string.
		return map[string]any{"blob": fmt.Sprintf("%08d", i) + strings.Repeat("x", feedback.MaxMetadataBytes-11-8)}
	}},
	{"many small keys", func(i int) map[string]any {
		md := map[string]any{}
		// "k0000":12345, is 14 bytes.
		for k := range (feedback.MaxMetadataBytes - 2) / 14 {
			md[fmt.Sprintf("k%04d", k)] = float64(10000 + (i+k)%90000)
		}
		return md
	}},
}

// TestByteBudgetHoldsUnderFlood sends feedback with metadata at the limit,
// for responses whose spans never come, until the service refuses it: the
// refusal is by bytes (the count limit is far), the bytes counted stay
// within MaxBytes, and so does the heap the feedback really takes.
func TestByteBudgetHoldsUnderFlood(t *testing.T) {
	const maxBytes = 8 << 20
	for _, shape := range fullMetadata {
		t.Run(shape.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.MaxBytes, cfg.MaxPending = maxBytes, 1<<20
				h := newHarness(t, cfg, accept)
				before := heapInUse()
				accepted := 0
				var err error
				for err == nil {
					_, err = h.svc.Submit([]feedback.Feedback{vote(fmt.Sprintf("chatcmpl-%d", accepted), "up", metadata(shape.md(accepted)))})
					if err == nil {
						accepted++
					}
				}
				grown := heapInUse() - before
				// Feedback for spans never seen takes three quarters of
				// the budget at most (ErrFullWaiting, an ErrFull).
				const limit = maxBytes - maxBytes/4
				if !errors.Is(err, feedback.ErrFullWaiting) || !errors.Is(err, feedback.ErrFull) {
					t.Fatalf("after %d accepted: Submit = %v, want ErrFullWaiting, an ErrFull", accepted, err)
				}
				pending := h.metric(t, "feedbackproxy_feedback_bytes", "state", "pending")
				perRecord := int(pending) / accepted
				if pending > limit || pending+float64(perRecord) <= limit {
					t.Errorf("%v bytes pending after the refusal, want at most %d and within one feedback (%d) of it", pending, limit, perRecord)
				}
				if got := h.metric(t, "feedbackproxy_feedback_capacity_bytes", "", ""); got != maxBytes {
					t.Errorf("capacity gauge = %v, want %d", got, maxBytes)
				}
				// The estimate is honest: what the feedback takes on the
				// heap stays within the budget, and not far below it.
				if grown > maxBytes || grown < maxBytes/2 {
					t.Errorf("heap grew by %d bytes for %d feedbacks, want between %d and %d", grown, accepted, maxBytes/2, maxBytes)
				}
				t.Logf("%d feedbacks accepted; estimated %d bytes each, heap %d bytes each (%.1f MiB for a budget of %d MiB)",
					accepted, perRecord, grown/accepted, float64(grown)/(1<<20), maxBytes>>20)

				// The API says so: 429, Retry-After, and that it is memory.
				rec := h.serve("POST", "/feedback", `{"response_id":"one-more","thumbs":"up","metadata":{"blob":"`+strings.Repeat("x", feedback.MaxMetadataBytes-11)+`"}}`)
				_, msg := apiErr(t, rec)
				if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || !strings.Contains(msg, fmt.Sprintf("%d bytes", maxBytes)) {
					t.Errorf("POST = %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
				}
				if h.svc.Pending() != accepted || h.svc.Lookup("one-more") != nil {
					t.Errorf("Pending() = %d, want the %d accepted", h.svc.Pending(), accepted)
				}
			})
		})
	}
}

// TestEndedFeedbackGivesBytesBack: once annotated, a feedback keeps only
// what GET shows, so its metadata goes; and ended feedback, being only
// history, is forgotten oldest first when pending feedback needs its room.
func TestEndedFeedbackGivesBytesBack(t *testing.T) {
	const maxBytes = 1 << 20
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxBytes, cfg.MaxPending = maxBytes, 1<<20
		// The forty first are annotated; then Phoenix answers 503, so
		// that later feedback stays pending, its span known.
		const n = 40
		answers := make([]answer, n+1)
		answers[n] = status(503)
		h := newHarness(t, cfg, answers...)

		// Forty feedbacks with 16 KiB of metadata each fit in 1 MiB
		// while pending, and are annotated.
		md := fullMetadata[0].md
		for i := range n {
			h.indexSpan(fmt.Sprintf("chatcmpl-%d", i), byte(i))
		}
		before := heapInUse()
		for i := range n {
			h.submit(t, vote(fmt.Sprintf("chatcmpl-%d", i), "up", metadata(md(i))))
			synctest.Wait() // annotated in this order
		}
		for i := range n {
			wantState(t, h.one(t, fmt.Sprintf("chatcmpl-%d", i)), feedback.Annotated)
		}
		if c := h.ann.Calls(); len(c[0].ann.Metadata["blob"].(string)) != feedback.MaxMetadataBytes-11 {
			t.Fatalf("the metadata written is not what was sent: %d bytes of blob", len(c[0].ann.Metadata["blob"].(string)))
		}
		h.ann.forgetCalls()
		ended := h.metric(t, "feedbackproxy_feedback_bytes", "state", "ended")
		if got := h.metric(t, "feedbackproxy_feedback_bytes", "state", "pending"); got != 0 {
			t.Errorf("%v bytes pending once all ended, want 0", got)
		}
		// What is left per feedback: the record and its strings, no metadata.
		if per := int(ended) / n; per > 2<<10 {
			t.Errorf("an ended feedback is counted for %d bytes, want under 2 KiB", per)
		}
		grown := heapInUse() - before
		if grown > n*4<<10 {
			t.Errorf("heap grew by %d bytes for %d ended feedbacks, want under 4 KiB each: the metadata is still held", grown, n)
		}
		t.Logf("%d ended feedbacks: estimated %.0f bytes each, heap %d bytes each", n, ended/n, grown/n)

		// Pending feedback takes the room of the oldest ended ones, up to
		// the whole budget; ended ones are not a reason to refuse it.
		accepted := 0
		for {
			id := fmt.Sprintf("later-%d", accepted)
			h.indexSpan(id, byte(accepted))
			if _, err := h.svc.Submit([]feedback.Feedback{vote(id, "up", metadata(md(accepted)))}); err != nil {
				if !errors.Is(err, feedback.ErrFullBytes) {
					t.Fatalf("Submit = %v, want ErrFullBytes", err)
				}
				break
			}
			accepted++
		}
		pending := h.metric(t, "feedbackproxy_feedback_bytes", "state", "pending")
		ended = h.metric(t, "feedbackproxy_feedback_bytes", "state", "ended")
		perRecord := pending / float64(accepted)
		if pending+ended > maxBytes || pending+perRecord <= maxBytes {
			t.Errorf("%v bytes pending and %v ended, want at most %d in all and pending within one feedback (%v) of it", pending, ended, maxBytes, perRecord)
		}
		forgotten := int(h.metric(t, "feedbackproxy_feedback_evictions_total", "reason", "max_bytes"))
		if forgotten == 0 || forgotten > n {
			t.Fatalf("%d ended feedbacks forgotten for bytes, want between 1 and %d", forgotten, n)
		}
		// Forgotten oldest first: GET no longer knows the first ones, still
		// knows the last ones.
		if st := h.svc.Lookup("chatcmpl-0"); st != nil {
			t.Errorf("the oldest ended feedback is still kept: %+v", st)
		}
		for i := range n {
			if kept := h.svc.Lookup(fmt.Sprintf("chatcmpl-%d", i)) != nil; kept != (i >= forgotten) {
				t.Errorf("chatcmpl-%d kept: %v; want the %d oldest forgotten", i, kept, forgotten)
			}
		}
		if err := h.svc.Shutdown(t.Context()); err != nil {
			t.Error(err)
		}
	})
}

// Feedback for responses never seen (made-up ids, a flood) takes three
// quarters of the caps at most: feedback for a span the proxy has seen is
// still taken, and annotated.
func TestWaitingFeedbackLeavesRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxPending = 100
		h := newHarness(t, cfg, accept)
		accepted := 0
		for {
			if _, err := h.svc.Submit([]feedback.Feedback{vote(fmt.Sprintf("made-up-%d", accepted), "up")}); err != nil {
				if !errors.Is(err, feedback.ErrFullWaiting) {
					t.Fatalf("after %d: Submit = %v, want ErrFullWaiting", accepted, err)
				}
				break
			}
			accepted++
		}
		if accepted != 75 {
			t.Errorf("%d feedbacks for unseen spans accepted, want 75 (3/4 of MaxPending)", accepted)
		}
		h.indexSpan("chatcmpl-seen", 1)
		h.submit(t, vote("chatcmpl-seen", "up"))
		// Also when the waiting ones hold past their share (a record's
		// size grows with the reasons it gathers).
		h.indexSpan("chatcmpl-seen-2", 2)
		h.svc.InflateWaitingForTest(feedback.DefaultMaxBytes)
		h.submit(t, vote("chatcmpl-seen-2", "up"))
		synctest.Wait()
		wantState(t, h.one(t, "chatcmpl-seen"), feedback.Annotated)
	})
}

// One batch is held to the caps as well as one feedback at a time: its
// records are counted, before they are taken, as they will be held.
func TestByteBudgetHoldsForABatch(t *testing.T) {
	const maxBytes = 8 << 20
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxBytes, cfg.MaxPending = maxBytes, 1<<20
		h := newHarness(t, cfg, accept)
		batch := make([]feedback.Feedback, 1700)
		for i := range batch {
			batch[i] = vote(fmt.Sprintf("made-up-%d", i), "up")
		}
		_, err := h.svc.Submit(batch)
		pending := h.metric(t, "feedbackproxy_feedback_bytes", "state", "pending")
		if err == nil && pending > maxBytes-maxBytes/4 {
			t.Fatalf("a batch took %v bytes for feedback waiting for its span, over its share of %d", pending, maxBytes-maxBytes/4)
		}
		if err != nil && !errors.Is(err, feedback.ErrFull) && !errors.Is(err, feedback.ErrBatchTooLarge) {
			t.Fatalf("Submit = %v, want nil, an ErrFull or ErrBatchTooLarge", err)
		}
	})
}

// Metadata over the limit is refused on its text, before it is decoded
// into maps many times its size.
func TestLargeMetadataRefusedBeforeDecoding(t *testing.T) {
	h := newHarness(t, testConfig(), accept)
	body := `{"response_id":"chatcmpl-1","thumbs":"up","metadata":{"x":[` + strings.Repeat("1,", 400_000) + `1]}}`
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec := h.serve("POST", "/feedback", body)
	runtime.ReadMemStats(&after)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"field":"metadata"`) {
		t.Fatalf("%d %s; want 400 on metadata", rec.Code, rec.Body.String())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*uint64(len(body)) {
		t.Errorf("refusing %d bytes of metadata allocated %d bytes", len(body), alloc)
	}
}
