package feedback

import (
	"context"
)

// Finder looks up, beyond the Resolver, the spans of responses this
// replica has not indexed: in the index replicas share (pkg/sharedindex),
// through pkg/seek. Find adds what it finds to the Resolver's index, so
// that a Lookup made after it returns hits; it may take a network round
// trip, bounded by its own timeout, and returns soon after ctx ends.
type Finder interface {
	Find(ctx context.Context, responseIDs []string)
}

// UseFinder makes SubmitAndWait ask f for the responses the Resolver does
// not know before it takes their feedback, so that feedback sent to a
// replica other than the one that saw the span is written (and answered
// "annotated") as at once as if it had been. Call it before the first
// Submit.
func (s *Service) UseFinder(f Finder) { s.finder = f }

// findUnknown asks the Finder for the response ids of items the Resolver
// misses.
func (s *Service) findUnknown(ctx context.Context, items []Feedback) {
	var unknown []string
	seen := make(map[string]struct{}, min(len(items), maxFind))
	for _, f := range items {
		if len(unknown) == maxFind {
			break // the rest wait for the Finder's own lookups
		}
		if _, dup := seen[f.ResponseID]; dup || f.ResponseID == "" {
			continue
		}
		seen[f.ResponseID] = struct{}{}
		if _, ok := s.resolver.Lookup(f.ResponseID); !ok {
			unknown = append(unknown, f.ResponseID)
		}
	}
	if len(unknown) > 0 {
		s.finder.Find(ctx, unknown)
	}
}

// maxFind is the most response ids of one request looked up before it is
// answered: one round trip's worth; a batch of thousands of unknown ids is
// looked up after, by the Finder's schedule.
const maxFind = 256

// Waiting returns the response ids that pending feedback waits for: their
// span is not in the Resolver's index yet.
func (s *Service) Waiting() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.waiting))
	for id := range s.waiting {
		ids = append(ids, id)
	}
	return ids
}

// IsWaiting reports whether pending feedback waits for the span of
// responseID.
func (s *Service) IsWaiting(responseID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.waiting[responseID]
	return ok
}
