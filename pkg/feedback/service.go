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
	// MinBackoff and MaxBackoff bound the wait between two attempts to write
	// an annotation. Zero means the defaults.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency is how many annotation requests may be in flight to
	// Phoenix at once. Zero means DefaultConcurrency.
	Concurrency int
	// SyncWait is how long POST /feedback waits for the annotation of a
	// feedback whose span is already known, so that the answer can say
	// "annotated". Zero means DefaultSyncWait; negative means no wait.
	SyncWait time.Duration
	// Token, when set, is the shared secret POST /feedback requires as
	// "Authorization: Bearer <token>".
	Token string
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxPending, DefaultMaxPending)
	def(&c.MaxFinished, DefaultMaxFinished)
	def(&c.Concurrency, DefaultConcurrency)
	defDur(&c.MaxAge, DefaultMaxAge)
	defDur(&c.MinBackoff, DefaultMinBackoff)
	defDur(&c.MaxBackoff, DefaultMaxBackoff)
	defDur(&c.SyncWait, DefaultSyncWait)
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	// Checked in a fixed order (not over a map) so that the message is stable.
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxPending", c.MaxPending}, {"MaxFinished", c.MaxFinished}, {"Concurrency", c.Concurrency}} {
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
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("feedback: MinBackoff %s is above MaxBackoff %s", c.MinBackoff, c.MaxBackoff))
	}
	return errors.Join(errs...)
}

// ErrFull is returned by Submit when accepting the feedback would exceed
// MaxPending. Nothing of the batch was accepted.
var ErrFull = errors.New("feedback: too many feedbacks pending")

// key is what Phoenix upserts an annotation on, for one response.
type key struct {
	responseID, name, identifier string
}

type record struct {
	key      key
	ann      phoenix.SpanAnnotation
	version  int // bumped by every new vote for the same key
	state    State
	span     index.Span
	resolved bool
	annID    string
	reason   string
	attempts int
	received time.Time
	updated  time.Time
	deadline time.Time
	expiry   *time.Timer // while waiting for the span
	done     chan struct{}
}

func (r *record) status() Status {
	s := Status{
		ResponseID: r.key.responseID, Name: r.key.name, Identifier: r.key.identifier,
		State: r.state, AnnotationID: r.annID, Reason: r.reason, Attempts: r.attempts,
		ReceivedAt: r.received, UpdatedAt: r.updated,
	}
	if r.resolved {
		s.TraceID, s.SpanID = r.span.TraceID.String(), r.span.SpanID.String()
		s.Project, s.SpanName = r.span.Project, r.span.Name
	}
	return s
}

// Service keeps feedback until it is written to Phoenix or has ended.
type Service struct {
	cfg      Config
	resolver Resolver
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
	closed     bool
	// store, set by Restore, keeps every pending feedback on disk. Its
	// writes are made under mu (see saveLocked).
	store Store
}

// New returns a service. It does no I/O; feedback is written in the
// background until Shutdown. metrics and log may be nil.
func New(cfg Config, resolver Resolver, ann Annotator, metrics *Metrics, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if resolver == nil || ann == nil {
		return nil, errors.New("feedback: a resolver and an annotator are required")
	}
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, resolver: resolver, ann: ann, metrics: metrics, log: log,
		sem:        make(chan struct{}, cfg.Concurrency),
		byResponse: map[string]map[key]*record{},
		waiting:    map[string][]*record{},
		stopping:   make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ended, err := simplelru.NewLRU(cfg.MaxFinished, s.forget)
	if err != nil {
		return nil, err
	}
	s.ended = ended
	if metrics != nil {
		metrics.observe(s)
	}
	return s, nil
}

// forget drops an ended record that fell out of the LRU; a pending record
// that took its key since is kept.
func (s *Service) forget(k key, _ struct{}) {
	recs := s.byResponse[k.responseID]
	if r, ok := recs[k]; ok && r.state != Pending {
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
// returns. An invalid item (a *FieldError), ErrFull or ErrStore refuses the
// whole batch.
func (s *Service) Submit(items []Feedback) ([]Status, error) {
	items = slices.Clone(items)
	for i := range items {
		if ferr := items[i].normalize(); ferr != nil {
			return nil, fmt.Errorf("feedback: item %d: %w", i, ferr)
		}
	}
	now := time.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("feedback: the service is shutting down")
	}
	// Count the records the batch adds: a key already pending, or given
	// twice in the batch, takes one slot, not one per vote.
	fresh := map[key]bool{}
	for _, f := range items {
		k := keyOf(f)
		if r, ok := s.byResponse[k.responseID][k]; !ok || r.state != Pending {
			fresh[k] = true
		}
	}
	if s.pending+len(fresh) > s.cfg.MaxPending {
		s.mu.Unlock()
		return nil, ErrFull
	}
	if s.store != nil {
		if err := s.saveLocked(items, now); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	recs := make([]*record, len(items))
	for i, f := range items {
		recs[i] = s.submitLocked(f, now)
	}
	out := make([]Status, len(recs))
	for i, r := range recs {
		out[i] = r.status()
	}
	s.mu.Unlock()
	if s.metrics != nil {
		s.metrics.received.Add(float64(len(items)))
	}
	return out, nil
}

// SubmitAndWait is Submit, then a wait of up to SyncWait for the feedbacks
// whose span is known to be annotated, so that the caller learns the
// outcome at once in the usual case.
func (s *Service) SubmitAndWait(ctx context.Context, items []Feedback) ([]Status, error) {
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
		r := s.byResponse[st[i].ResponseID][key{st[i].ResponseID, st[i].Name, st[i].Identifier}]
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
		if r := s.byResponse[st[i].ResponseID][key{st[i].ResponseID, st[i].Name, st[i].Identifier}]; r != nil {
			st[i] = r.status()
		}
	}
	return st
}

func keyOf(f Feedback) key { return key{f.ResponseID, f.Name, f.Identifier} }

func annotationOf(f Feedback) phoenix.SpanAnnotation {
	md := make(map[string]any, len(f.Metadata)+1)
	for k, v := range f.Metadata {
		md[k] = v
	}
	// The key the feedback was sent by, so that Phoenix shows it; it is
	// ours to set, whatever the client put there.
	md["response_id"] = f.ResponseID
	return phoenix.SpanAnnotation{
		Name: f.Name, AnnotatorKind: f.AnnotatorKind, Identifier: f.Identifier, Metadata: md,
		Result: phoenix.Result{Label: f.Label, Score: f.Score, Explanation: f.Explanation},
	}
}

func (s *Service) submitLocked(f Feedback, now time.Time) *record {
	k := keyOf(f)
	if r, ok := s.byResponse[k.responseID][k]; ok && r.state == Pending {
		spanID := r.ann.SpanID
		r.ann = annotationOf(f)
		r.ann.SpanID = spanID
		r.version++
		r.updated = now
		return r
	}
	r := s.addLocked(f, now, now.Add(s.cfg.MaxAge))
	s.resolveLocked(r, now)
	return r
}

// addLocked keeps a new pending record for f.
func (s *Service) addLocked(f Feedback, received, deadline time.Time) *record {
	k := keyOf(f)
	r := &record{
		key: k, ann: annotationOf(f), state: Pending,
		received: received, updated: received, deadline: deadline,
		done: make(chan struct{}),
	}
	if s.byResponse[k.responseID] == nil {
		s.byResponse[k.responseID] = map[key]*record{}
	}
	s.byResponse[k.responseID][k] = r
	s.ended.Remove(k)
	s.pending++
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
	r.span, r.resolved = span, true
	r.ann.SpanID = span.SpanID.String()
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
// deadline. Once Shutdown began it makes no new attempt: r stays pending.
func (s *Service) deliver(r *record) {
	backoff := s.cfg.MinBackoff
	for {
		s.mu.Lock()
		ann, version, deadline := r.ann, r.version, r.deadline
		s.mu.Unlock()

		select {
		case s.sem <- struct{}{}:
		case <-s.stopping:
			return
		}
		if s.isStopping() {
			<-s.sem
			return
		}
		ids, err := s.ann.AnnotateSpans(s.ctx, []phoenix.SpanAnnotation{ann})
		<-s.sem
		if s.ctx.Err() != nil {
			return // shutting down: the record stays pending and is reported
		}

		s.mu.Lock()
		r.attempts++
		now := time.Now()
		r.updated = now
		result := attemptResult(err)
		superseded := r.version != version
		switch {
		case superseded && (err == nil || result == "permanent"):
			// A newer vote came in while this one was written: write it now.
			// Its content may be what Phoenix refused, so a refusal of the
			// old one does not end the new one.
			s.mu.Unlock()
			s.attempted(result)
			backoff = s.cfg.MinBackoff
			continue
		case err == nil:
			if len(ids) > 0 {
				r.annID = ids[0]
			}
			s.endLocked(r, Annotated, "")
			s.mu.Unlock()
			s.attempted(result)
			return
		case result == "permanent":
			s.endLocked(r, Failed, "Phoenix refused the annotation: "+err.Error())
			s.mu.Unlock()
			s.attempted(result)
			return
		}
		r.reason = err.Error()
		left := deadline.Sub(now)
		retryAfter := phoenix.RetryAfter(err)
		if left <= 0 || retryAfter >= left {
			// The last attempt was at the deadline, or Phoenix asked for a
			// pause that outlasts it.
			s.endLocked(r, Expired, fmt.Sprintf("Phoenix did not accept the annotation within %s; last answer: %v", r.maxAge(), err))
			s.mu.Unlock()
			s.attempted(result)
			return
		}
		s.mu.Unlock()
		s.attempted(result)
		// The backoff may be cut short so that the last attempt is made at
		// the deadline, when the span has had all the time it gets.
		wait := min(max(backoff, retryAfter), left)
		backoff = min(backoff*2, s.cfg.MaxBackoff)

		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.stopping:
			t.Stop()
			return
		}
	}
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

// attemptResult names the outcome of one attempt, as the attempts metric
// counts it.
func attemptResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case phoenix.IsSpanNotFound(err):
		return "span_not_found"
	case phoenix.IsRetryable(err):
		return "retryable"
	}
	return "permanent"
}

func (s *Service) attempted(result string) {
	if s.metrics != nil {
		s.metrics.attempts.WithLabelValues(result).Inc()
	}
}

// endLocked moves r to a final state, reports it, and keeps it for GET.
func (s *Service) endLocked(r *record, st State, reason string) {
	r.state, r.reason, r.updated = st, reason, time.Now()
	s.pending--
	s.removeLocked(r)
	s.ended.Add(r.key, struct{}{})
	close(r.done)
	if s.metrics != nil {
		s.metrics.ended.WithLabelValues(string(st)).Inc()
		if st == Annotated {
			s.metrics.latency.Observe(r.updated.Sub(r.received).Seconds())
		}
	}
	args := []any{"response_id", r.key.responseID, "name", r.key.name, "identifier", r.key.identifier, "attempts", r.attempts}
	if r.resolved {
		args = append(args, "trace_id", r.span.TraceID.String(), "span_id", r.span.SpanID.String())
	}
	switch st {
	case Annotated:
		s.log.Info("feedback annotated", append(args, "annotation_id", r.annID)...)
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
				r.expiry.Stop()
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
