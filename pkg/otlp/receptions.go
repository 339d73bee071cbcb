package otlp

import (
	"context"
	"sync"
	"time"
)

// receptions bounds the gRPC messages being received at once. grpc-go reads
// a whole message before the proxy sees any of it, so the in-flight budget
// cannot be charged as the bytes arrive; instead a few calls at once hold a
// slot while their message comes (each up to MaxRequestBytes), a few more
// wait for one, and the rest are refused.
//
// A client that opens calls and sends nothing would hold every slot until
// the read timeout. So when a call finds no free slot, the holder whose
// connection has read nothing for longest, if for at least minHold, is told
// to give its slot up: a stalled call then holds a slot for about minHold
// at most while others need it. A holder whose connection keeps reading
// keeps its slot however long its message takes to come (until the read
// timeout): an export arriving slowly but steadily, as a large one over a
// slow link does, is received, not cut off and retried in vain. A holder's
// silence counts from when it took its slot at the earliest, and a call
// whose connection the listener does not know is judged by how long it has
// held its slot.
//
// Progress is known per connection only, from the bytes the listener reads
// (listener.Tracker), not per call: grpc-go tells nothing of a message
// until all of it has come. So a stalled call keeps its slot while another
// call on its connection sends; and a client can keep a connection
// "reading" with HTTP/2 control frames alone (PING, SETTINGS,
// WINDOW_UPDATE, or headers of calls refused at once), so that its stalled
// calls are never evicted: then only the read timeout ends their hold, and
// the slots such a client holds (up to all of them) are taken from others
// for that long. Safe for concurrent use.
type receptions struct {
	slots   chan struct{}
	waiting chan struct{}
	minHold time.Duration

	mu      sync.Mutex
	holders map[*reception]struct{}
}

// lastReader tells when a connection last read bytes (listener.Activity).
type lastReader interface{ LastRead() time.Time }

// reception is one call's hold on a slot; abort is closed when it must give
// the slot up.
type reception struct {
	since time.Time
	conn  lastReader // the call's connection; nil if unknown
	abort chan struct{}
}

// quietSince returns since when h has made no progress that can be seen:
// its connection's last read, but not before it took its slot.
func (h *reception) quietSince() time.Time {
	if h.conn == nil {
		return h.since
	}
	if t := h.conn.LastRead(); t.After(h.since) {
		return t
	}
	return h.since
}

func newReceptions(slots, waiting int, minHold time.Duration) *receptions {
	return &receptions{
		slots: make(chan struct{}, slots), waiting: make(chan struct{}, waiting),
		minHold: minHold, holders: map[*reception]struct{}{},
	}
}

// acquire takes a slot for a call on conn (nil if unknown), waiting up to
// wait (a waiter's place permitting) or until ctx ends; nil when refused.
func (rs *receptions) acquire(ctx context.Context, wait time.Duration, conn lastReader) *reception {
	select {
	case rs.slots <- struct{}{}:
		return rs.hold(conn)
	default:
	}
	select {
	case rs.waiting <- struct{}{}:
		defer func() { <-rs.waiting }()
	default:
		rs.evictStalled()
		return nil
	}
	rs.evictStalled()
	t := time.NewTimer(wait)
	defer t.Stop()
	// Asked again while waiting: a holder may stall since. Twice per
	// minHold, so that one is evicted within 1.5 minHold of going quiet.
	tick := time.NewTicker(max(rs.minHold/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case rs.slots <- struct{}{}:
			return rs.hold(conn)
		case <-tick.C:
			rs.evictStalled()
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (rs *receptions) hold(conn lastReader) *reception {
	h := &reception{since: time.Now(), conn: conn, abort: make(chan struct{})}
	rs.mu.Lock()
	rs.holders[h] = struct{}{}
	rs.mu.Unlock()
	return h
}

// release gives h's slot back.
func (rs *receptions) release(h *reception) {
	rs.mu.Lock()
	delete(rs.holders, h)
	rs.mu.Unlock()
	<-rs.slots
}

// evictStalled tells the holder that has made no progress for longest, for
// at least minHold, to give its slot up.
func (rs *receptions) evictStalled() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var quietest *reception
	var quietSince time.Time
	for h := range rs.holders {
		if t := h.quietSince(); quietest == nil || t.Before(quietSince) {
			quietest, quietSince = h, t
		}
	}
	if quietest == nil || time.Since(quietSince) < rs.minHold {
		return
	}
	close(quietest.abort)
	delete(rs.holders, quietest) // told once; release frees its slot
}

// busy returns the slots and waiting places taken, for tests.
func (rs *receptions) busy() (slots, waiting int) { return len(rs.slots), len(rs.waiting) }
