package feedback_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// fakeOrdering plays sharedindex.Votes: the latest digest of each key, and
// keys another replica is said to have a newer vote for.
type fakeOrdering struct {
	mu       sync.Mutex
	latest   map[string]string
	voted    []string // digests, in order
	writes   int
	newerFor map[string]bool // key -> a newer vote elsewhere
}

func (o *fakeOrdering) Voted(_ context.Context, key, digest string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.latest[key] = digest
	o.voted = append(o.voted, digest)
	return nil
}

func (o *fakeOrdering) Write(_ context.Context, key, digest string, write func() error) (bool, error) {
	o.mu.Lock()
	if o.newerFor[key] || o.latest[key] != digest {
		o.mu.Unlock()
		return true, nil
	}
	o.writes++
	o.mu.Unlock()
	return false, write()
}

func (o *fakeOrdering) supersedeAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.latest {
		o.newerFor[k] = true
	}
}

func newOrdering() *fakeOrdering {
	return &fakeOrdering{latest: map[string]string{}, newerFor: map[string]bool{}}
}

func TestOrderingRecordsOnlyTakenVotes(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPending = 1
	h := newHarness(t, cfg)
	o := newOrdering()
	h.svc.UseOrdering(o)
	h.submit(t, vote("chatcmpl-1", "up"))
	if _, err := h.svc.Submit([]feedback.Feedback{vote("chatcmpl-2", "up")}); !errors.Is(err, feedback.ErrFull) {
		t.Fatalf("second feedback: %v, want ErrFull", err)
	}
	if len(o.voted) != 1 {
		t.Fatalf("%d votes recorded, want 1: refused feedback must leave nothing in the Ordering", len(o.voted))
	}
	// The same vote has the same digest; another vote another.
	h.submit(t, vote("chatcmpl-1", "up"))
	h.submit(t, vote("chatcmpl-1", "down"))
	if len(o.voted) != 3 || o.voted[0] != o.voted[1] || o.voted[1] == o.voted[2] {
		t.Fatalf("digests %v: want the first two equal, the third different", o.voted)
	}
	_ = h.svc.Shutdown(context.Background())
}

func TestSupersededVoteIsNotWritten(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, h *harness) {
		o := newOrdering()
		h.svc.UseOrdering(o)
		h.submit(t, vote("chatcmpl-s", "up")) // waits for its span
		o.supersedeAll()                      // another replica took a newer vote
		h.indexSpan("chatcmpl-s", 1)
		synctest.Wait()
		st := h.one(t, "chatcmpl-s")
		if st.State != feedback.Superseded {
			t.Fatalf("state = %s (%s), want superseded", st.State, st.Reason)
		}
		if n := len(h.ann.Calls()); n != 0 {
			t.Fatalf("%d annotations written, want none", n)
		}
		if v := h.metric(t, "feedbackproxy_feedback_total", "outcome", "superseded"); v != 1 {
			t.Fatalf("superseded outcome = %v", v)
		}
	})
}

func TestOrderedVoteIsWritten(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, h *harness) {
		o := newOrdering()
		h.svc.UseOrdering(o)
		h.indexSpan("chatcmpl-w", 1)
		h.submit(t, vote("chatcmpl-w", "down"))
		synctest.Wait()
		if st := h.one(t, "chatcmpl-w"); st.State != feedback.Annotated || o.writes != 1 {
			t.Fatalf("state = %s, writes through the Ordering %d; want annotated once", st.State, o.writes)
		}
	})
}
