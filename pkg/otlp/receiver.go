package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP/gRPC exporters may compress with gzip.
	"google.golang.org/grpc/keepalive"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
)

// Export is one received export request.
type Export struct {
	// Body is the export in OTLP protobuf (an ExportTraceServiceRequest),
	// decompressed: the bytes the client sent, or for OTLP/JSON their
	// encoding in protobuf. Forwarding them as they are keeps even fields
	// this proxy does not know. Package wire reads them.
	Body []byte
	// Gzipped is Body gzip-compressed as the client sent it, when it did;
	// nil otherwise. It may be several gzip members (RFC 1952), as a
	// client may send, which decompress one after the other to Body.
	// An exporter that compresses with gzip sends it as it is instead of
	// compressing Body again.
	Gzipped []byte
	// Spans is the number of spans in Body.
	Spans int
	// Project is the x-project-name header (metadata on gRPC), "" if none.
	Project string
	// Transport is "grpc" or "http"; "queue" for a batch read back from
	// the disk queue.
	Transport string
}

// NewExport returns req as an Export, encoded in protobuf. It fails when
// the encoding is not a valid export (values nested deeper than protobuf
// decoders take, see wire.MaxDepth), as pdata would not decode it back.
func NewExport(req ptraceotlp.ExportRequest) (*Export, error) {
	body, err := req.MarshalProto()
	if err != nil {
		return nil, err
	}
	return newExport(body, nil)
}

// newExport checks an export in protobuf where it lies (package wire);
// gzipped is the same export as the client compressed it, if it did. An
// export from an exporter older than OTLP 0.19 (2022), with its spans in
// the removed instrumentation_library_spans, is re-encoded through pdata,
// which moves them to scope_spans as the Collector does: Phoenix would
// ignore them, and the proxy would index spans Phoenix never stored.
func newExport(body, gzipped []byte) (*Export, error) {
	n, err := wire.Scan(body, nil)
	if err != nil {
		return nil, err
	}
	if !wire.HasInstrumentationLibrarySpans(body) {
		return &Export{Body: body, Gzipped: gzipped, Spans: n}, nil
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		return nil, err
	}
	if body, err = req.MarshalProto(); err != nil {
		return nil, err
	}
	return &Export{Body: body, Spans: req.Traces().SpanCount()}, nil
}

// Consumer takes received exports. An error it returns is what the client
// is told: an *Error says which code; any other error is reported as a
// retryable Unavailable. The export's slices are valid until ConsumeTraces
// returns: the receiver then reuses their memory.
type Consumer interface {
	ConsumeTraces(ctx context.Context, e *Export) error
}

// ProjectHeader is the header (gRPC metadata key) Phoenix routes spans by.
const ProjectHeader = "x-project-name"

// Defaults for ReceiverConfig.
const (
	DefaultGRPCAddr        = "localhost:4317"
	DefaultHTTPAddr        = "localhost:4318"
	DefaultMaxRequestBytes = 20 << 20
)

// ReceiverConfig says where the receiver listens.
type ReceiverConfig struct {
	// GRPCAddr is the OTLP/gRPC listen address; "" means DefaultGRPCAddr,
	// "-" disables gRPC.
	GRPCAddr string
	// HTTPAddr is the OTLP/HTTP listen address; "" means DefaultHTTPAddr,
	// "-" disables HTTP.
	HTTPAddr string
	// MaxRequestBytes caps a request, both as received and decompressed;
	// zero means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxInflightBytes caps the decompressed bytes of the exports being
	// worked on at once; past it, exports are refused with 429 /
	// ResourceExhausted and a retry delay. Zero means
	// DefaultMaxInflightBytes.
	MaxInflightBytes int64
	// Limits bound what one client can hold of each listener: connections,
	// and the time to send a request or to stay idle.
	Limits listener.Limits
	// TLS, when not nil, serves both listeners over TLS (its certificate
	// read again when its files change; a TLS handshake counts under
	// Limits.ReadHeaderTimeout); nil serves plain text.
	TLS *tlsconfig.Server
	// MaxConcurrentStreams caps the gRPC calls in progress on one
	// connection; zero means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
}

// DefaultMaxConcurrentStreams caps the gRPC calls in progress on one
// connection. An OTLP exporter has a few exports in flight at most (the
// Collector's sends ten at once by default); each call may buffer a flow
// control window of 64 KiB before the proxy reads it.
const DefaultMaxConcurrentStreams = 16

// withDefaults returns c with its zero fields set to their defaults.
func (c ReceiverConfig) withDefaults() ReceiverConfig {
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	c.Limits = c.Limits.WithDefaults()
	return c
}

// Validate reports a configuration that cannot work.
func (c ReceiverConfig) Validate() error {
	if c.MaxInflightBytes < 0 {
		return fmt.Errorf("otlp: MaxInflightBytes must be positive, got %d", c.MaxInflightBytes)
	}
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("otlp: MaxRequestBytes must be positive, got %d", c.MaxRequestBytes)
	}
	if c.GRPCAddr == "-" && c.HTTPAddr == "-" {
		return errors.New("otlp: both gRPC and HTTP are disabled; enable at least one")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	return nil
}

// Receiver serves OTLP/gRPC TraceService/Export and OTLP/HTTP POST /v1/traces;
// with WithLogs, LogsService/Export and POST /v1/logs too.
type Receiver struct {
	cfg      ReceiverConfig
	consumer Consumer
	logs     LogsConsumer // nil: logs are not served (see WithLogs)
	metrics  *Metrics
	log      *slog.Logger
	budget   *budget.Budget
	// receptions caps the gRPC messages being received at once; each may
	// hold up to MaxRequestBytes.
	receptions *receptions
	// base is the context of every request; cancelled when Shutdown runs
	// out of time, so that handlers still waiting answer "unavailable"
	// before their connection is closed.
	base       context.Context
	cancelBase context.CancelFunc

	grpcSrv *grpc.Server
	httpSrv *http.Server
	grpcLn  net.Listener
	httpLn  net.Listener
	// grpcConns tells when each gRPC connection last read bytes, so that
	// receptions evicts calls that make no progress; nil if the listener
	// cannot tell.
	grpcConns listener.Tracker
	wg        sync.WaitGroup
}

// NewReceiver returns a receiver that hands exports to consumer. It does no
// I/O; Start binds the listeners. metrics and log may be nil.
func NewReceiver(cfg ReceiverConfig, consumer Consumer, metrics *Metrics, log *slog.Logger, opts ...ReceiverOption) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if consumer == nil {
		return nil, errors.New("otlp: nil consumer")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{cfg: cfg, consumer: consumer, metrics: metrics, log: log,
		budget:     budget.New(cfg.MaxInflightBytes, metrics.setInflight),
		receptions: newReceptions(GRPCReceivers(cfg.MaxRequestBytes, cfg.MaxInflightBytes), grpcWaiting, minReceptionHold)}
	r.base, r.cancelBase = context.WithCancel(context.Background())
	for _, opt := range opts {
		opt(r)
	}
	return r, nil
}

// minReceptionHold is how long a gRPC call whose connection reads nothing
// keeps its reception slot before another that waits may take it: a
// client that sends pauses for far less between packets, even on a slow
// link.
const minReceptionHold = 500 * time.Millisecond

// grpcWaiting is how many gRPC calls may wait for a reception slot: each
// costs a goroutine and at most its 64 KiB flow-control window, and enough
// of them keep a place for a well-behaved exporter while other clients'
// calls stall in line before it.
const grpcWaiting = 32

// GRPCReceivers is how many gRPC messages may be received at once with
// these limits. grpc-go reads a whole message before the proxy sees it, so
// the budget cannot be charged as it arrives: instead, as many messages as
// the budget holds at their largest, each with the copy taken out of
// grpc-go's buffers, may be in reception; at least two. (A gzip message is
// decompressed after it is received, charged to the budget.)
func GRPCReceivers(maxRequestBytes, maxInflightBytes int64) int {
	return int(max(2, maxInflightBytes/(2*maxRequestBytes)))
}

// Start binds the listeners, so that a port in use is an error here, then
// serves in the background until Shutdown.
func (r *Receiver) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Shutdown(ctx))
		}
	}()
	lim := r.cfg.Limits
	if r.cfg.GRPCAddr != "-" {
		if r.grpcLn, err = listener.Listen(ctx, r.cfg.GRPCAddr, lim.MaxConnections, r.refusedConn("grpc")); err != nil {
			return fmt.Errorf("otlp: gRPC listener: %w", err)
		}
		r.grpcConns, _ = r.grpcLn.(listener.Tracker)
		r.grpcSrv = grpc.NewServer(
			grpc.Creds(tlsconfig.GRPCCredentials(r.cfg.TLS)),
			grpc.MaxRecvMsgSize(int(r.cfg.MaxRequestBytes)),
			grpc.ForceServerCodecV2(rawCodec{encoding.GetCodecV2("proto")}),
			//lint:ignore SA1019 the way to keep gzip bytes as they came, for this server only (see keepGzip)
			grpc.RPCDecompressor(keepGzip{}),
			grpc.MaxConcurrentStreams(r.cfg.MaxConcurrentStreams),
			// Fixed windows turn off grpc-go's bandwidth estimation, which
			// would let each call buffer up to 16 MiB the proxy has not
			// asked for; 64 KiB is HTTP/2's default.
			grpc.InitialWindowSize(64<<10),
			grpc.InitialConnWindowSize(int32(r.cfg.MaxConcurrentStreams)*64<<10),
			grpc.ConnectionTimeout(lim.ReadHeaderTimeout),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: lim.IdleTimeout}),
			grpc.MaxHeaderListSize(listener.DefaultMaxHeaderBytes),
		)
		r.grpcSrv.RegisterService(&traceServiceDesc, &grpcTraces{r: r})
		if r.logs != nil {
			r.grpcSrv.RegisterService(&logsServiceDesc, &grpcLogs{r: r})
		}
		r.serve("grpc", func() error { return r.grpcSrv.Serve(r.grpcLn) })
	}
	if r.cfg.HTTPAddr != "-" {
		if r.httpLn, err = listener.Listen(ctx, r.cfg.HTTPAddr, lim.MaxConnections, r.refusedConn("http")); err != nil {
			return fmt.Errorf("otlp: HTTP listener: %w", err)
		}
		r.httpSrv = lim.HTTPServer(r.HTTPHandler())
		r.httpSrv.BaseContext = func(net.Listener) context.Context { return r.base }
		r.serve("http", func() error { return tlsconfig.ServeHTTP(r.httpSrv, r.httpLn, r.cfg.TLS) })
	}
	return nil
}

func (r *Receiver) refusedConn(transport string) func() {
	return func() {
		if r.metrics != nil {
			r.metrics.refusedConns.WithLabelValues(transport).Inc()
		}
	}
}

func (r *Receiver) serve(name string, fn func() error) {
	r.wg.Go(func() {
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			r.log.Error("OTLP server stopped", "transport", name, "err", err)
		}
	})
}

// GRPCAddr returns the bound gRPC address (useful with port 0), or nil.
func (r *Receiver) GRPCAddr() net.Addr { return addrOf(r.grpcLn) }

// HTTPAddr returns the bound HTTP address, or nil.
func (r *Receiver) HTTPAddr() net.Addr { return addrOf(r.httpLn) }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// shutdownGrace is how long handlers cancelled at the shutdown deadline
// have to answer their clients.
const shutdownGrace = time.Second

// Shutdown stops accepting exports and waits for those in flight, until ctx
// ends; then it cuts the rest off.
func (r *Receiver) Shutdown(ctx context.Context) error {
	var err error
	if r.httpSrv != nil {
		if err = r.httpSrv.Shutdown(ctx); err != nil {
			// Out of time: the handlers still waiting (on the upstream)
			// are cancelled, so that their clients hear a retryable
			// "unavailable" rather than a closed connection; then the
			// connections left are closed.
			r.cancelBase()
			grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			if r.httpSrv.Shutdown(grace) != nil {
				err = errors.Join(err, r.httpSrv.Close())
			}
			cancel()
		}
	} else if r.httpLn != nil {
		err = r.httpLn.Close()
	}
	if r.grpcSrv != nil {
		done := make(chan struct{})
		go func() { r.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			r.cancelBase()
			t := time.NewTimer(shutdownGrace)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
			r.grpcSrv.Stop()
			<-done
			err = errors.Join(err, ctx.Err())
		}
	} else if r.grpcLn != nil {
		err = errors.Join(err, r.grpcLn.Close())
	}
	r.wg.Wait()
	r.cancelBase()
	return err
}

// consume hands an export to the consumer and counts the outcome.
func (r *Receiver) consume(ctx context.Context, e *Export) error {
	err := r.consumer.ConsumeTraces(ctx, e)
	if r.metrics != nil {
		r.metrics.received(e.Transport, e.Spans, err)
	}
	if err != nil {
		r.log.Warn("export refused", "transport", e.Transport, "spans", e.Spans, "err", err)
	}
	return err
}
