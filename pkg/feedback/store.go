package feedback

import (
	"errors"
	"fmt"
	"time"
)

// ErrStore is returned by Submit when the feedback could not be written to
// the Store. Nothing of the batch was accepted; the client may retry.
var ErrStore = errors.New("feedback: cannot keep the feedback in the data directory")

// Saved is a pending feedback as a Store keeps it.
type Saved struct {
	// Feedback is normalized: thumbs already turned into label and score,
	// name and annotator kind filled in.
	Feedback Feedback
	// Received is when the first vote for its key came in; Deadline is when
	// it expires (Received + MaxAge at the time). A later vote for the same
	// key replaces Feedback and keeps both.
	Received, Deadline time.Time
	// Voted is when Feedback, the latest vote, came in (zero when kept by
	// a version that did not say: Received stands for it).
	Voted time.Time
}

// Store keeps pending feedback across restarts; *store.Store is one. A
// feedback is saved before Submit returns and removed when it ends.
type Store interface {
	// SaveFeedback writes feedbacks in one transaction, all or none; one
	// with the key (response id, name, identifier) of a feedback already
	// kept replaces it.
	SaveFeedback(saved []Saved) error
	// RemoveFeedback deletes the feedback kept under the key, if any.
	RemoveFeedback(responseID, name, identifier string, target Target) error
	// LoadFeedback returns every feedback kept.
	LoadFeedback() ([]Saved, error)
}

// Restore resumes the pending feedback st kept, and from then on keeps every
// pending feedback in st until it ends: Submit answers only once the batch
// is written (one transaction), and an end removes it. A feedback whose span
// the resolver knows (a restored index) is written at once; the others wait
// for it. Each keeps its original deadline; one already past it ends as
// expired at once, reported as any other. Call it once, before Submit and
// Indexed; it returns the number of feedbacks loaded.
func (s *Service) Restore(st Store) (int, error) {
	saved, err := st.LoadFeedback()
	if err != nil {
		return 0, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return 0, errors.New("feedback: Restore after Shutdown")
	case s.store != nil:
		return 0, errors.New("feedback: Restore called twice")
	}
	s.store = st
	var resolved, waiting, expired, invalid int
	for _, sv := range saved {
		f := sv.Feedback
		// Accepted before: held to the limits of then, not of now (a
		// version that took metadata up to a whole body).
		v, ferr := prepare(&f, MaxBodyBytes)
		if ferr == nil {
			// A target or comment this service's Annotator cannot write
			// (a data directory moved between setups) ends failed below.
			ferr = s.supports(f)
		}
		k := keyOf(f)
		if r, ok := s.byResponse[k.responseID][k]; ok && r.state == Pending {
			continue // submitted since: newer than what was kept
		}
		// Kept whatever MaxPending and MaxBytes say: it was accepted.
		r := s.addLocked(k, v, sv.Received, sv.Deadline)
		r.updated = now
		if !sv.Voted.IsZero() {
			r.voted = sv.Voted
		}
		switch {
		case ferr != nil:
			// Written by a version of the proxy that checked less.
			s.endLocked(r, Failed, "the feedback kept in the data directory is invalid: "+ferr.Error())
			invalid++
		case !now.Before(sv.Deadline):
			s.endLocked(r, Expired, fmt.Sprintf("the proxy was not running at its deadline, %s after it was received", sv.Deadline.Sub(sv.Received)))
			expired++
		default:
			if s.resolveLocked(r, now) {
				resolved++
			} else {
				waiting++
			}
		}
	}
	if len(saved) > 0 {
		s.log.Info("feedback restored from the data directory",
			"resolved", resolved, "waiting_for_span", waiting, "expired", expired, "invalid", invalid)
	}
	return len(saved), nil
}

// saveLocked writes the feedbacks Submit is about to accept, each with the
// received time and deadline its record will have. It runs under mu, so the
// file sees this write and the removal when the feedback ends in the order
// memory does; a new vote can never be overwritten by an older one, nor
// removed by the end of the vote it replaced.
func (s *Service) saveLocked(items []Feedback, now time.Time) error {
	saved := make([]Saved, len(items))
	for i, f := range items {
		received, deadline := now, now.Add(s.cfg.MaxAge)
		k := keyOf(f)
		if r, ok := s.byResponse[k.responseID][k]; ok && r.state == Pending {
			received, deadline = r.received, r.deadline
		}
		saved[i] = Saved{Feedback: f, Received: received, Deadline: deadline, Voted: now}
	}
	if err := s.store.SaveFeedback(saved); err != nil {
		s.log.Error("feedback refused: cannot write it to the data directory", "count", len(items), "err", err)
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	return nil
}

// removeLocked forgets an ended feedback on disk. If that fails, the
// feedback is written again after a restart, which Phoenix's upsert makes
// harmless for an annotated one.
func (s *Service) removeLocked(r *record) {
	if s.store == nil {
		return
	}
	if err := s.store.RemoveFeedback(r.key.responseID, r.key.name, r.key.identifier, r.key.target); err != nil {
		s.log.Error("feedback ended but is still in the data directory; it will be resumed at the next start",
			"response_id", r.key.responseID, "name", r.key.name, "identifier", r.key.identifier, "state", r.state, "err", err)
	}
}
