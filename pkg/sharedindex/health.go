package sharedindex

import (
	"errors"
	"fmt"
	"time"
)

// Operations on Redis, the label of the error and duration metrics.
const (
	opWrite     = "write"
	opLookup    = "lookup"
	opSubscribe = "subscribe"
	opVote      = "vote"
)

// health is what the last call of each kind said. Guarded by Index.mu.
type health struct {
	failing map[string]failure // op -> its last error, until one succeeds
	closing bool
	// dropping: the backlog overflowed since the last write that
	// succeeded (logged once).
	dropping bool
}

type failure struct {
	err   string
	since time.Time
	last  time.Time // of the last call that failed
}

// quiet is how long after a failed call the calls a feedback waits for
// (lookups, votes) fail at once instead of asking a Redis that just did
// not answer: with Redis slow or blackholed, each would otherwise cost its
// whole timeout. The writer and the subscription keep trying on their own.
const quiet = time.Second

// errQuiet is what a call skipped during the quiet time returns.
var errQuiet = errors.New("sharedindex: Redis failed less than a second ago; not asked")

// unavailable reports whether calls of op's pool failed within quiet.
func (s *Index) unavailable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range []string{opWrite, opLookup} {
		if f, ok := s.health.failing[op]; ok && time.Since(f.last) < quiet {
			return true
		}
	}
	return false
}

// clearFailure forgets op's failure, as a success of op would.
func (s *Index) clearFailure(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, was := s.health.failing[op]; was {
		s.log.Info("shared index recovered", "op", op)
		delete(s.health.failing, op)
	}
}

func (s *Index) setHealth(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		// Writes and lookups share one connection pool: either
		// succeeding shows both can; the subscription has its own.
		ops := []string{op}
		if op != opSubscribe {
			ops = []string{opWrite, opLookup}
		}
		for _, o := range ops {
			if _, was := s.health.failing[o]; was {
				s.log.Info("shared index recovered", "op", o)
				delete(s.health.failing, o)
			}
		}
		if op == opWrite {
			s.health.dropping = false
		}
		return
	}
	if s.health.failing == nil {
		s.health.failing = map[string]failure{}
	}
	if f, ok := s.health.failing[op]; ok {
		f.last = time.Now()
		s.health.failing[op] = f
	} else {
		now := time.Now()
		s.health.failing[op] = failure{err: redactString(err.Error(), s.cfg.URL), since: now, last: now}
		s.log.Warn("shared index degraded: Redis calls fail; spans still reach Phoenix and this replica's own index still resolves what it saw",
			"op", op, "err", redactString(err.Error(), s.cfg.URL))
	}
}

// Degraded says what is wrong with the shared index, or "" when the last
// call of every kind succeeded.
func (s *Index) Degraded() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.health.failing) == 0 {
		return ""
	}
	msg := fmt.Sprintf("shared index at %s degraded:", Redacted(s.cfg.URL))
	for _, op := range []string{opWrite, opLookup, opSubscribe} {
		if f, ok := s.health.failing[op]; ok {
			msg += fmt.Sprintf(" %s failing since %s (%s);", op, f.since.UTC().Format(time.RFC3339), f.err)
		}
	}
	return msg + fmt.Sprintf(" %d entries waiting to be written", len(s.backlog)+s.writing)
}

// up is 1 when Degraded is "", for the metric.
func (s *Index) up() float64 {
	if s.Degraded() == "" {
		return 1
	}
	return 0
}
