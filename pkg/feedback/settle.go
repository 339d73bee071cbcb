package feedback

import (
	"errors"
	"fmt"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// next is what follows an attempt to write an annotation.
type next int

const (
	// retryLater: wait decision.wait, then attempt again.
	retryLater next = iota
	// writeNewer: a newer vote came in while this one was written; write
	// it at once.
	writeNewer
	// end: the feedback ends in decision.state.
	end
)

// attempt is one annotation request as settle judges it.
type attempt struct {
	ids []string // Phoenix's answer
	err error
	// superseded: a newer vote for the same key came in while the request
	// was in flight.
	superseded bool
	// backoff is the wait before the next attempt, unless Phoenix asks for
	// a longer one.
	backoff time.Duration
	// noSessionSince is when Phoenix first said the trace is in no
	// session (err is phoenix.ErrNoSession).
	noSessionSince time.Time
}

// decision is what an attempt leads to.
type decision struct {
	next   next
	state  State  // end: the final state
	annID  string // end as Annotated: the id Phoenix gave, if it could be read
	reason string // end: why (empty for a plain annotated); retryLater: the last answer
	wait   time.Duration
	result string // the attempt as the attempts metric counts it (attemptResult)
}

// settle decides what an attempt leads to, for a feedback received at
// received that expires at deadline, the answer having come at now. It
// only decides; the caller applies the decision under its lock.
func settle(a attempt, received, deadline, now time.Time) decision {
	d := decision{result: attemptResult(a.err)}
	stored := a.err == nil || phoenix.IsUnreadableAnswer(a.err)
	switch {
	case a.superseded && (stored || d.result == resultPermanent):
		// The newer vote is written now either way: if this one was
		// stored, the newer one replaces it (Phoenix upserts); if it was
		// refused, the newer one's content may be what Phoenix accepts.
		d.next = writeNewer
		return d
	case a.err == nil:
		d.next, d.state = end, Annotated
		if len(a.ids) > 0 {
			d.annID = a.ids[0]
		}
		return d
	case stored:
		// A sync annotation is stored before Phoenix answers 2xx: calling
		// it failed would be wrong, and another attempt could not make the
		// answer readable.
		d.next, d.state = end, Annotated
		d.reason = "Phoenix accepted the annotation, but its answer could not be read, so its id is unknown: " + a.err.Error()
		return d
	case d.result == resultPermanent:
		d.next, d.state = end, Failed
		d.reason = "Phoenix refused the annotation: " + a.err.Error()
		return d
	case d.result == resultNoSession && now.Sub(a.noSessionSince) >= sessionGrace:
		d.next, d.state = end, Failed
		d.reason = fmt.Sprintf("feedback on the session, but the trace is in none: none of its spans in Phoenix carried %s within %s", phoenix.SessionIDAttribute, sessionGrace)
		return d
	}
	left := deadline.Sub(now)
	retryAfter := phoenix.RetryAfter(a.err)
	if left <= 0 || retryAfter >= left {
		// The last attempt was at the deadline, or Phoenix asked for a
		// pause that outlasts it.
		d.next, d.state = end, Expired
		d.reason = fmt.Sprintf("Phoenix did not accept the annotation within %s; last answer: %v", deadline.Sub(received), a.err)
		return d
	}
	// The wait may be cut short so that the last attempt is made at the
	// deadline, when the span has had all the time it gets.
	d.next, d.reason = retryLater, a.err.Error()
	d.wait = min(max(a.backoff, retryAfter), left)
	return d
}

// sessionGrace is how long feedback on a session waits for a span of its
// trace that carries session.id, when those Phoenix has carry none: the
// span that sets it (often the root, which ends last) may be exported in a
// later batch than the LLM span.
const sessionGrace = 2 * time.Minute

// The results of an attempt, as the attempts metric counts them.
const (
	resultNoSession    = "no_session"
	resultOK           = "ok"
	resultUnreadable   = "unreadable_answer"
	resultSpanNotFound = "span_not_found"
	resultRetryable    = "retryable"
	resultPermanent    = "permanent"
)

// attemptResult names the outcome of one attempt, as the attempts metric
// counts it.
func attemptResult(err error) string {
	switch {
	case err == nil:
		return resultOK
	case phoenix.IsUnreadableAnswer(err):
		return resultUnreadable
	case phoenix.IsSpanNotFound(err):
		return resultSpanNotFound
	case errors.Is(err, phoenix.ErrNoSession):
		return resultNoSession
	case errors.As(err, new(*lookupError)):
		return resultRetryable
	case phoenix.IsRetryable(err):
		return resultRetryable
	}
	return resultPermanent
}
