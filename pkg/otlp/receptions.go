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
// the read timeout. So when a call finds no free slot, the call that has
// held one longest, if it has held it for at least minHold, is told to give
// it up: a stalled call then holds a slot for about minHold at most while
// others need it, and an export on a healthy link, received in
// milliseconds, is never the one cut off. Safe for concurrent use.
type receptions struct {
	slots   chan struct{}
	waiting chan struct{}
	minHold time.Duration

	mu      sync.Mutex
	holders map[*reception]struct{}
}

// reception is one call's hold on a slot; abort is closed when it must give
// the slot up.
type reception struct {
	since time.Time
	abort chan struct{}
}

func newReceptions(slots, waiting int, minHold time.Duration) *receptions {
	return &receptions{
		slots: make(chan struct{}, slots), waiting: make(chan struct{}, waiting),
		minHold: minHold, holders: map[*reception]struct{}{},
	}
}

// acquire takes a slot, waiting up to wait (a waiter's place permitting)
// or until ctx ends; nil when refused.
func (rs *receptions) acquire(ctx context.Context, wait time.Duration) *reception {
	select {
	case rs.slots <- struct{}{}:
		return rs.hold()
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
	// Asked again while waiting: a slot held since may stall too.
	tick := time.NewTicker(rs.minHold)
	defer tick.Stop()
	for {
		select {
		case rs.slots <- struct{}{}:
			return rs.hold()
		case <-tick.C:
			rs.evictStalled()
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (rs *receptions) hold() *reception {
	h := &reception{since: time.Now(), abort: make(chan struct{})}
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

// evictStalled tells the call that has held a slot longest, for at least
// minHold, to give it up.
func (rs *receptions) evictStalled() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var oldest *reception
	for h := range rs.holders {
		if oldest == nil || h.since.Before(oldest.since) {
			oldest = h
		}
	}
	if oldest == nil || time.Since(oldest.since) < rs.minHold {
		return
	}
	close(oldest.abort)
	delete(rs.holders, oldest) // told once; release frees its slot
}

// busy returns the slots and waiting places taken, for tests.
func (rs *receptions) busy() (slots, waiting int) { return len(rs.slots), len(rs.waiting) }
