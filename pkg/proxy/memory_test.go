package proxy

import (
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/sharedindex"
)

// The bound for the defaults is the README's table: keep the two together.
func TestMemoryBoundOfTheDefaults(t *testing.T) {
	got := MemoryBound(Config{}) >> 20
	if got != 426 {
		t.Errorf("MemoryBound of the defaults = %d MiB; the README says ~426: update one or the other", got)
	}
	small := Config{FeedbackInflightBytes: 8 << 20}
	small.Limits.MaxConnections = 64
	small.Receiver.MaxInflightBytes = 32 << 20
	small.Feedback.MaxBytes = 32 << 20
	small.RateLimits.MaxKeys = 4000
	if got := MemoryBound(small) >> 20; got > 245 {
		t.Errorf("MemoryBound of deploy/kubernetes' settings = %d MiB, over the ~245 its comment promises", got)
	}
}

func TestMemoryBoundCountsTheSharedBacklog(t *testing.T) {
	base := MemoryBound(Config{})
	shared := MemoryBound(Config{Shared: sharedindex.Config{URL: "redis://localhost:6379/0"}})
	if got := (shared - base) >> 20; got < 19 || got > 21 {
		t.Errorf("--redis-url adds %d MiB to MemoryBound; the README says +20", got)
	}
}
