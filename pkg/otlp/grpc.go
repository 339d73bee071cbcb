package otlp

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
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

// rawMessage is a protobuf message as bytes, as received: gzip-compressed
// when the client compressed it (see keepGzip). The empty one is an empty
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
// as they came (compressed, if they were: see keepGzip) and as they go.
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

// keepGzip is the server's decompressor for gzip: it hands the codec the
// message's bytes as they came, still compressed, and serveCall
// decompresses them itself. So a gzip export is forwarded as the client
// compressed it, as over HTTP, instead of decompressed by grpc-go and
// compressed again for Phoenix (the largest cost of a gzip export over
// gRPC; see docs/benchmarks.md). grpc-go takes a server's own
// decompressor (grpc.RPCDecompressor, "supported throughout 1.x") before
// the registered ones and only for the encoding it names, and the responses
// are still compressed by the registered gzip.
//
// A valid protobuf message never starts as gzip does (0x1f is field 3 with
// the wire type 7, which does not exist), so serveCall tells the two apart
// by their first bytes. Do checks them, so a message flagged compressed
// that is not gzip is refused as grpc-go's gzip refuses it.
type keepGzip struct{}

func (keepGzip) Type() string { return "gzip" }

func (keepGzip) Do(r io.Reader) ([]byte, error) {
	// grpc-go bounds what it hands over at the message size limit, and
	// its reader knows how much is left: read it into a buffer of that
	// size, not one io.ReadAll grows (which would hold up to twice the
	// message while it copies).
	var b []byte
	var err error
	if sized, ok := r.(interface{ Remaining() int }); ok {
		b = make([]byte, sized.Remaining())
		_, err = io.ReadFull(r, b)
	} else {
		b, err = io.ReadAll(r)
	}
	if err != nil {
		return nil, err
	}
	if !isGzip(b) {
		return nil, errors.New("the message is flagged compressed with gzip but is not gzip")
	}
	return b, nil
}

// isGzip reports whether b starts as a gzip member does (RFC 1952).
func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

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
	return g.r.serveCall(ss, func(ctx context.Context, m message) ([]byte, error) {
		return nil, g.handle(ctx, m)
	})
}

// message is a received message, as serveCall hands it on.
type message struct {
	// body is the message in protobuf, decompressed; gzipped is the same as
	// the client compressed it, when it did.
	body, gzipped []byte
	// res holds the memory both take, for as long as the handler runs.
	res *budget.Reservation
}

// serveCall receives a call's one message as export says, decompresses it
// within the budget, and answers it with the response handle returns, in
// protobuf (nil: an empty response), or with its error, a gRPC status.
func (r *Receiver) serveCall(ss grpc.ServerStream, handle func(ctx context.Context, m message) ([]byte, error)) error {
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
	// returns: its buffers go back to the pools.
	defer req.free()
	m, bufs, err := r.open(req.data)
	defer bufs.release() // before m.res is released
	defer m.res.Release()
	if err != nil {
		return err
	}
	// At the shutdown deadline the receiver cancels its base context.
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	defer context.AfterFunc(r.base, cancel)()
	resp, err := handle(ctx, m)
	if err != nil {
		return err
	}
	return ss.SendMsg(&rawMessage{data: resp})
}

// open charges the budget for a received message and, if it is gzip,
// decompresses it (into bufs, within MaxRequestBytes); the error is a gRPC
// status. m.res is always set, to be released after bufs.
func (r *Receiver) open(data []byte) (m message, bufs *bodyBuffers, err error) {
	m.res, bufs = r.budget.Reserve(), new(bodyBuffers)
	if !m.res.Grow(int64(len(data))) {
		r.overloaded("grpc")
		return m, bufs, errOverloaded(r.cfg.MaxInflightBytes).GRPCStatus().Err()
	}
	if !isGzip(data) {
		m.body = data
		return m, bufs, nil
	}
	m.gzipped = data
	m.body, err = gunzip(data, r.cfg.MaxRequestBytes, m.res, bufs)
	switch {
	case err == nil:
		return m, bufs, nil
	case errors.Is(err, errBudgetSpent):
		r.overloaded("grpc")
		return m, bufs, errOverloaded(r.cfg.MaxInflightBytes).GRPCStatus().Err()
	case errors.Is(err, errTooLarge):
		return m, bufs, status.Errorf(codes.ResourceExhausted, "the message decompressed is over the limit of %d bytes", r.cfg.MaxRequestBytes)
	}
	return m, bufs, status.Errorf(codes.InvalidArgument, "cannot decompress the gzip message: %v", err)
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
func (g *grpcTraces) handle(ctx context.Context, m message) error {
	r := g.r
	e, err := newExport(m.body, m.gzipped)
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
