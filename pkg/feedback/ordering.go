package feedback

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"time"
)

// Ordering keeps the last vote the one Phoenix holds when several replicas
// take votes for the same (response, name, identifier): a user votes up
// through replica B, changes it to down through C, and both then write.
// Phoenix upserts on (name, span, identifier), so the order of the writes
// decides; without Ordering, B's older vote, written last, would win.
// *sharedindex.Votes is one.
type Ordering interface {
	// Write runs write unless a later vote for key, with another digest,
	// was claimed by another replica; it reports superseded then, without
	// running write. voted is when this vote was received. It holds other
	// replicas' writes of key off while write runs. An implementation
	// that cannot tell (its store is down) runs write anyway: a vote is
	// never lost for want of ordering.
	Write(ctx context.Context, key, digest string, voted time.Time, write func() error) (superseded bool, err error)
}

// UseOrdering makes the service write each annotation through o, so that
// of the votes replicas hold for one key the latest is the one Phoenix
// keeps (see Ordering). Call it before the first Submit.
func (s *Service) UseOrdering(o Ordering) { s.order = o }

// orderKey names a key in the Ordering: a hash, so that it is short and
// holds nothing of the identifier.
func orderKey(k key) string {
	h := sha256.New()
	parts := []string{k.responseID, k.name, k.identifier}
	if k.target != TargetSpan {
		// Span keys keep the name they had before targets existed.
		parts = append(parts, string(k.target))
	}
	for _, part := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// digest names the content of a vote: two votes with the same digest write
// the same annotation.
func (v *vote) digest() string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	opt := func(p *string) {
		if p == nil {
			field([]byte{0})
			return
		}
		field(append([]byte{1}, *p...))
	}
	field([]byte(v.kind))
	opt(v.result.Label)
	if v.result.Score == nil {
		field([]byte{0})
	} else {
		var b [9]byte
		b[0] = 1
		binary.BigEndian.PutUint64(b[1:], math.Float64bits(*v.result.Score))
		field(b[:])
	}
	opt(v.result.Explanation)
	field(v.metadata)
	if v.comment != nil {
		// Appended only when there is one, so that a vote without a
		// comment keeps the digest it had before comments existed, which
		// replicas of both versions compare during an upgrade.
		opt(v.comment)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
