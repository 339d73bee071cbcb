package index

import "go.opentelemetry.io/collector/pdata/pcommon"

// InnerThan reports whether a should replace b as the span of a response id
// both carry. Within one trace, a descendant wins over its ancestor; when the
// ancestry is not known, the span that started later is taken to be the inner
// one (a child starts after its parent). A span of another trace replaces b:
// it is the newer use of the id.
func InnerThan(a, b Span, parents map[pcommon.SpanID]pcommon.SpanID) bool {
	if a.SpanID == b.SpanID {
		return false
	}
	if a.TraceID != b.TraceID {
		return true
	}
	if isAncestor(b.SpanID, a, parents) {
		return true
	}
	if isAncestor(a.SpanID, b, parents) {
		return false
	}
	return a.Start > b.Start
}

// isAncestor reports whether anc is an ancestor of s, following parent links
// through parents (which may be nil: then only s's own parent is known).
func isAncestor(anc pcommon.SpanID, s Span, parents map[pcommon.SpanID]pcommon.SpanID) bool {
	p := s.ParentID
	for range 64 { // bounded: a malformed export may contain a cycle
		if p.IsEmpty() {
			return false
		}
		if p == anc {
			return true
		}
		next, ok := parents[p]
		if !ok {
			return false
		}
		p = next
	}
	return false
}

// Innermost returns the span that should carry a response id of all those
// that do (see Index.Add): the deepest of one trace, following the parent
// links among spans; the latest to start where they are unrelated or of
// different traces. It is
// what a lookup outside the index (Phoenix's span query) returns several
// spans for. spans must not be empty.
func Innermost(spans []Span) Span {
	parents := make(map[pcommon.SpanID]pcommon.SpanID, len(spans))
	for _, s := range spans {
		parents[s.SpanID] = s.ParentID
	}
	best := spans[0]
	for _, s := range spans[1:] {
		if s.TraceID != best.TraceID {
			// Two uses of one id: the later is the one feedback means.
			if s.Start > best.Start {
				best = s
			}
			continue
		}
		if InnerThan(s, best, parents) {
			best = s
		}
	}
	return best
}
