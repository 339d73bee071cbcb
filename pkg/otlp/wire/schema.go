package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// MaxDepth bounds how deeply attribute values nest (key-values in lists in
// arrays...). pdata's decoder stops at the same depth, as the protobuf
// runtimes of Go and Python do.
const MaxDepth = 100

// kind is what a field of the schema holds.
type kind uint8

const (
	kindUnknown kind = iota // not in the schema: skipped, as protobuf asks
	kindVarint
	kindFixed32
	kindFixed64
	kindBytes   // strings and bytes; the contents are not checked
	kindTraceID // bytes, empty or 16 long
	kindSpanID  // bytes, empty or 8 long
	kindMessage
)

// wireType is the wire type a field of this kind must arrive in.
func (k kind) wireType() protowire.Type {
	switch k {
	case kindVarint:
		return protowire.VarintType
	case kindFixed32:
		return protowire.Fixed32Type
	case kindFixed64:
		return protowire.Fixed64Type
	}
	return protowire.BytesType
}

type fieldSpec struct {
	name     string
	kind     kind
	msg      *message // for kindMessage
	repeated bool     // errors say which one: spans[3]
}

// message is the schema of one protobuf message: enough to check that a
// body is well formed the way pdata's decoder checks it (every known field
// in its wire type, ids of the right length, values nested at most
// MaxDepth deep), without keeping anything.
type message struct {
	fields map[protowire.Number]fieldSpec
	// nests says the message is one of the attribute values that may
	// nest within each other, and so counts towards MaxDepth.
	nests bool
	// byNumber is fields as a slice indexed by field number, for the
	// numbers below len(byNumber): no map lookup on the hot path.
	byNumber []fieldSpec
}

func (m *message) field(n protowire.Number) fieldSpec {
	if int(n) < len(m.byNumber) {
		return m.byNumber[n]
	}
	return m.fields[n]
}

// The trace export, from opentelemetry-proto v1 (collector/trace/v1,
// trace/v1, resource/v1, common/v1). Field numbers and names are the
// .proto's; pdata decodes the same fields. Typed here, not read from the
// descriptors at run time, so that the hot path is a slice index;
// TestSchemaMatchesGeneratedCode holds it to go.opentelemetry.io/proto/otlp.
var (
	exportRequest, resourceSpans, resource, entityRef, scopeSpans, scope,
	span, event, link, status, keyValue, anyValue, arrayValue, keyValueList message
)

func init() {
	define := func(m *message, nests bool, fields map[protowire.Number]fieldSpec) {
		m.fields, m.nests = fields, nests
		size := 0
		for n := range fields {
			if n < 32 {
				size = max(size, int(n)+1)
			}
		}
		m.byNumber = make([]fieldSpec, size)
		for n, f := range fields {
			if int(n) < size {
				m.byNumber[n] = f
			}
		}
	}
	msg := func(name string, m *message) fieldSpec { return fieldSpec{name: name, kind: kindMessage, msg: m} }
	list := func(name string, m *message) fieldSpec {
		return fieldSpec{name: name, kind: kindMessage, msg: m, repeated: true}
	}
	attrs := list("attributes", &keyValue)

	define(&exportRequest, false, map[protowire.Number]fieldSpec{
		1: list("resource_spans", &resourceSpans),
	})
	define(&resourceSpans, false, map[protowire.Number]fieldSpec{
		1: msg("resource", &resource),
		2: list("scope_spans", &scopeSpans),
		3: {name: "schema_url", kind: kindBytes},
		// Removed from OTLP in 2022 (reserved since); pdata still reads
		// it, and so takes its spans when scope_spans is absent.
		1000: list("instrumentation_library_spans", &scopeSpans),
	})
	define(&resource, false, map[protowire.Number]fieldSpec{
		1: attrs,
		2: {name: "dropped_attributes_count", kind: kindVarint},
		3: list("entity_refs", &entityRef),
	})
	define(&entityRef, false, map[protowire.Number]fieldSpec{
		1: {name: "schema_url", kind: kindBytes},
		2: {name: "type", kind: kindBytes},
		3: {name: "id_keys", kind: kindBytes},
		4: {name: "description_keys", kind: kindBytes},
	})
	define(&scopeSpans, false, map[protowire.Number]fieldSpec{
		1: msg("scope", &scope),
		2: list("spans", &span),
		3: {name: "schema_url", kind: kindBytes},
	})
	define(&scope, false, map[protowire.Number]fieldSpec{
		1: {name: "name", kind: kindBytes},
		2: {name: "version", kind: kindBytes},
		3: attrs,
		4: {name: "dropped_attributes_count", kind: kindVarint},
	})
	define(&span, false, map[protowire.Number]fieldSpec{
		1:  {name: "trace_id", kind: kindTraceID},
		2:  {name: "span_id", kind: kindSpanID},
		3:  {name: "trace_state", kind: kindBytes},
		4:  {name: "parent_span_id", kind: kindSpanID},
		5:  {name: "name", kind: kindBytes},
		6:  {name: "kind", kind: kindVarint},
		7:  {name: "start_time_unix_nano", kind: kindFixed64},
		8:  {name: "end_time_unix_nano", kind: kindFixed64},
		9:  attrs,
		10: {name: "dropped_attributes_count", kind: kindVarint},
		11: list("events", &event),
		12: {name: "dropped_events_count", kind: kindVarint},
		13: list("links", &link),
		14: {name: "dropped_links_count", kind: kindVarint},
		15: msg("status", &status),
		16: {name: "flags", kind: kindFixed32},
	})
	define(&event, false, map[protowire.Number]fieldSpec{
		1: {name: "time_unix_nano", kind: kindFixed64},
		2: {name: "name", kind: kindBytes},
		3: attrs,
		4: {name: "dropped_attributes_count", kind: kindVarint},
	})
	define(&link, false, map[protowire.Number]fieldSpec{
		1: {name: "trace_id", kind: kindTraceID},
		2: {name: "span_id", kind: kindSpanID},
		3: {name: "trace_state", kind: kindBytes},
		4: attrs,
		5: {name: "dropped_attributes_count", kind: kindVarint},
		6: {name: "flags", kind: kindFixed32},
	})
	define(&status, false, map[protowire.Number]fieldSpec{
		2: {name: "message", kind: kindBytes},
		3: {name: "code", kind: kindVarint},
	})
	define(&keyValue, true, map[protowire.Number]fieldSpec{
		1: {name: "key", kind: kindBytes},
		2: msg("value", &anyValue),
		3: {name: "key_strindex", kind: kindVarint}, // profiles' string table
	})
	define(&anyValue, true, map[protowire.Number]fieldSpec{
		1: {name: "string_value", kind: kindBytes},
		2: {name: "bool_value", kind: kindVarint},
		3: {name: "int_value", kind: kindVarint},
		4: {name: "double_value", kind: kindFixed64},
		5: msg("array_value", &arrayValue),
		6: msg("kvlist_value", &keyValueList),
		7: {name: "bytes_value", kind: kindBytes},
		8: {name: "string_value_strindex", kind: kindVarint},
	})
	define(&arrayValue, true, map[protowire.Number]fieldSpec{
		1: list("values", &anyValue),
	})
	define(&keyValueList, true, map[protowire.Number]fieldSpec{
		1: list("values", &keyValue),
	})
}

// check reports the first thing in b that is not a well-formed m.
func check(b []byte, m *message, depth int) error {
	if m.nests {
		if depth >= MaxDepth {
			return fmt.Errorf("attribute values nested more than %d deep", MaxDepth)
		}
		depth++
	}
	c := cursor{b: b}
	for at := 0; c.next(); at = c.pos {
		spec := m.field(c.num)
		if spec.kind == kindUnknown {
			continue
		}
		if err := checkField(&c, spec, depth); err != nil {
			return atField(b, at, c.num, m, err)
		}
	}
	if c.pos < len(b) {
		rest := b[c.pos:]
		num, _, _ := protowire.ConsumeTag(rest)
		return atField(b, c.pos, num, m, fieldError(rest))
	}
	return nil
}

func checkField(c *cursor, spec fieldSpec, depth int) error {
	if want := spec.kind.wireType(); c.typ != want {
		return fmt.Errorf("wire type %s, want %s", typeName(c.typ), typeName(want))
	}
	switch spec.kind {
	case kindTraceID:
		if n := len(c.val()); n != 0 && n != 16 {
			return fmt.Errorf("%d bytes, want 16 (or none)", n)
		}
	case kindSpanID:
		if n := len(c.val()); n != 0 && n != 8 {
			return fmt.Errorf("%d bytes, want 8 (or none)", n)
		}
	case kindMessage:
		return check(c.val(), spec.msg, depth)
	}
	return nil
}

// atField wraps err with where it is: the field's name and, for a field that
// may repeat, which one it is. Only errors pay for counting.
func atField(msg []byte, offset int, num protowire.Number, m *message, err error) error {
	name := m.field(num).name
	switch {
	case num <= 0: // the tag itself is broken
		name = fmt.Sprintf("byte %d", offset)
	case name == "":
		name = fmt.Sprintf("field %d", num)
	}
	if m.field(num).repeated {
		i := 0
		for c := (cursor{b: msg[:offset]}); c.next(); {
			if c.num == num {
				i++
			}
		}
		name = fmt.Sprintf("%s[%d]", name, i)
	}
	if e, ok := err.(*Error); ok {
		e.Path = name + "." + e.Path
		return e
	}
	return &Error{Path: name, Err: err}
}

// Error says where a body is not a well-formed export, as a path of field
// names from the request down ("resource_spans[0].scope_spans[1].spans[7].trace_id").
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string {
	// Values nested a hundred deep make a path of kilobytes; the ends
	// say where.
	const keep = 160
	path := e.Path
	if len(path) > 2*keep+3 {
		path = path[:keep] + "..." + path[len(path)-keep:]
	}
	return path + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func typeName(t protowire.Type) string {
	switch t {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed32Type:
		return "fixed32"
	case protowire.Fixed64Type:
		return "fixed64"
	case protowire.BytesType:
		return "length-delimited"
	case protowire.StartGroupType, protowire.EndGroupType:
		return "group"
	}
	return fmt.Sprintf("%d", t)
}
