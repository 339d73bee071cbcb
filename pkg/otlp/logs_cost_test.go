package otlp

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/protobuf/encoding/protowire"
)

// field encodes a length-delimited field.
func field(num protowire.Number, content []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), content)
}

// inRecord puts the fields of one log record in an export.
func inRecord(record []byte) []byte {
	return field(1, field(2, field(2, record)))
}

// decodedBytes returns what pdata allocates to decode body (all of it,
// garbage included: slices regrown on the way).
func decodedBytes(t *testing.T, enc string, body []byte) int64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	req := plogotlp.NewExportRequest()
	var err error
	if enc == contentTypeJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("pdata cannot decode the %s: %v", enc, err)
	}
	runtime.KeepAlive(req)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// TestLogsCostCoversDecoding checks the charge against what pdata really
// allocates, for the shapes that allocate most per byte: each is 20,000
// small elements where pdata allocates one message or value each.
func TestLogsCostCoversDecoding(t *testing.T) {
	const n = 20_000
	rep := func(b []byte) []byte { return bytes.Repeat(b, n) }
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	anyValue := func(inner []byte) []byte { return field(5, inner) } // a record's body
	proto := []struct {
		name string
		body []byte
	}{
		{"empty resource_logs", rep(field(1, nil))},
		{"empty scope_logs", field(1, rep(field(2, nil)))},
		{"empty log records", field(1, field(2, rep(field(2, nil))))},
		{"old instrumentation_library_logs", field(1, rep(field(1000, nil)))},
		{"empty attributes", inRecord(rep(field(6, nil)))},
		{"attributes with empty values", inRecord(rep(field(6, field(2, nil))))},
		{"attributes with int values", inRecord(rep(field(6, field(2, []byte{0x18, 0x01}))))},
		{"resource attributes", field(1, field(1, rep(field(1, nil))))},
		{"scope attributes", field(1, field(2, field(1, rep(field(3, nil)))))},
		{"entity refs", field(1, field(1, rep(field(3, nil))))},
		{"entity ref keys", field(1, field(1, field(3, rep(str(3, "")))))},
		{"array of empty values", inRecord(anyValue(field(5, rep(field(1, nil)))))},
		{"array of strings", inRecord(anyValue(field(5, rep(field(1, str(1, "x"))))))},
		{"kvlist of empty pairs", inRecord(anyValue(field(6, rep(field(1, nil)))))},
		{"a oneof given again and again", inRecord(anyValue(rep([]byte{0x18, 0x01})))},
		{"strings given again and again", inRecord(rep(str(3, "INFO")))},
		{"event names", inRecord(rep(str(12, "gen_ai.evaluation.result")))},
		{"one large string", inRecord(str(3, strings.Repeat("x", n)))},
	}
	for _, tc := range proto {
		t.Run("protobuf/"+tc.name, func(t *testing.T) {
			cost, err := logsProtoCost(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodedBytes(t, contentTypeProto, tc.body); got > cost {
				t.Errorf("pdata allocated %d bytes for a %d-byte export; the charge was %d", got, len(tc.body), cost)
			}
		})
	}
	list := func(prefix, item, suffix string) []byte {
		return []byte(prefix + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + suffix)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty resourceLogs", list(`{"resourceLogs":[`, `{}`, `]}`)},
		{"empty log records", list(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[`, `{}`, `]}]}]}`)},
		{"empty attributes", list(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[`, `{}`, `]}]}]}]}`)},
		{"kvlist", list(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"kvlistValue":{"values":[`, `{}`, `]}}}]}]}]}`)},
		{"array of strings", list(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{"values":[`, `{"stringValue":""}`, `]}}}]}]}]}`)},
		{"entity ref keys", list(`{"resourceLogs":[{"resource":{"entityRefs":[{"idKeys":[`, `""`, `]}]}}]}`)},
		{"escaped text", []byte(`{"resourceLogs":[{"schemaUrl":"` + strings.Repeat(`\u00e9`, n) + `"}]}`)},
	} {
		t.Run("JSON/"+tc.name, func(t *testing.T) {
			cost := jsonCost(t, tc.body)
			if got := decodedBytes(t, contentTypeJSON, tc.body); got > cost {
				t.Errorf("pdata allocated %d bytes for a %d-byte export; the charge was %d", got, len(tc.body), cost)
			}
		})
	}
}

// TestLogsCostOfEvaluations keeps the charge of what apps send close to
// what it costs: a batch processor's 512 evaluation events.
func TestLogsCostOfEvaluations(t *testing.T) {
	pb := logsProto(t, sampleLogs(512))
	js := logsJSON(t, sampleLogs(512))
	cost, err := logsProtoCost(pb)
	if err != nil {
		t.Fatal(err)
	}
	// JSON's objects cannot be told apart without its schema: each is
	// charged as the costliest message.
	for _, c := range []struct {
		enc    string
		body   []byte
		charge int64
		most   int64 // times what it takes
	}{{contentTypeProto, pb, cost, 4}, {contentTypeJSON, js, jsonCost(t, js), 6}} {
		got := decodedBytes(t, c.enc, c.body)
		t.Logf("%s: %d bytes, %d decoded, charged %d", c.enc, len(c.body), got, c.charge)
		if c.charge < got || c.charge > c.most*got {
			t.Errorf("%s: 512 evaluation events take %d bytes decoded and are charged %d; want between 1 and %d times that", c.enc, got, c.charge, c.most)
		}
	}
}
