package otlp

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// logsServiceDesc is OTLP's LogsService (collector/logs/v1), declared as
// traceServiceDesc is, so that a logs export is received within the same
// reception slots and limits as a traces export.
var logsServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.logs.v1.LogsService",
	HandlerType: (*any)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Export", Handler: logsExportHandler, ClientStreams: false, ServerStreams: false}},
	Metadata:    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
}

func logsExportHandler(srv any, ss grpc.ServerStream) error {
	return srv.(*grpcLogs).export(ss)
}

// grpcLogs implements the OTLP LogsService.
type grpcLogs struct {
	r *Receiver
}

// export authorizes the call from its metadata, before its message is
// received, then receives and handles it as grpcTraces.export does.
func (g *grpcLogs) export(ss grpc.ServerStream) error {
	var auth string
	if md, ok := metadata.FromIncomingContext(ss.Context()); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	if err := g.r.logs.Authorize(auth); err != nil {
		return statusOf(err).Err()
	}
	return g.r.serveCall(ss, g.handle)
}

// handle decodes a received message within its budget and hands it on;
// the error is a gRPC status.
func (g *grpcLogs) handle(ctx context.Context, m message) ([]byte, error) {
	r := g.r
	ld, _, err := r.decodeLogs(contentTypeProto, m.body, m.res, "grpc")
	if err != nil {
		return nil, statusOf(err).Err()
	}
	result, err := r.consumeLogs(ctx, Logs{Logs: ld, Transport: "grpc"})
	if err != nil {
		// Never a bare error: the client would see Unknown and not retry.
		return nil, statusOf(err).Err()
	}
	b, err := logsResponse(result, contentTypeProto)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return b, nil
}
