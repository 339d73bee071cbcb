package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzGRPCExport feeds arbitrary bytes to the gRPC side as the gRPC server
// hands a message over (compressed, when it starts as gzip does: see
// keepGzip). It must never panic; it must answer OK (having handed the
// export on, with the gzip bytes as they came) exactly when pdata can
// decode the message, decompressed by the standard library's gzip, and
// InvalidArgument otherwise (ResourceExhausted for gzip that decompresses
// past the budget), never Unknown.
func FuzzGRPCExport(f *testing.F) {
	pb := marshalProto(f, sampleRequest(3))
	f.Add(pb)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	gz := compress(f, "gzip", pb)
	f.Add(gz)
	f.Add(append(bytes.Clone(gz), compress(f, "gzip", pb)...)) // two members: one export of both
	f.Add(gz[:len(gz)-3])
	f.Add(compress(f, "gzip", []byte{0x0a, 0xff}))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, body []byte) {
		plain, gzipped := body, []byte(nil)
		var gzErr error
		if isGzip(body) {
			gzipped = body
			var zr *gzip.Reader
			if zr, gzErr = gzip.NewReader(bytes.NewReader(body)); gzErr == nil {
				plain, gzErr = io.ReadAll(io.LimitReader(zr, 1<<20+1))
			}
		}
		pdataErr := ptraceotlp.NewExportRequest().UnmarshalProto(plain)
		rec := &recorder{}
		r, err := NewReceiver(ReceiverConfig{HTTPAddr: "-", GRPCAddr: "127.0.0.1:0", MaxInflightBytes: 1 << 20}, rec, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, bufs, err := r.open(body)
		if err == nil {
			err = (&grpcTraces{r: r}).handle(context.Background(), m)
		}
		bufs.release()
		m.res.Release()
		if err == nil {
			if rec.calls() != 1 {
				t.Fatal("answered OK without handing the export on")
			}
			if gzErr != nil || pdataErr != nil {
				t.Fatalf("took a message that does not decompress (%v) or pdata refuses (%v)", gzErr, pdataErr)
			}
			if e := rec.last(t); !bytes.Equal(e.Body, plain) || !bytes.Equal(e.Gzipped, gzipped) {
				t.Fatalf("handed on %d bytes (%d gzipped), want %d (%d)", len(e.Body), len(e.Gzipped), len(plain), len(gzipped))
			}
			return
		}
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument && (gzipped == nil || st.Code() != codes.ResourceExhausted) {
			t.Fatalf("answered %v; want InvalidArgument", err)
		}
		if rec.calls() != 0 {
			t.Fatal("handed on an export it refused")
		}
		if gzErr == nil && pdataErr == nil && st.Code() == codes.InvalidArgument {
			t.Fatalf("refused a message that decompresses and pdata takes: %v", err)
		}
	})
}
