package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// Annotator writes span annotations; *phoenix.Client is one. It must answer
// only once Phoenix has stored them (sync mode), report a span Phoenix does
// not know with an error for which phoenix.IsSpanNotFound is true, and
// return soon after ctx ends.
type Annotator interface {
	AnnotateSpans(ctx context.Context, anns []phoenix.SpanAnnotation) ([]string, error)
}

// TargetAnnotator is an Annotator that also writes what feedback on traces
// and sessions, and comments, need; *phoenix.Client is one. With an
// Annotator that is not one, the service takes feedback on spans without
// comments only. Its methods follow Annotator's rules; SessionOfTrace
// reports a trace Phoenix holds no span of yet as phoenix.IsSpanNotFound,
// and one in no session with phoenix.ErrNoSession.
type TargetAnnotator interface {
	Annotator
	AnnotateTraces(ctx context.Context, anns []phoenix.TraceAnnotation) ([]string, error)
	AnnotateSessions(ctx context.Context, anns []phoenix.SessionAnnotation) ([]string, error)
	AddNote(ctx context.Context, n phoenix.Note) (string, error)
	SessionOfTrace(ctx context.Context, project, traceID, spanID string) (string, error)
}

// Resolver finds the span that produced a response; *index.Index is one.
type Resolver interface {
	Lookup(responseID string) (index.Span, bool)
}

// Defaults for Config.
const (
	DefaultMaxPending  = 10_000
	DefaultMaxAge      = time.Hour
	DefaultMaxFinished = 10_000
	DefaultMinBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultConcurrency = 4
	DefaultSyncWait    = 2 * time.Second
	DefaultMaxBytes    = 64 << 20
)

// Config bounds the service.
type Config struct {
	// MaxPending is how many feedbacks may be pending at once; more are
	// refused (429) rather than dropped. Zero means DefaultMaxPending.
	MaxPending int
	// MaxAge is how long a feedback may stay pending, waiting for its span
	// or for Phoenix, before it ends as expired. Zero means DefaultMaxAge.
	MaxAge time.Duration
	// MaxFinished is how many ended feedbacks are kept for GET; the oldest
	// are forgotten first. Zero means DefaultMaxFinished.
	MaxFinished int
	// MaxBytes bounds the memory held for feedback, pending and ended, as
	// estimated per feedback: its strings, the JSON of its metadata and a
	// fixed overhead (1.2 KiB, and 4.5 KiB more for the goroutine that
	// writes a pending one). Pending feedback that would pass it is
	// refused (429, ErrFullBytes); ended feedback, kept only for GET, is
	// forgotten oldest first to make room, and keeps nothing GET does not
	// show. Pending feedback may still grow past it by the reasons and
	// span names it gathers once accepted (at most 2 KiB each). Zero means
	// DefaultMaxBytes; it must be at least MaxBodyBytes.
	MaxBytes int
	// MinBackoff and MaxBackoff bound the wait between two attempts to write
	// an annotation. Zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency is how many annotation requests may be in flight to
	// Phoenix at once. Zero means DefaultConcurrency.
	Concurrency int
	// SyncWait is how long POST /feedback waits for the annotation of a
	// feedback whose span is already known, so that the answer can say
	// "annotated". Zero means DefaultSyncWait; negative means no wait.
	SyncWait time.Duration
	// Token, when set, is the shared secret POST /feedback requires as
	// "Authorization: Bearer <token>" (or a per-response token, see
	// Tokens). Without it the API is open to whoever reaches its port.
	Token string
	// Tokens, when set, lets POST /feedback take per-response tokens in
	// place of Token, each within its scope (one response, optionally one
	// identifier and some names), and POST /feedback/tokens mint them.
	Tokens Tokens
	// TokenLimiter, when set, bounds the requests of each per-response
	// token.
	TokenLimiter TokenLimiter
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxFinished == 0 {
		c.MaxFinished = DefaultMaxFinished
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.SyncWait == 0 {
		c.SyncWait = DefaultSyncWait
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	// Checked in a fixed order (not over a map) so that the message is stable.
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxPending", c.MaxPending}, {"MaxFinished", c.MaxFinished}, {"MaxBytes", c.MaxBytes}, {"Concurrency", c.Concurrency}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("feedback: %s must be positive, got %d", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"MaxAge", c.MaxAge}, {"MinBackoff", c.MinBackoff}, {"MaxBackoff", c.MaxBackoff}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("feedback: %s must be positive, got %s", f.name, f.v))
		}
	}
	if c.MaxBytes > 0 && c.MaxBytes < MaxBodyBytes {
		// Less could not hold the feedback of one full request.
		errs = append(errs, fmt.Errorf("feedback: MaxBytes must be at least %d (MaxBodyBytes), got %d", MaxBodyBytes, c.MaxBytes))
	}
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("feedback: MinBackoff %s is above MaxBackoff %s", c.MinBackoff, c.MaxBackoff))
	}
	return errors.Join(errs...)
}

// ErrFull is returned by Submit when accepting the feedback would exceed
// MaxPending. Nothing of the batch was accepted.
var ErrFull = errors.New("feedback: too many feedbacks pending")

// ErrFullBytes is returned by Submit when accepting the feedback would take
// the memory held for pending feedback past MaxBytes. Nothing of the batch
// was accepted. It is an ErrFull: errors.Is(ErrFullBytes, ErrFull) holds.
var ErrFullBytes = fmt.Errorf("%w: they hold the MaxBytes of memory kept for feedback", ErrFull)

// ErrFullWaiting is returned by Submit when feedback for responses whose
// span has not come through would take more than its share (three
// quarters) of MaxPending or MaxBytes; feedback for spans the proxy has
// seen is still taken. Nothing of the batch was accepted. It is an ErrFull.
var ErrFullWaiting = fmt.Errorf("%w: feedback waiting for spans not seen yet holds its share of the limits", ErrFull)

// ErrBatchTooLarge is returned by Submit for a batch that could never be
// taken, however much room is made: more feedbacks, or more bytes, than
// MaxPending or MaxBytes (or their share for spans not seen yet) allow at
// all. Nothing of the batch was accepted; split it. It is not an ErrFull:
// trying it again as it is cannot help.
var ErrBatchTooLarge = errors.New("feedback: the batch is larger than this proxy's limits on pending feedback allow at once; split it")

// key is what Phoenix upserts an annotation on, for one response: its
// target (the response's span, trace or session), name and identifier.
type key struct {
	responseID, name, identifier string
	target                       Target
}

// record is one feedback kept, pending or ended. Its fields are guarded by
// Service.mu, but for key and, once resolved, span, which do not change.
type record struct {
	key key
	// vote is what is written: the latest vote for key. An ended record
	// drops it, as GET shows none of it.
	vote     vote
	version  int // bumped by every new vote for the same key
	state    State
	span     index.Span
	resolved bool
	// session is the session id of the span's trace, once Phoenix told it
	// (target session); noSession is when Phoenix first said the trace is
	// in none (see sessionGrace).
	session   string
	noSession time.Time
	annID     string
	reason    string
	attempts  int
	received  time.Time
	updated   time.Time
	deadline  time.Time
	expiry    *time.Timer // while waiting for the span
	// voted is when the vote was received: what orders it against the
	// votes other replicas hold for the same key (see Ordering).
	voted time.Time
	done  chan struct{}
	size  int // what the record is counted for in Service.mem
}

func (r *record) status() Status {
	s := Status{
		ResponseID: r.key.responseID, Name: r.key.name, Identifier: r.key.identifier,
		Target: r.key.target, SessionID: r.session, State: r.state, AnnotationID: r.annID, Reason: r.reason, Attempts: r.attempts,
		ReceivedAt: r.received, UpdatedAt: r.updated,
	}
	if r.resolved {
		s.TraceID, s.SpanID = r.span.TraceID.String(), r.span.SpanID.String()
		s.Project, s.SpanName = r.span.Project, r.span.Name
	}
	return s
}

// Service keeps feedback until it is written to Phoenix or has ended. It is
// safe for concurrent use.
type Service struct {
	cfg      Config
	resolver Resolver
	finder   Finder   // nil: the Resolver is all there is
	order    Ordering // nil: one replica, or unordered
	ann      Annotator
	metrics  *Metrics
	log      *slog.Logger
	sem      chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopping is closed by Shutdown: no new attempt starts, no backoff is
	// waited out; the attempts in flight finish.
	stopping chan struct{}

	mu         sync.Mutex
	byResponse map[string]map[key]*record // every record kept, pending or ended
	pending    int
	waiting    map[string][]*record // response id -> records waiting for the span
	ended      *simplelru.LRU[key, struct{}]
	// targets holds the newest vote claimed for each trace and session
	// target (see claimTarget).
	targets *simplelru.LRU[string, time.Time]
	mem     budget
	closed  bool
	// store, set by Restore, keeps every pending feedback on disk. Its
	// writes are made under mu (see saveLocked).
	store Store
}

// New returns a service. It does no I/O; feedback is written in the
// background until Shutdown. metrics and log may be nil: nothing is
// exported, nothing logged.
func New(cfg Config, resolver Resolver, ann Annotator, metrics *Metrics, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if resolver == nil || ann == nil {
		return nil, errors.New("feedback: a resolver and an annotator are required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	s := &Service{
		cfg: cfg, resolver: resolver, ann: ann, metrics: metrics, log: log,
		sem:        make(chan struct{}, cfg.Concurrency),
		byResponse: map[string]map[key]*record{},
		waiting:    map[string][]*record{},
		stopping:   make(chan struct{}),
		mem:        budget{max: cfg.MaxBytes},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ended, err := simplelru.NewLRU(cfg.MaxFinished, s.forget)
	if err != nil {
		return nil, err
	}
	s.ended = ended
	if s.targets, err = simplelru.NewLRU[string, time.Time](maxTargetClaims, nil); err != nil {
		return nil, err
	}
	metrics.observe(s)
	return s, nil
}

// forget drops an ended record that fell out of the LRU; a pending record
// that took its key since is kept.
func (s *Service) forget(k key, _ struct{}) {
	recs := s.byResponse[k.responseID]
	if r, ok := recs[k]; ok && r.state != Pending {
		s.uncountLocked(r)
		delete(recs, k)
		if len(recs) == 0 {
			delete(s.byResponse, k.responseID)
		}
	}
}

// Pending returns the number of pending feedbacks.
func (s *Service) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Submit checks feedbacks, fills in their defaults (see Feedback) and
// returns their status, in order. A feedback for a (response, name,
// identifier) that is still pending replaces it: the latest vote is the one
// written. With a Store (see Restore), the batch is on disk when Submit
// returns. An invalid item (a *FieldError), ErrFull, ErrFullBytes or
// ErrStore refuses the whole batch.
func (s *Service) Submit(items []Feedback) ([]Status, error) {
	items = slices.Clone(items)
	votes := make([]vote, len(items))
	for i := range items {
		v, ferr := prepare(&items[i], MaxMetadataBytes)
		if ferr == nil {
			ferr = s.supports(items[i])
		}
		if ferr != nil {
			return nil, fmt.Errorf("feedback: item %d: %w", i, ferr)
		}
		votes[i] = v
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("feedback: the service is shutting down")
	}
	if err := s.admitLocked(items, votes); err != nil {
		return nil, err
	}
	if s.store != nil {
		if err := s.saveLocked(items, now); err != nil {
			return nil, err
		}
	}
	out := make([]Status, len(items))
	for i, f := range items {
		out[i] = s.submitLocked(f, votes[i], now).status()
	}
	s.metrics.received.Add(float64(len(items)))
	return out, nil
}

// supports refuses what the service's Annotator cannot write: targets
// other than the span, and comments, need a TargetAnnotator.
func (s *Service) supports(f Feedback) *FieldError {
	if _, ok := s.ann.(TargetAnnotator); ok {
		return nil
	}
	if f.Target != TargetSpan {
		return fieldErr("target", "this service writes span annotations only")
	}
	if f.Comment != nil {
		return fieldErr("comment", "this service writes span annotations only, not notes")
	}
	return nil
}

// admitLocked refuses a batch that would take pending feedback past
// MaxPending (ErrFull) or MaxBytes (ErrFullBytes). A key already pending,
// or given twice in the batch, takes one slot, and counts as its last vote.
func (s *Service) admitLocked(items []Feedback, votes []vote) error {
	last := make(map[key]int, len(items))
	for i, f := range items {
		last[keyOf(f)] = i
	}
	fresh, grow := 0, 0
	freshWaiting, growWaiting := 0, 0
	for k, i := range last {
		if r, ok := s.byResponse[k.responseID][k]; ok && r.state == Pending {
			d := votes[i].bytes() - r.vote.bytes()
			grow += d
			if !r.resolved {
				growWaiting += d
			}
			continue
		}
		// Counted as countLocked will count it: pending, its writer too.
		n := (&record{key: k, vote: votes[i], state: Pending}).bytes()
		fresh++
		grow += n
		if _, known := s.resolver.Lookup(k.responseID); !known {
			freshWaiting++
			growWaiting += n
		}
	}
	switch {
	case fresh > s.cfg.MaxPending, grow > s.cfg.MaxBytes,
		freshWaiting > waitingShare(s.cfg.MaxPending), growWaiting > waitingShare(s.cfg.MaxBytes):
		return ErrBatchTooLarge
	case s.pending+fresh > s.cfg.MaxPending:
		return ErrFull
	case s.mem.pending+grow > s.cfg.MaxBytes:
		return ErrFullBytes
	case freshWaiting == 0 && growWaiting <= 0:
		// Nothing more for spans not seen: their share is no reason to
		// refuse (it may be past it by what its records gathered since).
	case s.mem.waiting+freshWaiting > waitingShare(s.cfg.MaxPending),
		s.mem.waitingBytes+growWaiting > waitingShare(s.cfg.MaxBytes):
		return ErrFullWaiting
	}
	return nil
}

// waitingShare is the part of a cap that feedback for responses whose span
// has not come through may take. Such feedback waits up to MaxAge (an
// hour), and anyone can send it for made-up ids: the rest of the caps stays
// for feedback on spans the proxy has seen, which ends in seconds.
func waitingShare(limit int) int { return limit - limit/4 }

// SubmitAndWait is Submit, then a wait of up to SyncWait for the feedbacks
// whose span is known to be annotated, so that the caller learns the
// outcome at once in the usual case. With a Finder (see UseFinder), the
// spans the Resolver misses are looked for first.
func (s *Service) SubmitAndWait(ctx context.Context, items []Feedback) ([]Status, error) {
	if s.finder != nil {
		s.findUnknown(ctx, items)
	}
	st, err := s.Submit(items)
	if err != nil || s.cfg.SyncWait < 0 {
		return st, err
	}
	timer := time.NewTimer(s.cfg.SyncWait)
	defer timer.Stop()
	for i := range st {
		if st[i].State != Pending || st[i].SpanID == "" {
			continue
		}
		s.mu.Lock()
		r := s.byResponse[st[i].ResponseID][statusKey(st[i])]
		s.mu.Unlock()
		if r == nil {
			continue
		}
		select {
		case <-r.done:
		case <-timer.C:
			return s.refresh(st), nil
		case <-ctx.Done():
			return s.refresh(st), nil
		}
	}
	return s.refresh(st), nil
}

func (s *Service) refresh(st []Status) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range st {
		if r := s.byResponse[st[i].ResponseID][statusKey(st[i])]; r != nil {
			st[i] = r.status()
		}
	}
	return st
}

func keyOf(f Feedback) key { return key{f.ResponseID, f.Name, f.Identifier, f.Target} }

func statusKey(st Status) key { return key{st.ResponseID, st.Name, st.Identifier, st.Target} }

func (s *Service) submitLocked(f Feedback, v vote, now time.Time) *record {
	k := keyOf(f)
	if r, ok := s.byResponse[k.responseID][k]; ok && r.state == Pending {
		s.uncountLocked(r)
		r.vote, r.voted = v, now
		r.version++
		r.updated = now
		s.countLocked(r)
		return r
	}
	r := s.addLocked(k, v, now, now.Add(s.cfg.MaxAge))
	s.resolveLocked(r, now)
	return r
}

// addLocked keeps a new pending record for k, in place of the ended one
// kept for k, if any.
func (s *Service) addLocked(k key, v vote, received, deadline time.Time) *record {
	r := &record{
		key: k, vote: v, state: Pending, voted: received,
		received: received, updated: received, deadline: deadline,
		done: make(chan struct{}),
	}
	recs := s.byResponse[k.responseID]
	if recs == nil {
		recs = map[key]*record{}
		s.byResponse[k.responseID] = recs
	}
	if old, ok := recs[k]; ok {
		s.uncountLocked(old)
	}
	recs[k] = r
	s.ended.Remove(k)
	s.pending++
	s.countLocked(r)
	return r
}

// resolveLocked starts writing r if its span is known, and reports whether
// it is; else r waits for the span until its deadline.
func (s *Service) resolveLocked(r *record, now time.Time) bool {
	if span, ok := s.resolver.Lookup(r.key.responseID); ok {
		s.startLocked(r, span)
		return true
	}
	// The span has not come through yet: the app's exporter may hold it
	// for seconds. Indexed wakes the record up; the timer ends its wait.
	s.waiting[r.key.responseID] = append(s.waiting[r.key.responseID], r)
	r.expiry = time.AfterFunc(r.deadline.Sub(now), func() { s.expireWaiting(r) })
	return false
}

// Indexed tells the service that spans were indexed; feedback waiting for
// them is written now.
func (s *Service) Indexed(entries []index.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, e := range entries {
		recs, ok := s.waiting[e.ResponseID]
		if !ok {
			continue
		}
		delete(s.waiting, e.ResponseID)
		for _, r := range recs {
			if r.state != Pending || r.resolved {
				continue
			}
			r.expiry.Stop()
			s.startLocked(r, e.Span)
		}
	}
}

func (s *Service) startLocked(r *record, span index.Span) {
	s.uncountLocked(r)
	r.span, r.resolved = span, true
	s.countLocked(r)
	s.wg.Go(func() { s.deliver(r) })
}

func (s *Service) expireWaiting(r *record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.state != Pending || r.resolved || s.closed {
		return
	}
	recs := s.waiting[r.key.responseID]
	for i, w := range recs {
		if w == r {
			recs = append(recs[:i], recs[i+1:]...)
			break
		}
	}
	if len(recs) == 0 {
		delete(s.waiting, r.key.responseID)
	} else {
		s.waiting[r.key.responseID] = recs
	}
	s.endLocked(r, Expired, fmt.Sprintf("no span with response id %q was exported through the proxy within %s", r.key.responseID, r.maxAge()))
}

// deliver writes r's annotation, retrying while Phoenix does not know the
// span yet (it ingests asynchronously) or is unavailable, until r's
// deadline; settle decides after each attempt. Once Shutdown began it makes
// no new attempt: r stays pending.
func (s *Service) deliver(r *record) {
	backoff := s.cfg.MinBackoff
	for {
		ann, comment, version, digest, voted := s.nextAttempt(r)
		select {
		case s.sem <- struct{}{}:
		case <-s.stopping:
			return
		}
		if s.isStopping() {
			<-s.sem
			return
		}
		var ids []string
		superseded := ""
		tgt, err := s.targetOf(s.ctx, r)
		switch {
		case err != nil:
		case !s.claimTarget(tgt, r, voted):
			superseded = "a newer vote of the same name and identifier on the same " + string(tgt.kind) + ", sent by another of its response ids, is written instead"
		default:
			write := func() error {
				ids, err = s.write(s.ctx, r, tgt, ann, comment)
				return err
			}
			if s.order == nil {
				_ = write()
			} else if other, _ := s.order.Write(s.ctx, tgt.orderKey(r.key), digest, voted, write); other {
				superseded = "another replica took a newer vote for the same " + string(tgt.kind) + ", name and identifier, and writes that one"
			}
		}
		<-s.sem
		if s.ctx.Err() != nil {
			return // shutting down: the record stays pending and is reported
		}
		if superseded != "" && s.endSuperseded(r, version, superseded) {
			return
		}

		d := s.settleAttempt(r, version, attempt{ids: ids, err: err, backoff: backoff})
		switch d.next {
		case end:
			return
		case writeNewer:
			backoff = s.cfg.MinBackoff
			continue
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
		t := time.NewTimer(d.wait)
		select {
		case <-t.C:
		case <-s.stopping:
			t.Stop()
			return
		}
	}
}

// endSuperseded ends r, whose vote at version another replica's newer
// vote superseded, unless r took a newer vote itself since (then that one
// is written next, and reports false).
func (s *Service) endSuperseded(r *record, version int, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.version != version || r.state != Pending {
		return false
	}
	r.attempts++
	r.updated = time.Now()
	s.endLocked(r, Superseded, reason)
	return true
}

// nextAttempt returns the annotation of r's latest vote (nil for a
// comment alone) and its comment, its version and its digest and time.
func (s *Service) nextAttempt(r *record) (*phoenix.SpanAnnotation, *string, int, string, time.Time) {
	s.mu.Lock()
	v, version, voted := r.vote, r.version, r.voted
	s.mu.Unlock()
	if !v.annotates() {
		return nil, v.comment, version, v.digest(), voted
	}
	// Decoded outside the lock: metadata may be 16 KiB of JSON.
	ann, err := r.annotation(v)
	if err != nil {
		// Cannot happen: the JSON was encoded by prepare.
		s.log.Error("feedback metadata kept in memory cannot be decoded; the annotation is written with what could be",
			"response_id", r.key.responseID, "err", err)
	}
	return &ann, v.comment, version, v.digest(), voted
}

// settleAttempt applies what the attempt at version of r's vote leads to
// (see settle) and returns it.
func (s *Service) settleAttempt(r *record, version int, a attempt) decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	a.superseded = r.version != version
	if errors.Is(a.err, phoenix.ErrNoSession) {
		if r.noSession.IsZero() {
			r.noSession = now
		}
		a.noSessionSince = r.noSession
	}
	d := settle(a, r.received, r.deadline, now)
	s.metrics.attempts.WithLabelValues(d.result).Inc()
	r.attempts++
	r.updated = now
	switch d.next {
	case end:
		r.annID = d.annID
		s.endLocked(r, d.state, d.reason)
	case retryLater:
		s.uncountLocked(r)
		r.reason = clip(d.reason, maxReasonBytes)
		s.countLocked(r)
	}
	return d
}

func (s *Service) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// maxAge is how long r was given: MaxAge, or what it was when a restored
// record was received.
func (r *record) maxAge() time.Duration { return r.deadline.Sub(r.received) }

// endLocked moves r to a final state, reports it, and keeps it for GET.
func (s *Service) endLocked(r *record, st State, reason string) {
	s.uncountLocked(r)
	r.state, r.reason, r.updated = st, clip(reason, maxReasonBytes), time.Now()
	// From now on r is history for GET, which shows nothing of the vote.
	r.vote, r.expiry = vote{}, nil
	s.pending--
	s.countLocked(r)
	s.removeLocked(r)
	if s.ended.Add(r.key, struct{}{}) {
		s.metrics.evictions.WithLabelValues(evictedCount).Inc()
	}
	close(r.done)
	s.metrics.ended.WithLabelValues(string(st)).Inc()
	if st == Annotated {
		s.metrics.latency.Observe(r.updated.Sub(r.received).Seconds())
	}
	args := []any{"response_id", r.key.responseID, "name", r.key.name, "identifier", r.key.identifier, "attempts", r.attempts}
	if r.resolved {
		args = append(args, "trace_id", r.span.TraceID.String(), "span_id", r.span.SpanID.String())
	}
	switch {
	case st == Annotated && reason == "":
		s.log.Info("feedback annotated", append(args, "annotation_id", r.annID)...)
	case st == Annotated:
		s.log.Warn("feedback annotated, but Phoenix's answer could not be read", append(args, "reason", reason)...)
	case st == Superseded:
		s.log.Info("feedback superseded by a newer vote another replica took", args...)
	default:
		s.log.Warn("feedback not annotated", append(args, "state", st, "reason", reason)...)
	}
}

// Lookup returns the status of every feedback kept for responseID.
func (s *Service) Lookup(responseID string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, r := range s.byResponse[responseID] {
		out = append(out, r.status())
	}
	sortStatuses(out)
	return out
}

// Shutdown stops writing annotations: no new attempt starts and no backoff
// is waited out, while the attempts in flight may finish until ctx ends;
// then they are cancelled, and Shutdown waits for them to return. Feedback
// still pending is not written: with a Store it stays there and resumes at
// the next start ("persisted"), without one it is lost; either way its count
// is logged. An attempt cut short may still have reached Phoenix; its
// feedback stays pending (and is written again after a restart, which
// Phoenix's upsert makes harmless).
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stopping)
		for _, recs := range s.waiting {
			for _, r := range recs {
				if r.expiry != nil {
					r.expiry.Stop()
				}
			}
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-done
	}
	s.cancel()
	s.mu.Lock()
	n, persisted := s.pending, s.store != nil
	s.mu.Unlock()
	switch {
	case n == 0:
	case persisted:
		s.log.Info("feedback pending at shutdown persisted in the data directory; it resumes at the next start", "count", n)
	default:
		s.log.Error("feedback still pending at shutdown was not written to Phoenix", "count", n)
	}
	return err
}
