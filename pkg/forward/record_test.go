package forward

import "testing"

func TestRecordRoundTrip(t *testing.T) {
	e := namedExport("llm", "chatbot")
	got, err := decodeRecord(encodeRecord("chatbot", e.Body))
	if err != nil || got.Project != "chatbot" || spanName(got) != "llm" || got.Spans != 1 {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	// The last is a well-framed record whose export is not OTLP.
	for _, bad := range [][]byte{nil, {9, 0, 0}, {recordVersion, 5, 0, 'a'}, {recordVersion, 0, 0, 0x0a, 0x05}} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%v) accepted a malformed record", bad)
		}
	}
}
