package proxy

import (
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/sharedindex"
)

// The bound for the defaults is the README's table: keep the two together.
func TestMemoryBoundOfTheDefaults(t *testing.T) {
	// cmd/proxy's defaults keep a data directory.
	got := MemoryBound(Config{DataDir: "/data"}) >> 20
	if got != 447 {
		t.Errorf("MemoryBound of the defaults = %d MiB; the README says ~447: update one or the other", got)
	}
	if mem := MemoryBound(Config{}) >> 20; mem != 426 {
		t.Errorf("MemoryBound in memory only = %d MiB; the README says 21 less than with the data directory: update one or the other", mem)
	}
	small := Config{FeedbackInflightBytes: 8 << 20, DataDir: "/data"}
	small.Limits.MaxConnections = 64
	small.Receiver.MaxInflightBytes = 32 << 20
	small.Feedback.MaxBytes = 32 << 20
	small.RateLimits.MaxKeys = 4000
	if got := MemoryBound(small) >> 20; got > 266 {
		t.Errorf("MemoryBound of deploy/kubernetes' settings = %d MiB, over the ~266 its comment promises", got)
	}
}

func TestMemoryBoundCountsTheSharedBacklog(t *testing.T) {
	base := MemoryBound(Config{})
	shared := MemoryBound(Config{Shared: sharedindex.Config{URL: "redis://localhost:6379/0"}})
	if got := (shared - base) >> 20; got < 19 || got > 21 {
		t.Errorf("--redis-url adds %d MiB to MemoryBound; the README says +20", got)
	}
}
