package sharedindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// Votes orders the votes replicas hold for one (response, name,
// identifier), so that Phoenix ends with the latest (feedback.Ordering).
//
// A replica writes an annotation only holding the key's lock ("fbp:l:" +
// key, SET NX, expiring after lockTTL), and only after claiming the key's
// latest vote ("fbp:v:" + key): its vote's time and digest replace what is
// there if they are later (times as zero-padded decimals, the digest
// breaking a tie). If what is there then is another vote, a later one was
// claimed by a replica that writes it (or has), and this one is
// superseded, not written. Of two replicas with different votes, the older
// either finds the newer claimed and does not write, or writes first and
// is overwritten when the newer one takes the lock. Nothing is claimed
// before a replica is about to write, so a replica that dies holding the
// newest vote blocks no older one. Two votes with the same digest are both
// written: the same annotation twice, which Phoenix's upsert makes one.
//
// Votes are ordered by the clock of the replica that received them: clocks
// skewed by more than the time between two votes of one user may order
// them wrongly.
//
// With Redis unreachable a vote is written unordered (counted in
// feedbackproxy_shared_index_votes_unordered_total): a vote is never held
// back for want of ordering.
type Votes struct{ s *Index }

// Votes returns the vote ordering on this shared index.
func (s *Index) Votes() *Votes { return &Votes{s} }

// lockTTL bounds how long a replica that died while writing holds a key:
// longer than an annotation request (phoenix.DefaultTimeout, 10 s).
const lockTTL = 15 * time.Second

// claim takes the key's lock and, holding it, makes this vote the latest
// if it is later than the one there; it returns {0} when another replica
// holds the lock, else {1, the latest vote}.
//
// KEYS[1] the lock, KEYS[2] the latest vote; ARGV[1] the lock's token,
// ARGV[2] its TTL in ms, ARGV[3] this vote (time, then digest), ARGV[4]
// the vote's TTL in ms.
var claim = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0}
end
local cur = redis.call('GET', KEYS[2])
if not cur or ARGV[3] > cur then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  cur = ARGV[3]
end
return {1, cur}
`)

var release = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// voteValue is a vote as "fbp:v:" keeps it: its time, zero-padded, then
// its digest.
func voteValue(at time.Time, digest string) string {
	return string(appendPadded(nil, uint64(max(at.UnixNano(), 0)))) + digest
}

// Write runs write holding key's lock, after claiming the vote at, digest
// as key's latest; superseded, without running it, if a later vote with
// another digest was claimed. It waits for a lock another replica holds up
// to lockTTL; when Redis cannot be asked, it runs write unordered.
func (v *Votes) Write(ctx context.Context, key, digest string, at time.Time, write func() error) (bool, error) {
	s := v.s
	if s.unavailable() {
		s.metrics.unordered.Inc()
		return false, write()
	}
	keys := []string{s.cfg.Prefix + "l:" + key, s.cfg.Prefix + "v:" + key}
	mine := voteValue(at, digest)
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	deadline := time.Now().Add(lockTTL)
	for {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		res, err := claim.Run(cctx, s.rdb, keys, token, lockTTL.Milliseconds(), mine, s.cfg.VoteTTL.Milliseconds()).Slice()
		cancel()
		s.setHealth(opLookup, err)
		if err != nil {
			s.metrics.errors.WithLabelValues(opVote).Inc()
			s.metrics.unordered.Inc()
			v.unlock(ctx, keys[0], token) // in case the claim ran and its answer was lost
			return false, write()
		}
		if n, _ := res[0].(int64); n == 0 {
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
		}
		latest, _ := res[1].(string)
		if len(latest) >= 20 && latest[20:] != digest {
			v.unlock(ctx, keys[0], token)
			s.metrics.superseded.Inc()
			return true, nil
		}
		err = write()
		v.unlock(ctx, keys[0], token)
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
