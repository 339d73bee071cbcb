package feedback

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// What the service holds for a feedback is counted in bytes against
// Config.MaxBytes, because a count alone does not bound memory: metadata
// and explanation make one feedback 50 bytes or 30 KiB.
//
// The estimate of a record (record.bytes) is its strings, the JSON of its
// metadata, and fixed overheads for everything else. Metadata is kept as
// its JSON, decoded only for an attempt: a map[string]any can take several
// times the bytes of its encoding, the encoding is what the estimate can
// count honestly. An ended record keeps only what GET shows: its vote is
// dropped, so it costs its overhead, key, span names and reason.
//
// The overheads were measured (runtime.MemStats, HeapAlloc+StackInuse,
// over 20,000 records, go1.26 linux/amd64): a record waiting for its span,
// or ended, holds 1,270 to 1,340 bytes, of which about 100 are strings; a
// pending record whose span is known 5,650 to 6,270 bytes, the difference
// being the goroutine that writes it (its stack and timer), blocked on the
// concurrency limit or waiting out a backoff after a request.
// TestByteBudgetHoldsUnderFlood and TestEndedFeedbackGivesBytesBack check
// the estimate against the heap.

// recordOverhead is what one record costs besides its strings and
// metadata: the record itself, its done channel, its expiry timer, its
// entries in byResponse (a map of its own per response id), in the ended
// LRU and in waiting, and the headers of its label and explanation.
const recordOverhead = 1200

// writerOverhead is the goroutine that writes a pending record once its
// span is known (see deliver). A record is counted with it from the
// start, while it waits for its span too, so that pending feedback does
// not outgrow MaxBytes when the spans come in.
const writerOverhead = 4608

// maxReasonBytes bounds the reason a record keeps: Phoenix's error text
// is already bounded (1 KiB), this bounds the rest (transport errors name
// the URL), so that a pending record grows little once it is accepted.
const maxReasonBytes = 2 << 10

// vote is what a record writes: the annotation's result and metadata. Its
// name and identifier are the record's key, its span the record's span.
type vote struct {
	kind   string
	result phoenix.Result
	// metadata is the client's metadata as JSON (nil: none), without the
	// response_id the annotation adds.
	metadata []byte
	// comment is written as a note beside the annotation; nil: none.
	comment *string
}

// annotates reports whether v writes an annotation: a feedback may be a
// comment alone, written as a note only.
func (v *vote) annotates() bool {
	return v.result.Label != nil || v.result.Score != nil || v.result.Explanation != nil
}

// bytes is the estimate of what v holds beyond recordOverhead.
func (v *vote) bytes() int {
	n := len(v.kind) + len(v.metadata)
	if v.result.Label != nil {
		n += len(*v.result.Label)
	}
	if v.result.Explanation != nil {
		n += len(*v.result.Explanation)
	}
	if v.comment != nil {
		n += len(*v.comment)
	}
	return n
}

// bytes is the estimate of the memory r holds (see recordOverhead).
func (r *record) bytes() int {
	n := recordOverhead +
		len(r.key.responseID) + len(r.key.name) + len(r.key.identifier) +
		len(r.span.Project) + len(r.span.Name) + len(r.annID) + len(r.reason) + len(r.session) +
		r.vote.bytes()
	if r.state == Pending {
		n += writerOverhead
	}
	return n
}

// budget is the bytes the records of a Service hold, pending and ended,
// as record.bytes estimates them.
type budget struct {
	max            int
	pending, ended int
	// waiting and waitingBytes are the pending records whose span is not
	// known yet (part of pending): they may take only their share of the
	// caps (see waitingShare).
	waiting, waitingBytes int
}

func (b *budget) over() bool { return b.pending+b.ended > b.max }

// countLocked adds r to the budget as it is now; uncountLocked takes out
// what it was counted for. Every change to what record.bytes counts is
// made between the two, so that the budget always holds what the records
// hold. Ended records are forgotten, oldest first, while the budget is
// over.
func (s *Service) countLocked(r *record) {
	r.size = r.bytes()
	if r.state == Pending {
		s.mem.pending += r.size
		if !r.resolved {
			s.mem.waiting++
			s.mem.waitingBytes += r.size
		}
	} else {
		s.mem.ended += r.size
	}
	for s.mem.over() {
		if _, _, ok := s.ended.RemoveOldest(); !ok {
			return // all pending: Submit refuses more
		}
		s.metrics.evictions.WithLabelValues(evictedBytes).Inc()
	}
}

func (s *Service) uncountLocked(r *record) {
	if r.state == Pending {
		s.mem.pending -= r.size
		if !r.resolved {
			s.mem.waiting--
			s.mem.waitingBytes -= r.size
		}
	} else {
		s.mem.ended -= r.size
	}
	r.size = 0
}

// heldBytes returns the bytes held for pending and ended feedback.
func (s *Service) heldBytes() (pending, ended int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem.pending, s.mem.ended
}

// prepare normalizes f and returns the vote a record keeps for it; its
// metadata may take maxMetadata bytes as JSON.
func prepare(f *Feedback, maxMetadata int) (vote, *FieldError) {
	if ferr := f.normalize(); ferr != nil {
		return vote{}, ferr
	}
	md, ferr := encodeMetadata(f.Metadata, maxMetadata)
	if ferr != nil {
		return vote{}, ferr
	}
	return vote{
		kind:     f.AnnotatorKind,
		result:   phoenix.Result{Label: f.Label, Score: f.Score, Explanation: f.Explanation},
		metadata: md,
		comment:  f.Comment,
	}, nil
}

// encodeMetadata returns the JSON of md (nil when empty), refused past max
// bytes.
func encodeMetadata(md map[string]any, max int) ([]byte, *FieldError) {
	if len(md) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// <, > and & as they came, not as \u003c: the limit is on what the
	// client sent.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(md); err != nil {
		// Only from Go callers: JSON always encodes.
		return nil, fieldErr("metadata", "expected JSON values: %v", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > max {
		return nil, fieldErr("metadata", "at most %d bytes as JSON, got %d", max, len(b))
	}
	return bytes.Clone(b), nil
}

// annotation is the annotation an attempt writes for r's vote v: the
// metadata decoded again, with the response id it was sent by.
func (r *record) annotation(v vote) (phoenix.SpanAnnotation, error) {
	md := map[string]any{}
	var err error
	if len(v.metadata) > 0 {
		dec := json.NewDecoder(bytes.NewReader(v.metadata))
		// Numbers as they were written: a float64 would round big integers.
		dec.UseNumber()
		err = dec.Decode(&md)
	}
	// The key the feedback was sent by, so that Phoenix shows it; it is
	// ours to set, whatever the client put there.
	md["response_id"] = r.key.responseID
	return phoenix.SpanAnnotation{
		SpanID: r.span.SpanID.String(), Name: r.key.name, Identifier: r.key.identifier,
		AnnotatorKind: v.kind, Result: v.result, Metadata: md,
	}, err
}

// clip cuts s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
