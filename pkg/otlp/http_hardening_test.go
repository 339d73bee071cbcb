package otlp

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
)

// zstd bodies that stall hold no decoder: a well-behaved zstd export is
// taken beside more stalled ones than there are decoders.
func TestStalledZstdBodiesHoldNoDecoder(t *testing.T) {
	rec := &recorder{}
	r := startReceiver(t, ReceiverConfig{Limits: listener.Limits{ReadTimeout: 10 * time.Second}}, rec, nil)
	for range 2 * zstdDecoderCount {
		c, err := net.Dial("tcp", r.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Encoding: zstd\r\nContent-Length: 100000\r\n\r\n", TracesPath, contentTypeProto)
	}
	time.Sleep(100 * time.Millisecond)
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.HTTPAddr().String()+TracesPath, bytes.NewReader(compress(t, "zstd", marshalProto(t, sampleRequest(5)))))
	req.Header.Set("Content-Type", contentTypeProto)
	req.Header.Set("Content-Encoding", "zstd")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rec.calls() != 1 {
		t.Fatalf("a zstd export beside %d stalled zstd bodies: %d, want 200", 2*zstdDecoderCount, resp.StatusCode)
	}
}

// An OTLP/JSON body is charged for what decoding it may take; one that
// could never fit the budget is refused for what it is.
func TestJSONChargedForDecoding(t *testing.T) {
	js := marshalJSON(t, sampleRequest(200))
	r := newHandler(t, 20<<20, &recorder{})
	r.cfg.MaxInflightBytes = jsonCost(t, js) / 2
	w := newRecorderWriter()
	req, _ := http.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(js))
	req.Header.Set("Content-Type", contentTypeJSON)
	r.HTTPHandler().ServeHTTP(w, req)
	if w.code != http.StatusRequestEntityTooLarge || !strings.Contains(w.body.String(), "send protobuf") {
		t.Fatalf("a JSON body needing twice the budget to decode: %d %s; want 413 saying to send protobuf", w.code, w.body.String())
	}
}

// TestTracesJSONCostCoversDecoding checks the charge of an OTLP/JSON
// traces body against what decoding it really allocates (pdata's decoder
// and the protobuf the export is kept as), for the shapes that allocate
// most per byte: 20,000 empty objects of each kind.
func TestTracesJSONCostCoversDecoding(t *testing.T) {
	const n = 20_000
	list := func(prefix, item, suffix string) []byte {
		return []byte(prefix + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + suffix)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty resourceSpans", list(`{"resourceSpans":[`, `{}`, `]}`)},
		{"empty scopeSpans", list(`{"resourceSpans":[{"scopeSpans":[`, `{}`, `]}]}`)},
		{"empty spans", list(`{"resourceSpans":[{"scopeSpans":[{"spans":[`, `{}`, `]}]}]}`)},
		{"empty events", list(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"events":[`, `{}`, `]}]}]}]}`)},
		{"empty links", list(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"links":[`, `{}`, `]}]}]}]}`)},
		{"empty attributes", list(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[`, `{}`, `]}]}]}]}`)},
		{"array of empty values", list(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"arrayValue":{"values":[`, `{}`, `]}}}]}]}]}]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			e, err := decodeJSON(tc.body)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			runtime.KeepAlive(e)
			got := int64(after.TotalAlloc - before.TotalAlloc)
			if cost := jsonCost(t, tc.body); got > cost {
				t.Errorf("decoding allocated %d bytes for a %d-byte body; the charge was %d", got, len(tc.body), cost)
			}
		})
	}
}

// scanJSON counts the whole body, past what it refuses, and nothing
// within strings; it refuses what pdata would take without complaint.
func TestScanJSON(t *testing.T) {
	for _, tc := range []struct {
		name              string
		body              string
		objects, elements int64
		err               string
	}{
		{name: "an export", body: `{"resourceSpans":[{},{}]}`, objects: 3, elements: 2},
		{name: "brackets and commas in strings", body: `{"a":"{[,\"{"}`, objects: 1},
		{name: "a value, then another", body: `{} {"a":[1,2]}`, objects: 2, elements: 2, err: "found more after the export's JSON object, at byte 3"},
		{name: "white space after the value", body: "{}\r\n\t ", objects: 1},
		{name: "too deep", body: strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1), elements: maxJSONDepth + 1, err: fmt.Sprintf("nesting deeper than %d levels at byte %d", maxJSONDepth, maxJSONDepth)},
		{name: "not UTF-8", body: "{\"a\":\"\xff\",\"b\":[]}", objects: 1, elements: 2, err: "invalid UTF-8 at byte 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cost, err := scanJSON([]byte(tc.body))
			if want := 2*copiedBytes([]byte(tc.body)) + tc.objects*decodedMessageBytes + tc.elements*decodedElementBytes; cost != want {
				t.Errorf("cost %d; want %d", cost, want)
			}
			if (err == nil) != (tc.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
				t.Errorf("error %v; want %q", err, tc.err)
			}
		})
	}
}
