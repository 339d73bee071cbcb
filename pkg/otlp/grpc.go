package otlp

import (
	"context"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/metadata"
)

var sizer ptrace.ProtoMarshaler

// grpcTraces implements the OTLP TraceService.
type grpcTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	r *Receiver
}

func (g *grpcTraces) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	e := &Export{Request: req, Transport: "grpc"}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(ProjectHeader); len(v) > 0 {
			e.Project = v[0]
		}
	}
	// gRPC has decoded the message already; its size is what it holds on to
	// while the export waits on the upstream.
	size := int64(sizer.TracesSize(req.Traces()))
	if !g.r.inflight.acquire(size) {
		if g.r.metrics != nil {
			g.r.metrics.overloaded.WithLabelValues("grpc").Inc()
		}
		return ptraceotlp.NewExportResponse(), errOverloaded(g.r.cfg.MaxInflightBytes).GRPCStatus().Err()
	}
	defer g.r.inflight.release(size)
	if err := g.r.consume(ctx, e); err != nil {
		// Never a bare error: the client would see Unknown and not retry.
		return ptraceotlp.NewExportResponse(), statusOf(err).Err()
	}
	return ptraceotlp.NewExportResponse(), nil
}
