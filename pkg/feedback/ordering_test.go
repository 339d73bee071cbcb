package feedback_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// fakeOrdering plays sharedindex.Votes: the latest (time, digest) claimed
// for each key, and keys another replica is said to hold a later vote for.
type fakeOrdering struct {
	mu       sync.Mutex
	claims   []string // digests, in the order they were claimed
	times    []time.Time
	writes   int
	newerFor bool // another replica claimed a later vote for every key
}

func (o *fakeOrdering) Write(_ context.Context, key, digest string, voted time.Time, write func() error) (bool, error) {
	o.mu.Lock()
	o.claims = append(o.claims, digest)
	o.times = append(o.times, voted)
	if o.newerFor {
		o.mu.Unlock()
		return true, nil
	}
	o.writes++
	o.mu.Unlock()
	return false, write()
}

func TestSupersededVoteIsNotWritten(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, h *harness) {
		o := &fakeOrdering{newerFor: true}
		h.svc.UseOrdering(o)
		h.submit(t, vote("chatcmpl-s", "up")) // waits for its span
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

// Each vote is claimed with the time it came in and a digest of its
// content: the same vote, the same digest; a new vote, a new one, later.
func TestOrderedVotesCarryTimeAndDigest(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, h *harness) {
		o := &fakeOrdering{}
		h.svc.UseOrdering(o)
		h.indexSpan("chatcmpl-w", 1)
		h.submit(t, vote("chatcmpl-w", "down"))
		synctest.Wait()
		time.Sleep(time.Second)
		h.submit(t, vote("chatcmpl-w", "down"))
		synctest.Wait()
		time.Sleep(time.Second)
		h.submit(t, vote("chatcmpl-w", "up"))
		synctest.Wait()
		if st := h.one(t, "chatcmpl-w"); st.State != feedback.Annotated || o.writes != 3 {
			t.Fatalf("state = %s, writes through the Ordering %d; want annotated, 3 writes", st.State, o.writes)
		}
		if o.claims[0] != o.claims[1] || o.claims[1] == o.claims[2] {
			t.Fatalf("digests %v: want the first two equal, the third different", o.claims)
		}
		if !o.times[0].Before(o.times[1]) || !o.times[1].Before(o.times[2]) {
			t.Fatalf("vote times %v: want each later", o.times)
		}
	})
}
