package otlp

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The gRPC side takes the request as the bytes of the message, not decoded:
// the proxy forwards them as they came and reads what it needs where it
// lies (package wire), as it does over HTTP. So the TraceService is
// declared here, with a codec that hands a rawMessage its bytes.

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// traceServiceDesc is OTLP's TraceService (collector/trace/v1), with Export
// taking and returning a rawMessage.
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*traceServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: exportHandler}},
	Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

type traceServer interface {
	Export(ctx context.Context, req []byte) (*rawMessage, error)
}

func exportHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	var req rawMessage
	// The export has been handled (forwarded or queued) when Export
	// returns: its buffer goes back to the pool, as it does when dec
	// fails after it took one.
	defer req.free()
	if err := dec(&req); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(traceServer).Export(ctx, req.data)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}
	return interceptor(ctx, &req, info, func(ctx context.Context, req any) (any, error) {
		return srv.(traceServer).Export(ctx, req.(*rawMessage).data)
	})
}

// rawMessage is a protobuf message as bytes. The empty one is an empty
// ExportTraceServiceResponse: all fields unset, as the proxy answers.
type rawMessage struct {
	data []byte
	buf  mem.Buffer // holds data, from requestBuffers; nil if not pooled
}

func (m *rawMessage) free() {
	if m.buf != nil {
		m.buf.Free()
		m.buf, m.data = nil, nil
	}
}

// requestBuffers are what the received messages are copied into, out of
// gRPC's own buffers, for as long as an export is handled. Tiers for the
// usual sizes of exports; gRPC's default pool would hand a 128 KB export a
// 1 MB buffer.
var requestBuffers = mem.NewTieredBufferPool(16<<10, 64<<10, 256<<10, 1<<20, 4<<20)

// rawCodec is gRPC's "proto" codec, except that a *rawMessage is its bytes,
// as they came and as they go.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Name() string { return "proto" }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.data)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*rawMessage); ok {
		// The message in one buffer that outlives this call, for as
		// long as the export waits on the upstream: a reference to
		// gRPC's own when it holds the message in one, else a copy
		// into ours.
		m.free()
		m.buf = data.MaterializeToBuffer(requestBuffers)
		m.data = m.buf.ReadOnlyData()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// grpcTraces implements the OTLP TraceService.
type grpcTraces struct {
	r *Receiver
}

func (g *grpcTraces) Export(ctx context.Context, req []byte) (*rawMessage, error) {
	size := int64(len(req))
	if !g.r.inflight.acquire(size) {
		if g.r.metrics != nil {
			g.r.metrics.overloaded.WithLabelValues("grpc").Inc()
		}
		return nil, errOverloaded(g.r.cfg.MaxInflightBytes).GRPCStatus().Err()
	}
	defer g.r.inflight.release(size)

	e, err := newExport(req, nil)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot decode the message as an OTLP traces export: %v", err)
	}
	e.Transport = "grpc"
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(ProjectHeader); len(v) > 0 {
			e.Project = v[0]
		}
	}
	if err := g.r.consume(ctx, e); err != nil {
		// Never a bare error: the client would see Unknown and not retry.
		return nil, statusOf(err).Err()
	}
	return &rawMessage{}, nil
}
