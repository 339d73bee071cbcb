package wire

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/protobuf/encoding/protowire"
)

// fullTraces sets every field of the trace schema at least once, with
// attribute values of every type, nested.
func fullTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	for r := range 2 {
		rs := td.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", r))
		rs.Resource().Attributes().PutStr("openinference.project.name", "proj")
		rs.Resource().SetDroppedAttributesCount(1)
		for s := range 2 {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName("scope")
			ss.Scope().SetVersion("1.0")
			ss.Scope().Attributes().PutInt("n", int64(s))
			ss.SetSchemaUrl("u")
			for k := range 3 {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(pcommon.TraceID{byte(r), byte(s), byte(k), 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
				sp.SetSpanID(pcommon.SpanID{byte(k + 1), 2, 3, 4, 5, 6, 7, 8})
				if k > 0 {
					sp.SetParentSpanID(pcommon.SpanID{byte(k), 2, 3, 4, 5, 6, 7, 8})
				}
				sp.TraceState().FromRaw("a=b")
				sp.SetFlags(1)
				sp.SetName(fmt.Sprintf("span %d/%d/%d", r, s, k))
				sp.SetKind(ptrace.SpanKindClient)
				sp.SetStartTimestamp(pcommon.Timestamp(1e18 + k))
				sp.SetEndTimestamp(pcommon.Timestamp(1e18 + 100))
				a := sp.Attributes()
				a.PutStr("gen_ai.response.id", fmt.Sprintf("chatcmpl-%d%d%d", r, s, k))
				a.PutBool("b", true)
				a.PutInt("i", -7)
				a.PutDouble("d", 1.5)
				a.PutEmptyBytes("bytes").FromRaw([]byte{0, 1, 2})
				arr := a.PutEmptySlice("arr")
				arr.AppendEmpty().SetStr("x")
				arr.AppendEmpty().SetEmptyMap().PutStr("deep", "y")
				a.PutEmptyMap("map").PutEmptySlice("inner").AppendEmpty().SetInt(3)
				a.PutEmpty("empty")
				sp.SetDroppedAttributesCount(2)
				ev := sp.Events().AppendEmpty()
				ev.SetName("event")
				ev.SetTimestamp(5)
				ev.Attributes().PutStr("k", "v")
				ev.SetDroppedAttributesCount(1)
				sp.SetDroppedEventsCount(3)
				ln := sp.Links().AppendEmpty()
				ln.SetTraceID(pcommon.TraceID{1})
				ln.SetSpanID(pcommon.SpanID{2})
				ln.TraceState().FromRaw("c=d")
				ln.Attributes().PutStr("k", "v")
				ln.SetFlags(1)
				ln.SetDroppedAttributesCount(1)
				sp.SetDroppedLinksCount(4)
				sp.Status().SetCode(ptrace.StatusCodeError)
				sp.Status().SetMessage("boom")
			}
		}
	}
	return td
}

func marshal(t testing.TB, td ptrace.Traces) []byte {
	t.Helper()
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seen is what Scan showed of one span, in a form to compare with pdata's.
type seen struct {
	resource          int
	traceID           [16]byte
	spanID, parentID  [8]byte
	name              string
	start             uint64
	attrs, resAttrs   []string
	firstResponseID   string
	firstResponseIDOK bool
}

func scanAll(t testing.TB, body []byte) (int, []seen, error) {
	t.Helper()
	var got []seen
	n, err := Scan(body, func(r *Resource, s *Span) {
		h := s.Header()
		v := seen{resource: r.Index, traceID: h.TraceID, spanID: h.SpanID, parentID: h.ParentSpanID,
			name: string(h.Name), start: h.StartTimeUnixNano}
		for k, val := range s.Attributes() {
			v.attrs = append(v.attrs, attrString(k, val))
			if str, ok := val.Str(); ok && !v.firstResponseIDOK && string(k) == "gen_ai.response.id" {
				v.firstResponseID, v.firstResponseIDOK = string(str), true
			}
		}
		for k, val := range r.Attributes() {
			v.resAttrs = append(v.resAttrs, attrString(k, val))
		}
		got = append(got, v)
	})
	return n, got, err
}

func attrString(k []byte, v Value) string {
	if s, ok := v.Str(); ok {
		return fmt.Sprintf("%s=%q", k, s)
	}
	num, _ := v.oneof()
	if num == 8 {
		num = 0 // string_value_strindex (profiles' string table): pdata's Value calls it empty
	}
	return fmt.Sprintf("%s:%d", k, num)
}

// pdataSeen is the same, read by pdata.
func pdataSeen(td ptrace.Traces) []seen {
	var want []seen
	for i, rs := range td.ResourceSpans().All() {
		var resAttrs []string
		for k, v := range rs.Resource().Attributes().All() {
			resAttrs = append(resAttrs, pdataAttrString(k, v))
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				v := seen{resource: i, traceID: s.TraceID(), spanID: s.SpanID(), parentID: s.ParentSpanID(),
					name: s.Name(), start: uint64(s.StartTimestamp()), resAttrs: resAttrs}
				for k, a := range s.Attributes().All() {
					v.attrs = append(v.attrs, pdataAttrString(k, a))
				}
				if a, ok := s.Attributes().Get("gen_ai.response.id"); ok && a.Type() == pcommon.ValueTypeStr {
					v.firstResponseID, v.firstResponseIDOK = a.Str(), true
				}
				want = append(want, v)
			}
		}
	}
	return want
}

var oneofOf = map[pcommon.ValueType]protowire.Number{
	pcommon.ValueTypeEmpty: 0, pcommon.ValueTypeStr: 1, pcommon.ValueTypeBool: 2, pcommon.ValueTypeInt: 3,
	pcommon.ValueTypeDouble: 4, pcommon.ValueTypeSlice: 5, pcommon.ValueTypeMap: 6, pcommon.ValueTypeBytes: 7,
}

func pdataAttrString(k string, v pcommon.Value) string {
	if v.Type() == pcommon.ValueTypeStr {
		return fmt.Sprintf("%s=%q", k, v.Str())
	}
	return fmt.Sprintf("%s:%d", k, oneofOf[v.Type()])
}

// compare checks Scan against pdata's decoder on body: the same verdict
// (except where Scan is stricter on purpose), the same spans, the same
// attributes.
func compare(t *testing.T, body []byte) {
	t.Helper()
	req := ptraceotlp.NewExportRequest()
	pdataErr := req.UnmarshalProto(body)
	n, got, err := scanAll(t, body)
	switch {
	case err != nil && pdataErr == nil:
		// Stricter than pdata on purpose: groups (pdata takes some,
		// wrongly), and varints and tags that overflow (pdata drops the
		// high bits).
		if msg := err.Error(); !strings.Contains(msg, "group") && !strings.Contains(msg, "overflow") && !strings.Contains(msg, "invalid field number") {
			t.Fatalf("Scan refused what pdata takes: %v", err)
		}
		return
	case err == nil && pdataErr != nil:
		t.Fatalf("Scan took what pdata refuses (%v)", pdataErr)
	case err != nil:
		return
	}
	td := req.Traces()
	if n != td.SpanCount() {
		t.Fatalf("Scan counted %d spans, pdata %d", n, td.SpanCount())
	}
	want := pdataSeen(td)
	if len(got) != len(want) {
		t.Fatalf("visited %d spans, pdata has %d", len(got), len(want))
	}
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Fatalf("span %d:\nScan:  %+v\npdata: %+v", i, got[i], want[i])
		}
	}
}

func TestScanReadsWhatPdataReads(t *testing.T) {
	body := marshal(t, fullTraces())
	n, got, err := scanAll(t, body)
	if err != nil {
		t.Fatal(err)
	}
	if n != 12 || len(got) != 12 {
		t.Fatalf("counted %d and visited %d spans, want 12", n, len(got))
	}
	if got[5].name != "span 0/1/2" || got[5].firstResponseID != "chatcmpl-012" || got[11].resource != 1 {
		t.Fatalf("span 5 = %+v, span 11 = %+v", got[5], got[11])
	}
	compare(t, body)
}

func TestScanCapturedExports(t *testing.T) {
	files, _ := filepath.Glob("../../extract/testdata/capture/*.binpb")
	if len(files) == 0 {
		t.Fatal("no captured exports")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, body)
		})
	}
}

// The cases below are written in the wire format by hand: pdata cannot
// produce them.
func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

func lenField(num protowire.Number, parts ...[]byte) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), bytes.Join(parts, nil))
}

func spanIn(fields ...[]byte) []byte {
	return lenField(1, lenField(2, lenField(2, fields...)))
}

func nestedValue(depth int) []byte {
	v := lenField(1, []byte("leaf")) // AnyValue{string_value}
	for range depth {
		v = lenField(5, lenField(1, v)) // AnyValue{array_value{values: v}}
	}
	return v
}

func TestScanRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, body, wantPath, wantErr string
	}{
		{"truncated length", string(lenField(1, []byte("abc"))[:3]), "resource_spans[0]", "unexpected EOF"},
		{"resource_spans as varint", string(protowire.AppendVarint(tag(1, protowire.VarintType), 1)), "resource_spans[0]", "wire type varint, want length-delimited"},
		{"short trace id", string(spanIn(lenField(1, []byte("12345")))), "resource_spans[0].scope_spans[0].spans[0].trace_id", "5 bytes, want 16"},
		{"long span id", string(spanIn(lenField(2, []byte("123456789")))), "resource_spans[0].scope_spans[0].spans[0].span_id", "9 bytes, want 8"},
		{"second span broken", string(lenField(1, lenField(2, lenField(2), lenField(2, lenField(4, []byte("x")))))), "resource_spans[0].scope_spans[0].spans[1].parent_span_id", "1 bytes, want 8"},
		{"start time as varint", string(spanIn(protowire.AppendVarint(tag(7, protowire.VarintType), 5))), "spans[0].start_time_unix_nano", "wire type varint, want fixed64"},
		{"group", string(spanIn(tag(20, protowire.StartGroupType), tag(20, protowire.EndGroupType))), "spans[0]", "group is not used by OTLP"},
		{"attribute value too deep", string(spanIn(lenField(9, lenField(1, []byte("k")), lenField(2, nestedValue(MaxDepth))))), "spans[0].attributes[0].value", fmt.Sprintf("nested more than %d deep", MaxDepth)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Scan([]byte(tt.body), func(*Resource, *Span) { t.Error("visited a span of a refused export") })
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("Scan = %d, %v; want an *Error", n, err)
			}
			if !strings.Contains(we.Path, tt.wantPath) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q; want path %q and %q", err, tt.wantPath, tt.wantErr)
			}
			// pdata refuses all of these too.
			if pdataErr := ptraceotlp.NewExportRequest().UnmarshalProto([]byte(tt.body)); pdataErr == nil && tt.name != "group" {
				t.Fatalf("pdata takes %s", tt.name)
			}
		})
	}
}

func TestScanAccepts(t *testing.T) {
	for _, tt := range []struct {
		name  string
		body  []byte
		spans int
	}{
		{"empty export", nil, 0},
		{"empty span", spanIn(), 1},
		{"unknown fields everywhere", append(spanIn(protowire.AppendVarint(tag(99, protowire.VarintType), 1)), lenField(7, []byte("?"))...), 1},
		{"nested as deep as allowed", spanIn(lenField(9, lenField(1, []byte("k")), lenField(2, nestedValue((MaxDepth-2)/2)))), 1},
		{"instrumentation_library_spans without scope_spans", lenField(1, lenField(1000, lenField(2), lenField(2))), 2},
		{"instrumentation_library_spans beside scope_spans", lenField(1, lenField(1000, lenField(2), lenField(2)), lenField(2, lenField(2))), 1},
		{"string_value_strindex", spanIn(lenField(9, lenField(1, []byte("k")), lenField(2, protowire.AppendVarint(tag(8, protowire.VarintType), 3)))), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Scan(tt.body, nil)
			if err != nil || n != tt.spans {
				t.Fatalf("Scan = %d, %v; want %d spans", n, err, tt.spans)
			}
			compare(t, tt.body)
		})
	}
}

// TestRepeatedFieldsMerge: a field given twice is read as pdata reads it
// (the last scalar wins, message fields merge).
func TestRepeatedFieldsMerge(t *testing.T) {
	kv := lenField(9, lenField(1, []byte("first")), lenField(2, lenField(1, []byte("a"))), lenField(1, []byte("key")), lenField(2, protowire.AppendVarint(tag(2, protowire.VarintType), 1)))
	body := spanIn(lenField(5, []byte("old")), lenField(5, []byte("new")), kv, lenField(1, bytes.Repeat([]byte{1}, 16)), lenField(1))
	compare(t, body)
	_, got, err := scanAll(t, body)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].name != "new" || got[0].traceID != [16]byte{} || got[0].attrs[0] != "key:2" {
		t.Fatalf("read %+v", got[0])
	}
}

func FuzzScan(f *testing.F) {
	f.Add(marshal(f, fullTraces()))
	files, _ := filepath.Glob("../../extract/testdata/capture/*.binpb")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add(spanIn(lenField(9, lenField(1, []byte("k")), lenField(2, nestedValue(3)))))
	f.Add(lenField(1, lenField(1000, lenField(2))))
	f.Add(spanIn(lenField(9, lenField(1, []byte("k")), lenField(2, protowire.AppendVarint(tag(8, protowire.VarintType), 3)))))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Walk takes anything without panicking, even what Scan refuses.
		Walk(body, func(r *Resource, s *Span) {
			s.Header()
			for _, v := range s.Attributes() {
				v.Str()
			}
			for range r.Attributes() {
			}
		})
		compare(t, body)
	})
}

func TestHasInstrumentationLibrarySpans(t *testing.T) {
	if HasInstrumentationLibrarySpans(marshal(t, fullTraces())) {
		t.Error("an export of today's OTLP has instrumentation_library_spans")
	}
	if !HasInstrumentationLibrarySpans(lenField(1, lenField(2), lenField(1000, lenField(2)))) {
		t.Error("field 1000 not seen")
	}
}

func TestErrorPathIsBounded(t *testing.T) {
	_, err := Scan(spanIn(lenField(9, lenField(1, []byte("k")), lenField(2, nestedValue(MaxDepth)))), nil)
	if err == nil || len(err.Error()) > 500 || !strings.Contains(err.Error(), "resource_spans[0].scope_spans[0].spans[0].attributes[0].value") {
		t.Fatalf("error of %d bytes: %.600v", len(err.Error()), err)
	}
}
