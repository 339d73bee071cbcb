package wire

import (
	"fmt"
	"iter"

	"google.golang.org/protobuf/encoding/protowire"
)

// Scan checks that body is an OTLP ExportTraceServiceRequest in protobuf,
// as strictly as pdata's decoder does, and returns the number of spans in
// it. It refuses the group wire type (not used by proto3, hence not by
// OTLP), and varints and field numbers that overflow, where pdata lets some
// through.
//
// When visit is not nil, Scan then calls it for every span, in order, with
// the span's resource. Both are reused from call to call and what they
// return aliases body: copy what is kept.
func Scan(body []byte, visit func(*Resource, *Span)) (spans int, err error) {
	if err := check(body, &exportRequest, 0); err != nil {
		return 0, err
	}
	return Walk(body, visit), nil
}

// Walk is Scan without the check, for a body Scan (or pdata's encoder)
// has vouched for. On anything malformed it stops, with what it saw so far.
func Walk(body []byte, visit func(*Resource, *Span)) (spans int) {
	var res Resource
	var sp Span
	for c := (cursor{b: body}); c.next(); {
		if c.num != 1 {
			continue
		}
		res.msg = c.val()
		// pdata takes the spans of the removed instrumentation_library_spans
		// (1000) when a resource has no scope_spans (2); so do we, to count
		// and index what the proxy always did. (Phoenix ignores field 1000,
		// as anything built from today's .proto does.)
		scopes := protowire.Number(1000)
		for rc := (cursor{b: c.val()}); rc.next(); {
			if rc.num == 2 {
				scopes = 2
				break
			}
		}
		for rc := (cursor{b: c.val()}); rc.next(); {
			if rc.num != scopes {
				continue
			}
			for sc := (cursor{b: rc.val()}); sc.next(); {
				if sc.num != 2 {
					continue
				}
				spans++
				if visit != nil {
					sp.msg = sc.val()
					visit(&res, &sp)
				}
			}
		}
		res.Index++
	}
	return spans
}

// HasInstrumentationLibrarySpans reports whether a checked body holds
// spans in instrumentation_library_spans (field 1000 of ResourceSpans),
// which OTLP 0.19 (2022) replaced by scope_spans and today's .proto only
// reserves: a receiver built on it, as Phoenix is, ignores those spans.
func HasInstrumentationLibrarySpans(body []byte) bool {
	for c := (cursor{b: body}); c.next(); {
		if c.num != 1 {
			continue
		}
		for rc := (cursor{b: c.val()}); rc.next(); {
			if rc.num == 1000 {
				return true
			}
		}
	}
	return false
}

// Resource is the resource of the spans visited with it.
type Resource struct {
	// Index is its position among the export's resource_spans.
	Index int
	msg   []byte // the ResourceSpans
}

// Attributes yields the resource's attributes in order.
func (r *Resource) Attributes() iter.Seq2[[]byte, Value] {
	return func(yield func([]byte, Value) bool) {
		for c := (cursor{b: r.msg}); c.next(); {
			// A message field given twice is merged: the attributes of
			// both count, in order.
			if c.num == 1 && !eachAttribute(c.val(), 1, yield) {
				return
			}
		}
	}
}

// Span is one span of an export.
type Span struct {
	msg []byte
}

// Header is what identifies a span. Its Name aliases the body.
type Header struct {
	TraceID           [16]byte
	SpanID            [8]byte
	ParentSpanID      [8]byte
	Name              []byte
	StartTimeUnixNano uint64
}

// Header reads the span's ids, name and start time. A field given twice
// is taken from its last occurrence, an empty id is zero: pdata's reading.
func (s *Span) Header() Header {
	var h Header
	for c := (cursor{b: s.msg}); c.next(); {
		switch c.num {
		case 1:
			h.TraceID = [16]byte{}
			copy(h.TraceID[:], c.val())
		case 2:
			h.SpanID = [8]byte{}
			copy(h.SpanID[:], c.val())
		case 4:
			h.ParentSpanID = [8]byte{}
			copy(h.ParentSpanID[:], c.val())
		case 5:
			h.Name = c.val()
		case 7:
			h.StartTimeUnixNano = c.u
		}
	}
	return h
}

// Attributes yields the span's attributes in order. As with pdata's Map, a
// key may appear more than once; the first one is the one that counts.
func (s *Span) Attributes() iter.Seq2[[]byte, Value] {
	return func(yield func([]byte, Value) bool) {
		eachAttribute(s.msg, 9, yield)
	}
}

// MaxLookupKeys is how many keys Span.Lookup looks for: one bit each of
// its mask of keys found.
const MaxLookupKeys = 64

// Lookup finds the first attribute of each of keys in one pass over the
// span's attributes, and sets the value in the same place of vals (which
// must be as long): where there is none, it leaves the zero Value, which is
// of no type. It is Attributes for the hot path, where a few keys are
// looked for on every span. Keys past the MaxLookupKeys-th are not looked
// for.
func (s *Span) Lookup(keys []string, vals []Value) {
	keys = keys[:min(len(keys), MaxLookupKeys)]
	var found uint64
	all := uint64(1)<<len(keys) - 1
	for c := (cursor{b: s.msg}); c.next(); {
		if c.num != 9 {
			continue
		}
		kv := c.val()
		key := keyOf(kv)
		for i, k := range keys {
			if found&(1<<i) == 0 && string(key) == k {
				vals[i] = Value{kv: kv}
				found |= 1 << i
			}
		}
		if found == all {
			return
		}
	}
}

// eachAttribute yields the key-values in field num of msg; it returns false
// when yield asked to stop.
func eachAttribute(msg []byte, num protowire.Number, yield func([]byte, Value) bool) bool {
	for c := (cursor{b: msg}); c.next(); {
		if c.num == num && !yield(keyOf(c.val()), Value{kv: c.val()}) {
			return false
		}
	}
	return true
}

// keyOf returns the key of a KeyValue: the last one given, as pdata reads
// it. Nearly every KeyValue is a key (field 1) of under 128 bytes, then a
// value (field 2), each once: that shape is read without a loop.
func keyOf(kv []byte) []byte {
	if len(kv) > 1 && kv[0] == 0x0a && kv[1] < 0x80 {
		end := 2 + int(kv[1])
		if end == len(kv) {
			return kv[2:end]
		}
		if end < len(kv) && kv[end] == 0x12 {
			c := cursor{b: kv, pos: end}
			if c.next() && c.pos == len(kv) {
				return kv[2:end]
			}
		}
	}
	var key []byte
	for c := (cursor{b: kv}); c.next(); {
		if c.num == 1 {
			key = c.val()
		}
	}
	return key
}

// Value is an attribute's value, of whichever type it is. It is read only
// when asked for: most attributes are skipped by their key.
type Value struct {
	kv []byte // the KeyValue
}

// Str returns a string value; ok is false for a value of another type.
func (v Value) Str() (s []byte, ok bool) {
	num, raw := v.oneof()
	return raw, num == 1
}

// oneof returns the member of the value's oneof that is set, and its bytes
// if it is a string or bytes. pdata's reading: the last member given wins,
// across all the value messages given (protobuf merges a message field
// that repeats).
func (v Value) oneof() (protowire.Number, []byte) {
	var num protowire.Number
	var raw []byte
	for c := (cursor{b: v.kv}); c.next(); {
		if c.num != 2 {
			continue
		}
		for vc := (cursor{b: c.val()}); vc.next(); {
			if vc.num >= 1 && vc.num <= 8 {
				num, raw = vc.num, vc.val()
			}
		}
	}
	return num, raw
}

// cursor steps through the fields of a message. It keeps offsets, not
// slices: storing only integers, it costs the garbage collector nothing.
type cursor struct {
	b      []byte // the message
	pos    int    // where the next field starts
	num    protowire.Number
	typ    protowire.Type
	lo, hi int    // a length-delimited field's contents: b[lo:hi]
	u      uint64 // the value of a varint or fixed field
}

// val is the contents of the current length-delimited field.
func (c *cursor) val() []byte { return c.b[c.lo:c.hi] }

// next reads the next field. It returns false at the end, or at a field
// that is not well formed, where it stays (fieldError says what is wrong
// with it). It is the hot loop of everything here, so the common one-byte
// tags and lengths are read inline.
func (c *cursor) next() bool {
	b, i := c.b, c.pos
	if i >= len(b) {
		return false
	}
	var tag uint64
	if b[i] < 0x80 {
		tag = uint64(b[i])
		i++
	} else {
		v, n := protowire.ConsumeVarint(b[i:])
		if n < 0 {
			return false
		}
		tag, i = v, i+n
	}
	num, typ := protowire.DecodeTag(tag)
	if num < protowire.MinValidNumber {
		return false
	}
	switch typ {
	case protowire.BytesType:
		var l uint64
		if i < len(b) && b[i] < 0x80 {
			l = uint64(b[i])
			i++
		} else {
			v, n := protowire.ConsumeVarint(b[i:])
			if n < 0 {
				return false
			}
			l, i = v, i+n
		}
		if l > uint64(len(b)-i) {
			return false
		}
		c.lo, c.hi = i, i+int(l)
		i += int(l)
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b[i:])
		if n < 0 {
			return false
		}
		c.u, i = v, i+n
	case protowire.Fixed64Type:
		v, n := protowire.ConsumeFixed64(b[i:])
		if n < 0 {
			return false
		}
		c.u, i = v, i+n
	case protowire.Fixed32Type:
		v, n := protowire.ConsumeFixed32(b[i:])
		if n < 0 {
			return false
		}
		c.u, i = uint64(v), i+n
	default:
		return false
	}
	c.num, c.typ, c.pos = num, typ, i
	return true
}

// fieldError says why cursor.next refused the field at the start of b.
func fieldError(b []byte) error {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return fmt.Errorf("field tag: %w", protowire.ParseError(n))
	}
	switch typ {
	case protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type, protowire.BytesType:
	default:
		return fmt.Errorf("wire type %s is not used by OTLP", typeName(typ))
	}
	if n := protowire.ConsumeFieldValue(num, typ, b[n:]); n < 0 {
		return fmt.Errorf("%s value: %w", typeName(typ), protowire.ParseError(n))
	}
	return fmt.Errorf("malformed field %d", num)
}
