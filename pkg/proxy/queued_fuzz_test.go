package proxy

import (
	"bytes"
	"os"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// FuzzRecordHeader gives the record decoder any bytes, as a queue written
// by another version could hold (the queue's checksums catch damage, not
// that): it must not panic, a version 2 record it takes must encode back to
// the same bytes, and a version 1 record's export must be well formed.
func FuzzRecordHeader(f *testing.F) {
	for _, file := range []string{"testdata/record-v1.bin", "testdata/record-v2.bin"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{recordV2, flagGzip, 1, 0, 0, 0, 5, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1f, 0x8b})
	f.Add([]byte{recordV1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := decodeRecordHeader(b)
		if err != nil {
			return
		}
		if b[0] == recordV2 {
			if again := append(h.encode(), body...); !bytes.Equal(again, b) {
				t.Fatalf("%+v encodes as %x, decoded from %x", h, again, b)
			}
			if !h.gzip && len(body) != h.plainLen {
				t.Fatalf("a protobuf export of %d bytes taken for %d", len(body), h.plainLen)
			}
			return
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil || req.Traces().SpanCount() != h.spans {
			t.Fatalf("version 1 record taken with %d spans; pdata: %v", h.spans, err)
		}
	})
}
