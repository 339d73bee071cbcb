package otlp

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzGRPCExport feeds arbitrary protobuf to the gRPC handler, the way the
// gRPC server hands it over once the message decodes. It must never panic,
// and must answer OK or an OTLP status, never Unknown.
func FuzzGRPCExport(f *testing.F) {
	f.Add(marshalProto(f, sampleRequest(3)))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := ptraceotlp.NewExportRequest()
		if req.UnmarshalProto(body) != nil {
			return // gRPC itself answers Internal for an undecodable message
		}
		rec := &recorder{}
		r, err := NewReceiver(ReceiverConfig{HTTPAddr: "-", GRPCAddr: "127.0.0.1:0", MaxInflightBytes: 1 << 20}, rec, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&grpcTraces{r: r}).Export(context.Background(), req)
		if err == nil {
			if rec.calls() != 1 {
				t.Fatal("answered OK without handing the export on")
			}
			return
		}
		if st, _ := status.FromError(err); st.Code() == codes.Unknown || st.Code() == codes.OK {
			t.Fatalf("answered %v", err)
		}
	})
}
