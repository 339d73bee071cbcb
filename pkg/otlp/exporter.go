package otlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/retryafter"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
)

// Defaults for ExporterConfig.
const (
	DefaultExportTimeout = 10 * time.Second
	// DefaultCompressionLevel is gzip's fastest level. On an LLM-shaped
	// 128 KB export it costs half the CPU of level 6 for 12 % more bytes
	// (ratio 6.3 against 7.1): a sidecar's CPU is paid in every pod, the
	// bytes once (BenchmarkCompress in bench/).
	DefaultCompressionLevel = gzip.BestSpeed
	// maxResponseBytes caps what is read of an upstream answer.
	maxResponseBytes = 64 << 10
)

// Compression is how the exporter compresses what it sends upstream; the
// zero value is Gzip, the default. Its text, in a flag (flag.TextVar) or a
// message, is "gzip" or "none".
type Compression uint8

const (
	// Gzip compresses each export (Content-Encoding: gzip), or forwards
	// the gzip bytes a client sent (see Export.Gzipped).
	Gzip Compression = iota
	// NoCompression sends each export as protobuf, decompressed.
	NoCompression
)

// compressionNames are the texts of the Compressions, indexed by them: the
// one list of what the exporter supports.
var compressionNames = [...]string{Gzip: "gzip", NoCompression: "none"}

func (c Compression) known() bool { return int(c) < len(compressionNames) }

// String returns the Compression's text, "gzip" or "none".
func (c Compression) String() string {
	if !c.known() {
		return fmt.Sprintf("Compression(%d)", uint8(c))
	}
	return compressionNames[c]
}

// MarshalText returns the Compression's text, as UnmarshalText reads it.
func (c Compression) MarshalText() ([]byte, error) {
	if !c.known() {
		return nil, errCompression(c.String())
	}
	return []byte(compressionNames[c]), nil
}

// UnmarshalText reads "gzip" or "none". An empty text is the default,
// gzip: an empty flag value (-phoenix-compression=) keeps the default.
func (c *Compression) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*c = Gzip
		return nil
	}
	for i, name := range compressionNames {
		if string(b) == name {
			*c = Compression(i)
			return nil
		}
	}
	return errCompression(strconv.Quote(string(b)))
}

// errCompression is the error for a Compression the exporter does not
// support, named by c.
func errCompression(c string) error {
	return fmt.Errorf("otlp: exporter compression %s is not supported; use gzip or none", c)
}

// ExporterConfig says where and how exports are sent.
type ExporterConfig struct {
	// Endpoint is the full OTLP/HTTP traces URL, e.g.
	// "http://localhost:6006/v1/traces". Required.
	Endpoint string
	// Headers are added to every request (auth, PHOENIX_CLIENT_HEADERS).
	Headers map[string]string
	// Compression is Gzip (the zero value) or NoCompression.
	Compression Compression
	// CompressionLevel is the gzip level, from 1 (fastest) to 9 (smallest);
	// zero means DefaultCompressionLevel. It applies only to what the
	// proxy compresses itself: a client's gzip body is forwarded as it came.
	CompressionLevel int
	// Timeout bounds one request; zero means DefaultExportTimeout.
	Timeout time.Duration
	// Client sends the requests; nil means a client of our own. Its
	// transport must close every request body, as http.RoundTripper's
	// contract asks: Export returns only then, since the receiver reuses
	// the body's memory afterwards.
	Client *http.Client
	// TLS names the files an https Endpoint is reached with: the CAs its
	// certificate must chain to (instead of the system's) and a client
	// certificate, each read again when it changes. The zero value trusts
	// the system's roots and presents no certificate. It configures the
	// client of our own: a Client given is used as it is (as the OTel SDK's
	// WithHTTPClient overrides its TLS options).
	TLS tlsconfig.ClientConfig
}

// Validate reports a configuration that cannot work.
func (c ExporterConfig) Validate() error {
	var errs []error
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("otlp: exporter endpoint %q is not an http(s) URL", c.Endpoint))
	}
	if !c.Compression.known() {
		errs = append(errs, errCompression(c.Compression.String()))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("otlp: exporter timeout must be positive, got %s", c.Timeout))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("otlp: exporter TLS: %w", err))
	} else if c.TLS.Enabled() && u != nil && u.Scheme == "http" {
		errs = append(errs, fmt.Errorf("otlp: exporter endpoint %q: TLS files are given, but the endpoint is not https://", c.Endpoint))
	}
	if c.CompressionLevel < 0 || c.CompressionLevel > gzip.BestCompression {
		errs = append(errs, fmt.Errorf("otlp: exporter compression level must be 1 (fastest) to 9 (smallest), or 0 for the default (%d); got %d", DefaultCompressionLevel, c.CompressionLevel))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero fields set to their defaults. A nil
// Client stays nil: NewExporter makes the client of our own.
func (c ExporterConfig) withDefaults() ExporterConfig {
	if c.Timeout == 0 {
		c.Timeout = DefaultExportTimeout
	}
	if c.CompressionLevel == 0 {
		c.CompressionLevel = DefaultCompressionLevel
	}
	return c
}

// Exporter sends exports to an OTLP/HTTP endpoint in protobuf. Phoenix takes
// only protobuf on /v1/traces, so JSON input is re-encoded.
type Exporter struct {
	cfg     ExporterConfig
	client  *http.Client
	metrics *Metrics
	gzips   sync.Pool
	now     func() time.Time // reads Retry-After dates; tests replace it
}

// NewExporter returns an exporter; it does no I/O. metrics may be nil.
func NewExporter(cfg ExporterConfig, metrics *Metrics) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		client = &http.Client{Transport: tr}
		if cfg.TLS.Enabled() {
			files, err := tlsconfig.NewClient(cfg.TLS, tlsconfig.Options{Name: "phoenix"})
			if err != nil {
				return nil, err
			}
			client.Transport = files.Transport(tr)
		}
	}
	return &Exporter{cfg: cfg, client: client, metrics: metrics, now: time.Now}, nil
}

// Export sends e upstream. The error, when not nil, is an *Error that says
// whether the client may retry.
func (x *Exporter) Export(ctx context.Context, e *Export) error {
	start := time.Now()
	err := x.export(ctx, e)
	if x.metrics != nil {
		x.metrics.exported(e.Spans, time.Since(start).Seconds(), err)
	}
	return err
}

func (x *Exporter) export(ctx context.Context, e *Export) error {
	payload := e.Body
	switch {
	case x.cfg.Compression != Gzip:
	case e.Gzipped != nil:
		// The client compressed these very bytes already: send them as
		// they came, instead of paying for gzip a second time.
		payload = e.Gzipped
	default:
		buf, err := x.gzip(e.Body)
		if err != nil {
			return Errorf(codes.Internal, "cannot compress the export: %v", err)
		}
		payload = buf
	}

	// The transport may still read the body after Do returns (an upstream
	// that answers before it has read it all), and the receiver reuses the
	// buffers of an export once it has been handled: so the export is not
	// done until the transport has closed every reader it was given.
	// Deferred before the cancel below, the wait runs after it, which ends
	// any such write.
	bodies := &sentBodies{payload: payload}
	defer bodies.wait()
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.Endpoint, http.NoBody)
	if err != nil {
		return Errorf(codes.Internal, "cannot build the upstream request: %v", err)
	}
	if len(payload) > 0 { // else NoBody: a body of length 0 would be sent chunked
		req.ContentLength = int64(len(payload))
		req.Body, _ = bodies.open()
		// For the transport to send the request again on a fresh
		// connection when a kept-alive one was closed under it, and for
		// redirects.
		req.GetBody = bodies.open
	}
	req.Header.Set("User-Agent", "phoenix-feedback-proxy")
	for k, v := range x.cfg.Headers {
		req.Header.Set(k, v)
	}
	// After the configured headers: these describe the body, and a wrong
	// one would make the upstream refuse every export.
	req.Header.Set("Content-Type", contentTypeProto)
	if x.cfg.Compression == Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	} else {
		req.Header.Del("Content-Encoding")
	}
	if e.Project != "" {
		req.Header.Set(ProjectHeader, e.Project)
	}

	resp, err := x.client.Do(req)
	if err != nil {
		// The network failed or the upstream was too slow: nothing says the
		// spans arrived, so the client should send them again.
		return Errorf(codes.Unavailable, "upstream %s unreachable: %v", x.cfg.Endpoint, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
	}()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode/100 != 2 {
		return fromUpstream(resp.StatusCode, retryafter.Parse(resp.Header.Get("Retry-After"), x.now()), upstreamMessage(resp.Header.Get("Content-Type"), msg))
	}
	x.checkPartialSuccess(resp.Header.Get("Content-Type"), msg)
	return nil
}

// checkPartialSuccess counts the spans an upstream said it rejected in a
// successful answer. The export itself succeeded, so the client is not told
// to retry: resending would only be rejected again.
func (x *Exporter) checkPartialSuccess(contentType string, body []byte) {
	if x.metrics == nil || len(body) == 0 || !strings.HasPrefix(contentType, contentTypeProto) {
		return
	}
	resp := ptraceotlp.NewExportResponse()
	if err := resp.UnmarshalProto(body); err != nil {
		return
	}
	if n := resp.PartialSuccess().RejectedSpans(); n > 0 {
		x.metrics.upstreamRejected.Add(float64(n))
	}
}

// upstreamMessage extracts a readable message from an error answer: the
// text of a google.rpc.Status, or the body itself, shortened.
func upstreamMessage(contentType string, body []byte) string {
	s := strings.TrimSpace(string(body))
	if strings.HasPrefix(contentType, contentTypeProto) {
		if st := decodeStatus(body); st != "" {
			s = st
		}
	}
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	// The body may be binary, or cut in the middle of a character above;
	// the message goes into a google.rpc.Status, which must be UTF-8.
	s = strings.ToValidUTF8(s, "\uFFFD")
	if s == "" {
		s = "(empty body)"
	}
	return s
}

// sentBodies hands the transport readers over one payload and knows when
// it has closed them all: the transport closes every request body it is
// given, even on errors (http.RoundTripper's contract).
type sentBodies struct {
	payload []byte
	opened  sync.WaitGroup
}

func (s *sentBodies) open() (io.ReadCloser, error) {
	s.opened.Add(1)
	return &sentBody{r: bytes.NewReader(s.payload), done: s.opened.Done}, nil
}

// wait returns once every reader is closed. No reader is opened after Do
// returns: retries and redirects happen within it.
func (s *sentBodies) wait() { s.opened.Wait() }

// sentBody is one reader over the payload. Read and Close exclude each
// other: over HTTP/2 the transport may close the body from one goroutine
// while another is still in Read, and once Close has returned the payload
// must not be touched.
type sentBody struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
	done   func()
}

var errBodyClosed = errors.New("otlp: request body read after close")

func (b *sentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.r.Read(p)
}

func (b *sentBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.done()
	}
	return nil
}

func (x *Exporter) gzip(body []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(body) / 4)
	zw, _ := x.gzips.Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(&buf, x.cfg.CompressionLevel); err != nil {
			return nil, err
		}
	} else {
		zw.Reset(&buf)
	}
	defer x.gzips.Put(zw)
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
