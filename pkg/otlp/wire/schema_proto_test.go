package wire

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// schemaOnly are the fields the schema holds that the generated code of
// opentelemetry-proto does not: removed from OTLP, still read by pdata.
var schemaOnly = map[string]bool{
	"opentelemetry.proto.trace.v1.ResourceSpans.1000": true, // instrumentation_library_spans, reserved since 2022
}

// idKinds are the bytes fields the schema checks the length of.
var idKinds = map[string]kind{
	"trace_id": kindTraceID, "span_id": kindSpanID, "parent_span_id": kindSpanID,
}

// kindOf is the schema's kind for a field of the generated descriptors.
func kindOf(fd protoreflect.FieldDescriptor) kind {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return kindMessage
	case protoreflect.BytesKind:
		if k, ok := idKinds[string(fd.Name())]; ok {
			return k
		}
		return kindBytes
	case protoreflect.StringKind:
		return kindBytes
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return kindFixed32
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return kindFixed64
	}
	return kindVarint // bool, enums, (s)int32/64, uint32/64
}

// TestSchemaMatchesGeneratedCode holds the hand-typed schema to
// go.opentelemetry.io/proto/otlp, the generated code of
// opentelemetry-proto: every message reachable from the trace export, each
// field's number, name, kind and cardinality, both ways. A field added to
// OTLP fails here until the schema knows it.
func TestSchemaMatchesGeneratedCode(t *testing.T) {
	var diffs []string
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor, m *message)
	walk = func(md protoreflect.MessageDescriptor, m *message) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			where := fmt.Sprintf("%s.%d (%s)", md.FullName(), fd.Number(), fd.Name())
			spec, ok := m.fields[protowire.Number(fd.Number())]
			switch {
			case !ok:
				diffs = append(diffs, where+": in the generated code, not in the schema")
				continue
			case spec.name != string(fd.Name()):
				diffs = append(diffs, fmt.Sprintf("%s: named %q in the schema", where, spec.name))
			case spec.kind != kindOf(fd):
				diffs = append(diffs, fmt.Sprintf("%s: kind %d in the schema, %d in the generated code", where, spec.kind, kindOf(fd)))
			case spec.kind == kindMessage && spec.repeated != fd.IsList():
				diffs = append(diffs, fmt.Sprintf("%s: repeated %v in the schema, %v in the generated code", where, spec.repeated, fd.IsList()))
			}
			if spec.kind == kindMessage && fd.Message() != nil {
				walk(fd.Message(), spec.msg)
			}
		}
		for n, spec := range m.fields {
			if fields.ByNumber(protoreflect.FieldNumber(n)) == nil && !schemaOnly[fmt.Sprintf("%s.%d", md.FullName(), n)] {
				diffs = append(diffs, fmt.Sprintf("%s.%d (%s): in the schema, not in the generated code", md.FullName(), n, spec.name))
			}
		}
	}
	walk((&coltracepb.ExportTraceServiceRequest{}).ProtoReflect().Descriptor(), &exportRequest)
	slices.Sort(diffs)
	if len(diffs) > 0 {
		t.Errorf("the schema and go.opentelemetry.io/proto/otlp disagree:\n%s", strings.Join(diffs, "\n"))
	}
	if len(seen) < 12 {
		t.Errorf("walked %d messages, want every message of the trace export", len(seen))
	}
}
