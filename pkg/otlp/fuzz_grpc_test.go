package otlp

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzGRPCExport feeds arbitrary bytes to the gRPC handler, as the gRPC
// server hands a message over. It must never panic; it must answer OK
// (having handed the export on) exactly when pdata can decode the message,
// and InvalidArgument otherwise, never Unknown.
func FuzzGRPCExport(f *testing.F) {
	f.Add(marshalProto(f, sampleRequest(3)))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, body []byte) {
		pdataErr := ptraceotlp.NewExportRequest().UnmarshalProto(body)
		rec := &recorder{}
		r, err := NewReceiver(ReceiverConfig{HTTPAddr: "-", GRPCAddr: "127.0.0.1:0", MaxInflightBytes: 1 << 20}, rec, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = (&grpcTraces{r: r}).handle(context.Background(), body)
		if err == nil {
			if rec.calls() != 1 {
				t.Fatal("answered OK without handing the export on")
			}
			if pdataErr != nil {
				t.Fatalf("took a message pdata refuses (%v)", pdataErr)
			}
			return
		}
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
			t.Fatalf("answered %v; want InvalidArgument", err)
		}
		if rec.calls() != 0 {
			t.Fatal("handed on an export it refused")
		}
	})
}
