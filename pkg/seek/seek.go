package seek

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// Source is a place to look response ids up beyond the replica's own
// index. It returns what it found; ids it does not hold are left out.
type Source interface {
	Find(ctx context.Context, responseIDs []string) ([]index.Entry, error)
}

// Waiters is what waits for spans: *feedback.Service.
type Waiters interface {
	// Waiting returns the response ids feedback waits for.
	Waiting() []string
	// IsWaiting reports whether feedback waits for responseID.
	IsWaiting(responseID string) bool
}

// schedule is when a source is asked again about an id it did not hold.
type schedule struct {
	first  time.Duration // after the id starts waiting
	factor float64
	max    time.Duration
	batch  int // ids per Find
	tries  int // lookups of an id before it is left alone; 0: no end
}

var (
	sharedSchedule = schedule{first: 0, factor: 2, max: time.Minute, batch: 256}
	// Phoenix: at 5, 10, 25, 70, 205 and 610 s after the feedback came,
	// then no more: a span Phoenix does not hold ten minutes on is not
	// coming, and each lookup scans a project.
	phoenixSchedule = schedule{first: 5 * time.Second, factor: 3, max: 10 * time.Minute, batch: 16, tries: 6}
	// With a shared index, which finds what other replicas indexed at
	// once, Phoenix is only asked about what it misses: from 30 s on.
	phoenixBehindShared = schedule{first: 30 * time.Second, factor: 3, max: 10 * time.Minute, batch: 16, tries: 4}
)

// tick is how often a source's loop looks at what is due.
const tick = 250 * time.Millisecond

// Seeker looks up the spans feedback waits for. It is safe for concurrent
// use.
type Seeker struct {
	waiters Waiters
	learn   func([]index.Entry)
	shared  *run // nil without a shared index
	phoenix *run // nil without the Phoenix fallback
	metrics *Metrics
	log     *slog.Logger
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// New returns a Seeker that looks in shared and then in phoenix (either
// may be nil) for the ids waiters wait for, and hands what it finds to
// learn. It does no I/O until Start.
func New(waiters Waiters, learn func([]index.Entry), shared, phoenix Source, metrics *Metrics, log *slog.Logger) *Seeker {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Seeker{waiters: waiters, learn: learn, metrics: metrics, log: log}
	if shared != nil {
		k.shared = newRun("shared", shared, sharedSchedule)
	}
	if phoenix != nil {
		sched := phoenixSchedule
		if shared != nil {
			sched = phoenixBehindShared
		}
		k.phoenix = newRun("phoenix", phoenix, sched)
	}
	metrics.observe(k)
	return k
}

// Start runs a loop per source until Stop.
func (k *Seeker) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	for _, r := range []*run{k.shared, k.phoenix} {
		if r != nil {
			k.wg.Go(func() { k.loop(ctx, r) })
		}
	}
}

// Stop ends the loops and waits for them; a lookup in flight is cancelled.
func (k *Seeker) Stop() {
	if k.cancel != nil {
		k.cancel()
	}
	k.wg.Wait()
}

// Find asks the shared index, at once, for the ids the caller's index
// misses, and learns what it holds (feedback.Finder). Phoenix is left to
// the loop: it is slow, rate-limited, and rarely has a span that recent.
func (k *Seeker) Find(ctx context.Context, responseIDs []string) {
	if k.shared == nil {
		return
	}
	found, err := k.shared.src.Find(ctx, responseIDs)
	k.count(k.shared, len(responseIDs), len(found), err)
	if err != nil {
		k.log.Debug("shared index lookup failed; the feedback waits and is looked up again", "err", err)
		return
	}
	k.learnFound(k.shared, found)
}

// Notified takes an entry another replica announced, if feedback here waits
// for it (sharedindex's onIndexed).
func (k *Seeker) Notified(e index.Entry) {
	if k.waiters.IsWaiting(e.ResponseID) {
		k.metrics.found.WithLabelValues("announcement").Inc()
		k.learnFound(nil, []index.Entry{e})
	}
}

// Resync makes every waiting id due at once in the shared index: called
// when the subscription (re)connects, as announcements made while it was
// down are lost.
func (k *Seeker) Resync() {
	if k.shared == nil {
		return
	}
	k.shared.mu.Lock()
	now := time.Now()
	for _, d := range k.shared.due {
		d.at = now
	}
	k.shared.mu.Unlock()
	k.shared.kickNow()
}

func (k *Seeker) learnFound(from *run, found []index.Entry) {
	if len(found) == 0 {
		return
	}
	for _, r := range []*run{k.shared, k.phoenix} {
		if r != nil {
			r.forget(found)
		}
	}
	k.learn(found)
}

func (k *Seeker) count(r *run, asked, found int, err error) {
	if err != nil {
		k.metrics.lookups.WithLabelValues(r.name, "error").Add(float64(asked))
		return
	}
	k.metrics.lookups.WithLabelValues(r.name, "hit").Add(float64(found))
	k.metrics.lookups.WithLabelValues(r.name, "miss").Add(float64(asked - found))
	if found > 0 {
		k.metrics.found.WithLabelValues(r.name).Add(float64(found))
	}
}

// loop asks r about the ids that are due, every tick, until ctx ends.
func (k *Seeker) loop(ctx context.Context, r *run) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
		r.sync(k.waiters.Waiting(), time.Now())
		for {
			batch := r.dueBatch(time.Now())
			if len(batch) == 0 {
				break
			}
			found, err := r.src.Find(ctx, batch)
			if ctx.Err() != nil {
				return
			}
			k.count(r, len(batch), len(found), err)
			if err != nil {
				k.log.Debug("lookup failed; retried later", "source", r.name, "ids", len(batch), "err", err)
			}
			k.learnFound(r, found)
			r.reschedule(batch, time.Now())
		}
	}
}

// run is one source and the schedule of each id it was not found in.
type run struct {
	name  string
	src   Source
	sched schedule
	kick  chan struct{}

	mu  sync.Mutex
	due map[string]*due
}

type due struct {
	at    time.Time
	delay time.Duration
	tries int
	spent bool // the schedule's tries are used up: no more lookups
}

func newRun(name string, src Source, s schedule) *run {
	return &run{name: name, src: src, sched: s, kick: make(chan struct{}, 1), due: map[string]*due{}}
}

func (r *run) kickNow() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// sync follows the waiting ids: new ones get their first lookup, those no
// longer waiting are forgotten.
func (r *run) sync(waiting []string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live := make(map[string]struct{}, len(waiting))
	for _, id := range waiting {
		live[id] = struct{}{}
		if _, ok := r.due[id]; !ok {
			r.due[id] = &due{at: now.Add(r.sched.first), delay: max(r.sched.first, time.Second)}
		}
	}
	for id := range r.due {
		if _, ok := live[id]; !ok {
			delete(r.due, id)
		}
	}
}

// dueBatch returns up to a batch of ids due at now, the longest due first,
// and marks them not due until reschedule.
func (r *run) dueBatch(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	type item struct {
		id    string
		at    time.Time
		tries int
	}
	var items []item
	for id, d := range r.due {
		if !d.spent && !d.at.After(now) {
			items = append(items, item{id, d.at, d.tries})
		}
	}
	// Ids asked about least first: a flood of feedback for made-up ids,
	// asked again and again, never holds back one that just came.
	slices.SortFunc(items, func(a, b item) int {
		if a.tries != b.tries {
			return a.tries - b.tries
		}
		return a.at.Compare(b.at)
	})
	n := min(len(items), r.sched.batch)
	batch := make([]string, n)
	for i := range n {
		batch[i] = items[i].id
		r.due[items[i].id].at = now.Add(time.Hour) // in flight
	}
	return batch
}

// reschedule sets the next lookup of ids that were asked about and are
// still due (not found): further apart each time, up to the schedule's max.
func (r *run) reschedule(ids []string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		d, ok := r.due[id]
		if !ok {
			continue
		}
		d.tries++
		d.spent = r.sched.tries > 0 && d.tries >= r.sched.tries
		d.at = now.Add(d.delay)
		d.delay = min(time.Duration(float64(d.delay)*r.sched.factor), r.sched.max)
	}
}

// forget drops ids that were found.
func (r *run) forget(found []index.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range found {
		delete(r.due, e.ResponseID)
	}
}

func (r *run) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.due)
}
