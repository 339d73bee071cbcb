package sharedindex

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

//go:embed put.lua
var putSource string

// maxPipeline is the most scripts the writer sends in one round trip.
const maxPipeline = 256

// Index is this replica's handle on the shared index. It is safe for
// concurrent use.
type Index struct {
	cfg     Config
	rdb     *redis.Client
	put     *redis.Script
	metrics *Metrics
	log     *slog.Logger
	channel string

	mu      sync.Mutex
	backlog []index.Entry // oldest first, waiting to be written
	writing int           // entries taken from the backlog, being written
	// refusals counts, by response id, the times Redis refused an entry
	// still in the backlog; the writer's alone.
	refusals map[string]int
	health   health

	wake   chan struct{}
	back   chan struct{}        // the subscription (re)connected
	wanted func(id string) bool // nil: every announcement is decoded
	pubsub *redis.PubSub        // set by Start; closed by Close to end a blocked read
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	writer chan struct{} // closed when the writer has returned
}

// New returns a handle on the shared index at cfg.URL. It does no I/O:
// Redis may be down when the proxy starts, and the index then works as
// when it goes down later. metrics and log may be nil.
func New(cfg Config, metrics *Metrics, log *slog.Logger) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opt, err := cfg.options()
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	quietGoRedis()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Index{
		cfg: cfg, rdb: redis.NewClient(opt), put: redis.NewScript(putSource),
		metrics: metrics, log: log, channel: cfg.Prefix + "indexed",
		wake: make(chan struct{}, 1), back: make(chan struct{}, 1), writer: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	metrics.observe(s)
	return s, nil
}

func (s *Index) key(responseID string) string { return s.cfg.Prefix + "r:" + responseID }

// Start starts writing the backlog and listening for the entries other
// replicas write: onIndexed is called with each (at most once: messages
// sent while this replica was disconnected are lost), and onResubscribed
// after every (re)connection, when the caller should read again the
// entries it waits for. Both are called from one goroutine.
func (s *Index) Start(onIndexed func(index.Entry), onResubscribed func()) {
	ps := s.rdb.Subscribe(s.ctx, s.channel)
	// subscribeLoop may replace it (resubscribe); Close closes the one
	// in s.pubsub.
	s.mu.Lock()
	s.pubsub = ps
	s.mu.Unlock()
	s.wg.Go(func() { defer close(s.writer); s.writeLoop() })
	s.wg.Go(func() { s.subscribeLoop(ps, onIndexed, onResubscribed) })
}

// Want makes the subscription decode and hand on only the announcements
// of ids wanted says it waits for: every replica hears every other one's
// (and its own) announcements, and most are of no use to it. Call it
// before Start.
func (s *Index) Want(wanted func(responseID string) bool) { s.wanted = wanted }

// Put queues entries to be written; it never waits for Redis. Entries of
// ids already queued are queued again: the script keeps the inner span.
func (s *Index) Put(entries []index.Entry) {
	if len(entries) == 0 {
		return
	}
	s.mu.Lock()
	s.backlog = append(s.backlog, entries...)
	// The entries being written (one pipeline at most) are not counted:
	// they are the oldest, and if they come back unwritten giveBack drops
	// them first.
	dropped := len(s.backlog) - s.cfg.MaxBacklog
	if dropped > 0 {
		// Resliced, not copied: append reallocates (and so frees the
		// front) once the capacity is used, at most twice MaxBacklog;
		// cleared, so that the front holds no strings meanwhile.
		clear(s.backlog[:dropped])
		s.backlog = s.backlog[dropped:]
	}
	first := dropped > 0 && !s.health.dropping
	s.health.dropping = s.health.dropping || dropped > 0
	s.mu.Unlock()
	if dropped > 0 {
		s.metrics.dropped.Add(float64(dropped))
	}
	if first {
		// Once until the next write succeeds; the metric counts them all.
		s.log.Warn("shared index backlog full: the oldest entries were not written to Redis (this replica's own index still resolves them)",
			"dropped", dropped, "max_backlog", s.cfg.MaxBacklog)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Backlog returns the number of entries waiting to be written, those being
// written included.
func (s *Index) Backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.backlog) + s.writing
}

// Find returns the entries the shared index holds for responseIDs, in one
// round trip bounded by Config.Timeout.
func (s *Index) Find(ctx context.Context, responseIDs []string) ([]index.Entry, error) {
	if len(responseIDs) == 0 {
		return nil, nil
	}
	if s.unavailable() {
		s.metrics.lookups.WithLabelValues("error").Add(float64(len(responseIDs)))
		return nil, errQuiet
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	keys := make([]string, len(responseIDs))
	for i, id := range responseIDs {
		keys[i] = s.key(id)
	}
	start := time.Now()
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	s.metrics.duration.WithLabelValues("lookup").Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.lookups.WithLabelValues("error").Add(float64(len(responseIDs)))
		s.setHealth(opLookup, err)
		return nil, fmt.Errorf("sharedindex: lookup: %w", redactErr(err, s.cfg.URL))
	}
	s.setHealth(opLookup, nil)
	var out []index.Entry
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			s.metrics.lookups.WithLabelValues("miss").Inc()
			continue
		}
		span, err := decode(str)
		if err != nil {
			s.metrics.lookups.WithLabelValues("unreadable").Inc()
			s.log.Warn("shared index entry unreadable; ignored", "key", keys[i], "err", err)
			continue
		}
		s.metrics.lookups.WithLabelValues("hit").Inc()
		out = append(out, index.Entry{ResponseID: responseIDs[i], Span: span})
	}
	return out, nil
}

// Close stops listening, gives the writer until ctx ends to empty the
// backlog, and closes the connections. Entries still queued then are
// logged and left to this replica's own index.
func (s *Index) Close(ctx context.Context) error {
	s.mu.Lock()
	closing := s.health.closing
	s.health.closing = true
	s.mu.Unlock()
	if closing {
		return nil
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.mu.Lock()
	started := s.pubsub != nil
	s.mu.Unlock()
	var err error
	if started {
		select {
		case <-s.writer:
		case <-ctx.Done():
			err = fmt.Errorf("sharedindex: the backlog was still being written at shutdown: %w", ctx.Err())
		}
	}
	s.cancel()
	s.mu.Lock()
	if s.pubsub != nil {
		_ = s.pubsub.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if n := s.Backlog(); n > 0 {
		s.log.Warn("entries not written to the shared index at shutdown; this replica's own index keeps them", "count", n)
	}
	return errors.Join(err, s.rdb.Close())
}

// writeLoop writes the backlog, a pipeline at a time, backing off while
// Redis fails; once Close began it returns as soon as the backlog is empty.
func (s *Index) writeLoop() {
	backoff := time.Duration(0)
	for {
		batch := s.take()
		if len(batch) == 0 {
			if s.isClosing() {
				return
			}
			select {
			case <-s.wake:
				s.gather()
				continue
			case <-s.ctx.Done():
				return
			}
		}
		sent, refused, err := s.write(s.ctx, batch)
		if sent || err != nil {
			s.setHealth(opWrite, err)
		}
		if err == nil {
			s.mu.Lock()
			s.writing = 0
			s.mu.Unlock()
			backoff = 0
			continue
		}
		if refused != nil {
			// Redis answered, and refused some (out of memory, read
			// only after a failover): those are tried again, a few
			// times; the others are written.
			batch = s.retryRefused(batch, refused, err)
		}
		s.giveBack(batch)
		if s.ctx.Err() != nil || s.isClosing() {
			// Closing: one attempt, no backoff; what is left is logged.
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		s.log.Debug("shared index write failed; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.back:
			// The subscription reconnected: Redis is back, write now.
			t.Stop()
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// gatherDelay is how long the writer lets entries gather after the first
// arrives, so that a pipeline carries the LLM spans of many exports rather
// than of one: a round trip costs both processes system calls, whatever
// it carries. Feedback comes seconds after the span; a few milliseconds
// more before other replicas see it cost nothing.
const gatherDelay = 5 * time.Millisecond

func (s *Index) gather() {
	if s.Backlog() >= maxPipeline || s.isClosing() {
		return
	}
	t := time.NewTimer(gatherDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

func (s *Index) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health.closing
}

func (s *Index) take() []index.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.backlog), maxPipeline)
	if n == 0 {
		return nil
	}
	batch := append([]index.Entry(nil), s.backlog[:n]...)
	clear(s.backlog[:n])
	s.backlog = s.backlog[n:]
	s.writing = n
	return batch
}

// giveBack puts a batch that could not be written back in front of the
// backlog, dropping the oldest past MaxBacklog.
func (s *Index) giveBack(batch []index.Entry) {
	s.mu.Lock()
	s.writing = 0
	s.backlog = append(batch, s.backlog...)
	dropped := len(s.backlog) - s.cfg.MaxBacklog
	if dropped > 0 {
		s.backlog = s.backlog[dropped:]
	}
	s.mu.Unlock()
	if dropped > 0 {
		s.metrics.dropped.Add(float64(dropped))
	}
}

// maxRefusals is how often Redis may refuse an entry (an error answer,
// not a failed connection) before the writer gives it up, so that one
// entry Redis will not take never holds the rest back.
const maxRefusals = 5

// retryRefused counts a refusal against each entry of batch at an index in
// refused and returns those to try again; those refused maxRefusals times
// are dropped, counted and logged.
func (s *Index) retryRefused(batch []index.Entry, refused []int, err error) []index.Entry {
	if s.refusals == nil {
		s.refusals = map[string]int{}
	}
	var again []index.Entry
	for _, i := range refused {
		id := batch[i].ResponseID
		s.refusals[id]++
		if s.refusals[id] < maxRefusals {
			again = append(again, batch[i])
			continue
		}
		delete(s.refusals, id)
		s.metrics.dropped.Inc()
		s.log.Warn("Redis refused an entry of the shared index again and again; not written (this replica's own index still resolves it)",
			"response_id", id, "refusals", maxRefusals, "err", err)
	}
	if len(s.refusals) > 2*s.cfg.MaxBacklog {
		clear(s.refusals) // ids dropped from the backlog since: start over
	}
	s.mu.Lock()
	s.writing = 0
	s.mu.Unlock()
	return again
}

// write runs put.lua for each entry in one pipeline. A server that lost
// its scripts (restarted, or SCRIPT FLUSH) gets the script again and the
// batch once more: writing an entry twice changes nothing. refused holds
// the indexes in batch of the entries Redis answered with an error (the
// others were written); it is nil when the error is the connection's.
func (s *Index) write(ctx context.Context, batch []index.Entry) (sent bool, refused []int, err error) {
	sent, refused, err = s.pipeline(ctx, batch)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err = s.put.Load(lctx, s.rdb).Err()
		cancel()
		refused = nil
		if err == nil {
			sent, refused, err = s.pipeline(ctx, batch)
		}
	}
	if err != nil {
		s.metrics.errors.WithLabelValues(opWrite).Inc()
		return sent, refused, fmt.Errorf("sharedindex: write: %w", redactErr(err, s.cfg.URL))
	}
	return sent, nil, nil
}

func (s *Index) pipeline(ctx context.Context, batch []index.Entry) (bool, []int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	now := time.Now()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, 0, len(batch))
	at := make([]int, 0, len(batch)) // the index in batch of each command
	expired := 0
	for i, e := range batch {
		ttl := s.cfg.MaxAge - now.Sub(e.Span.Seen)
		if ttl < time.Millisecond {
			expired++
			continue
		}
		v := encode(e.Span)
		cmds = append(cmds, s.put.EvalSha(ctx, pipe, []string{s.key(e.ResponseID)},
			v, ttl.Milliseconds(), s.channel, v+"\n"+e.ResponseID))
		at = append(at, i)
	}
	s.metrics.writes.WithLabelValues("expired").Add(float64(expired))
	if len(cmds) == 0 {
		return false, nil, nil // nothing asked of Redis: no news of its health
	}
	start := time.Now()
	_, err := pipe.Exec(ctx)
	s.metrics.duration.WithLabelValues(opWrite).Observe(time.Since(start).Seconds())
	var firstErr error
	var refused []int
	written, kept := 0, 0
	for j, c := range cmds {
		n, cerr := c.Int()
		var answer redis.Error
		switch {
		case cerr != nil && errors.As(cerr, &answer):
			refused = append(refused, at[j])
			if firstErr == nil {
				firstErr = cerr
			}
		case cerr != nil:
			// The connection's error: nothing of the batch is known
			// to be written; all of it is tried again.
			return true, nil, cerr
		case n == 1:
			written++
		default:
			kept++
		}
	}
	s.metrics.writes.WithLabelValues("written").Add(float64(written))
	s.metrics.writes.WithLabelValues("kept").Add(float64(kept))
	if firstErr == nil && err != nil {
		return true, nil, err
	}
	return true, refused, firstErr
}

// subscribeLoop listens on the channel until Close, and reconnects on its
// own schedule when the connection fails.
func (s *Index) subscribeLoop(ps *redis.PubSub, onIndexed func(index.Entry), onResubscribed func()) {
	backoff := time.Duration(0)
	pinged := false
	for {
		// A connection that died without a word (a host gone, no RST) is
		// noticed by a PING when nothing came for a while, and its
		// missing PONG by the next wait.
		msg, err := ps.ReceiveTimeout(s.ctx, subscriptionIdle)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				if !pinged {
					if perr := ps.Ping(s.ctx); perr == nil {
						pinged = true
						continue
					}
				} else {
					err = errors.New("no answer to a PING on the subscription")
				}
			}
			s.metrics.errors.WithLabelValues(opSubscribe).Inc()
			s.setHealth(opSubscribe, err)
			// A fresh connection: go-redis would reconnect on its own
			// after an error, but not after a PING that went unanswered.
			if ps = s.resubscribe(ps); ps == nil {
				return
			}
			pinged = false
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Pong:
			s.answered()
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				backoff = 0
				s.answered()
				select {
				case s.back <- struct{}{}:
				default:
				}
				if onResubscribed != nil {
					onResubscribed()
				}
			}
		case *redis.Message:
			s.metrics.notifications.Inc()
			if s.wanted != nil {
				if _, id, _ := strings.Cut(m.Payload, "\n"); !s.wanted(id) {
					continue
				}
			}
			e, ok := s.parseMessage(m.Payload)
			if ok && onIndexed != nil {
				onIndexed(e)
			}
		}
	}
}

// subscriptionIdle is how long the subscription may hear nothing before
// it is checked with a PING.
const subscriptionIdle = 15 * time.Second

// resubscribe replaces ps with a fresh subscription; nil once Close began.
func (s *Index) resubscribe(ps *redis.PubSub) *redis.PubSub {
	_ = ps.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.health.closing || s.ctx.Err() != nil {
		return nil
	}
	s.pubsub = s.rdb.Subscribe(s.ctx, s.channel)
	return s.pubsub
}

// answered notes that Redis answered on the subscription: it is up, so a
// lookup that failed before is no reason to call it degraded now (the
// writer clears its own failures when it writes).
func (s *Index) answered() {
	s.setHealth(opSubscribe, nil)
	s.mu.Lock()
	_, failing := s.health.failing[opLookup]
	s.mu.Unlock()
	if failing {
		s.clearFailure(opLookup)
	}
}

func (s *Index) parseMessage(p string) (index.Entry, bool) {
	v, id, ok := strings.Cut(p, "\n")
	if !ok || id == "" {
		s.log.Warn("shared index message unreadable; ignored", "err", "no response id")
		return index.Entry{}, false
	}
	span, err := decode(v)
	if err != nil {
		s.log.Warn("shared index message unreadable; ignored", "response_id", id, "err", err)
		return index.Entry{}, false
	}
	return index.Entry{ResponseID: id, Span: span}, true
}
