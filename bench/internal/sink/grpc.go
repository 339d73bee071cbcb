package sink

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// The gRPC side: TraceService/Export, its message taken as bytes and
// counted as the HTTP side counts a body, and gzip decompressed with the
// same library as the HTTP side (github.com/klauspost/compress), not
// grpc-go's own (the standard library's, about twice as slow): the floor
// is what the fastest receiver would pay.

// GRPCServerOptions are the options a gRPC server must be built with for
// s.RegisterGRPC: the codec that counts messages as bytes, and the gzip
// decompressor (for this server only: nothing is registered globally).
func (s *Sink) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{s}),
		//lint:ignore SA1019 the server-scoped way to choose a decompressor
		grpc.RPCDecompressor(gunzipper{}),
		grpc.MaxRecvMsgSize(maxBody),
	}
}

// RegisterGRPC registers the sink's TraceService on srv, which must be
// built with s.GRPCServerOptions.
func (s *Sink) RegisterGRPC(srv *grpc.Server) {
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: exportHandler}},
		Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
	}, s)
}

// message is a received export, counted as it was unmarshalled (gRPC
// reuses its buffer afterwards), or why it could not be; an empty one is
// an empty ExportTraceServiceResponse.
type message struct {
	err error
}

func exportHandler(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Sink)
	var m message
	if err := dec(&m); err != nil {
		s.bad.Add(1)
		return nil, err
	}
	if m.err != nil {
		s.bad.Add(1)
		return nil, status.Errorf(codes.InvalidArgument, "cannot read the export: %v", m.err)
	}
	return &message{}, nil // full success
}

// rawCodec counts a message where it lies, and marshals an empty one.
type rawCodec struct{ s *Sink }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if _, ok := v.(*message); !ok {
		return nil, fmt.Errorf("sink: cannot marshal %T", v)
	}
	return nil, nil
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*message)
	if !ok {
		return fmt.Errorf("sink: cannot unmarshal into %T", v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		b = data.Materialize()
	}
	// The size on the wire (compressed) is not told to a codec: the
	// message's stands in.
	m.err = c.s.count(b, int64(len(b)))
	return nil
}

var _ encoding.CodecV2 = rawCodec{}

// gunzipper decompresses gzip messages with klauspost/compress.
type gunzipper struct{}

func (gunzipper) Type() string { return "gzip" }

func (gunzipper) Do(r io.Reader) ([]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(zr, maxBody+1)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
