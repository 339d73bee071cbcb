package otlp

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The gRPC side takes the request as the bytes of the message, not decoded:
// the proxy forwards them as they came and reads what it needs where it
// lies (package wire), as it does over HTTP. So the TraceService is
// declared here, with a codec that hands a rawMessage its bytes.

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// traceServiceDesc is OTLP's TraceService (collector/trace/v1), with Export
// declared as a stream: on the wire a unary call is a stream of one message
// each way, and a stream handler runs before the message is read, so the
// proxy can bound how many messages are received at once and for how long
// (see grpcTraces.export).
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Export", Handler: exportHandler, ClientStreams: false, ServerStreams: false}},
	Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

func exportHandler(srv any, ss grpc.ServerStream) error {
	return srv.(*grpcTraces).export(ss)
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

// export receives one export and answers it. The message is received only
// once a reception slot is free (a few at once, each up to
// MaxRequestBytes; see receptions); it must arrive within ReadTimeout, or
// the call ends with DeadlineExceeded and what it held is freed. While
// others wait for a slot, its connection must also keep reading, or the
// call ends with Unavailable (retryable). Until it is received, a call
// buffers at most its flow control window.
func (g *grpcTraces) export(ss grpc.ServerStream) error {
	return g.r.serveCall(ss, func(ctx context.Context, data []byte) ([]byte, error) {
		return nil, g.handle(ctx, data)
	})
}

// serveCall receives a call's one message as export says and answers it
// with the response handle returns, in protobuf (nil: an empty response),
// or with its error, a gRPC status.
func (r *Receiver) serveCall(ss grpc.ServerStream, handle func(ctx context.Context, data []byte) ([]byte, error)) error {
	h := r.receptions.acquire(ss.Context(), r.cfg.Limits.ReadTimeout, r.grpcConn(ss.Context()))
	if h == nil {
		r.overloaded("grpc")
		return errReceptionsBusy.GRPCStatus().Err()
	}
	req, err := r.receive(ss, h)
	r.receptions.release(h)
	if err != nil {
		return err
	}
	// The export has been handled (forwarded or queued) when handle
	// returns: its buffer goes back to the pool.
	defer req.free()
	// At the shutdown deadline the receiver cancels its base context.
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	defer context.AfterFunc(r.base, cancel)()
	resp, err := handle(ctx, req.data)
	if err != nil {
		return err
	}
	return ss.SendMsg(&rawMessage{data: resp})
}

// grpcConn returns what the gRPC listener tells of the connection a call
// came on, found by its addresses; nil when it does not know it.
func (r *Receiver) grpcConn(ctx context.Context) lastReader {
	if r.grpcConns == nil {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return nil
	}
	a, ok := r.grpcConns.Activity(p.LocalAddr, p.Addr)
	if !ok {
		return nil
	}
	return a
}

// handle checks a received message and hands it on; the error is a gRPC
// status.
func (g *grpcTraces) handle(ctx context.Context, data []byte) error {
	r := g.r
	res := r.budget.Reserve()
	defer res.Release()
	if !res.Grow(int64(len(data))) {
		r.overloaded("grpc")
		return errOverloaded(r.cfg.MaxInflightBytes).GRPCStatus().Err()
	}
	e, err := newExport(data, nil)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "cannot decode the message as an OTLP traces export: %v", err)
	}
	e.Transport = "grpc"
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(ProjectHeader); len(v) > 0 {
			e.Project = v[0]
		}
	}
	if err := r.consume(ctx, e); err != nil {
		// Never a bare error: the client would see Unknown and not retry.
		return statusOf(err).Err()
	}
	return nil
}

// receive reads the call's one message, within ReadTimeout.
func (r *Receiver) receive(ss grpc.ServerStream, h *reception) (*rawMessage, error) {
	type result struct {
		m   *rawMessage
		err error
	}
	got := make(chan result, 1)
	go func() {
		m := new(rawMessage)
		err := ss.RecvMsg(m)
		if err != nil {
			m.free() // dec may fail after it took a buffer
		}
		got <- result{m, err}
	}()
	t := time.NewTimer(r.cfg.Limits.ReadTimeout)
	defer t.Stop()
	// Ending the call ends the reception (its context is cancelled); the
	// message, if it still came, is freed.
	abandon := func() {
		go func() {
			if res := <-got; res.err == nil {
				res.m.free()
			}
		}()
	}
	select {
	case res := <-got:
		return res.m, res.err
	case <-t.C:
		abandon()
		return nil, status.Errorf(codes.DeadlineExceeded, "the export was not received within %s", r.cfg.Limits.ReadTimeout)
	case <-h.abort:
		abandon()
		return nil, errStalledReception.GRPCStatus().Err()
	}
}

// The answers of a call that could not be received: retryable, with a
// delay, as OTLP exporters expect.
var (
	errReceptionsBusy = &Error{Code: codes.ResourceExhausted, RetryAfter: time.Second,
		Msg: "the proxy is receiving as many gRPC exports as it takes at once; retry later"}
	errStalledReception = &Error{Code: codes.Unavailable, RetryAfter: time.Second,
		Msg: "the export stopped coming (nothing was received for a while) while others waited; retry later"}
)
