package otlp

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
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
	r.cfg.MaxInflightBytes = int64(len(js)) * jsonExpansion / 2
	w := newRecorderWriter()
	req, _ := http.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(js))
	req.Header.Set("Content-Type", contentTypeJSON)
	r.HTTPHandler().ServeHTTP(w, req)
	if w.code != http.StatusRequestEntityTooLarge || !strings.Contains(w.body.String(), "send protobuf") {
		t.Fatalf("a JSON body needing twice the budget to decode: %d %s; want 413 saying to send protobuf", w.code, w.body.String())
	}
}
