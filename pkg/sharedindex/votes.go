package sharedindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Votes orders the votes replicas take for one (response, name,
// identifier), so that Phoenix ends with the latest (feedback.Ordering).
//
// Each vote is recorded once it is taken, before it may be written:
// "fbp:v:" + key holds the digest of the latest, for as long as a feedback
// may stay pending (VoteTTL). A replica
// writes an annotation only holding "fbp:l:" + key (SET NX, expiring
// after lockTTL) and only if the latest vote is still its own: so of two
// replicas with different votes, the one superseded either sees it before
// it writes and does not, or writes before the other takes the lock and is
// overwritten by it. Two votes with the same digest may both be written:
// the same annotation twice, which Phoenix's upsert makes one.
//
// With Redis unreachable a vote is written unordered (counted in
// feedbackproxy_shared_index_unordered_total): a vote is never held back
// for want of ordering.
type Votes struct{ s *Index }

// Votes returns the vote ordering on this shared index.
func (s *Index) Votes() *Votes { return &Votes{s} }

// lockTTL bounds how long a replica that died while writing holds a key:
// longer than an annotation request (phoenix.DefaultTimeout, 10 s).
const lockTTL = 15 * time.Second

var release = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Voted records digest as the latest vote for key.
func (v *Votes) Voted(ctx context.Context, key, digest string) error {
	s := v.s
	if s.unavailable() {
		s.metrics.unordered.Inc()
		return errQuiet
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	err := s.rdb.Set(ctx, s.cfg.Prefix+"v:"+key, digest, s.cfg.VoteTTL).Err()
	s.setHealth(opLookup, err)
	if err != nil {
		s.metrics.errors.WithLabelValues(opVote).Inc()
		s.metrics.unordered.Inc()
		return redactErr(err, s.cfg.URL)
	}
	return nil
}

// Write runs write holding key's lock if digest is still the latest vote;
// superseded, without running it, if another vote came since. It waits
// for a lock another replica holds up to lockTTL; when Redis cannot be
// asked, it runs write unordered.
func (v *Votes) Write(ctx context.Context, key, digest string, write func() error) (bool, error) {
	s := v.s
	lock, latest := s.cfg.Prefix+"l:"+key, s.cfg.Prefix+"v:"+key
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	deadline := time.Now().Add(lockTTL)
	if s.unavailable() {
		s.metrics.unordered.Inc()
		return false, write()
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		ok, err := s.rdb.SetNX(cctx, lock, token, lockTTL).Result()
		var cur string
		if err == nil && ok {
			cur, err = s.rdb.Get(cctx, latest).Result()
			if errors.Is(err, redis.Nil) {
				cur, err = "", nil // forgotten (expired, or a Redis without persistence): ours is all there is
			}
		}
		cancel()
		s.setHealth(opLookup, err)
		switch {
		case err != nil:
			s.metrics.errors.WithLabelValues(opVote).Inc()
			s.metrics.unordered.Inc()
			if ok {
				v.unlock(ctx, lock, token)
			}
			return false, write()
		case !ok:
			if time.Now().After(deadline) || ctx.Err() != nil {
				// The holder died with it, or is stuck past its TTL.
				s.metrics.unordered.Inc()
				return false, write()
			}
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		case cur != "" && cur != digest:
			v.unlock(ctx, lock, token)
			s.metrics.superseded.Inc()
			return true, nil
		}
		err = write()
		v.unlock(ctx, lock, token)
		return false, err
	}
}

func (v *Votes) unlock(ctx context.Context, lock, token string) {
	s := v.s
	// Released even when ctx ended (shutdown): the lock would otherwise
	// hold the key for lockTTL.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	_ = release.Run(cctx, s.rdb, []string{lock}, token).Err()
}
