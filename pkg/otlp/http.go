package otlp

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TracesPath is the OTLP/HTTP path for traces.
const TracesPath = "/v1/traces"

const (
	contentTypeProto = "application/x-protobuf"
	contentTypeJSON  = "application/json"
)

// HTTPHandler returns the OTLP/HTTP handler (POST /v1/traces).
func (r *Receiver) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TracesPath, r.handleTraces)
	return mux
}

func (r *Receiver) handleTraces(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, contentTypeJSON, http.StatusMethodNotAllowed,
			status.New(codes.InvalidArgument, fmt.Sprintf("%s %s is not supported; send POST", req.Method, TracesPath)), 0)
		return
	}
	enc, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (enc != contentTypeProto && enc != contentTypeJSON) {
		writeStatus(w, contentTypeJSON, http.StatusUnsupportedMediaType, status.Newf(codes.InvalidArgument,
			"Content-Type %q is not supported; send %s or %s", req.Header.Get("Content-Type"), contentTypeProto, contentTypeJSON), 0)
		return
	}

	// Reserve what the client says it sends before reading it, then the
	// rest of the decompressed size: an overloaded proxy refuses at once,
	// without buffering the body.
	reserved := min(max(req.ContentLength, 0), r.cfg.MaxRequestBytes)
	if !r.inflight.acquire(reserved) {
		r.refuseOverloaded(w, enc, "http")
		return
	}
	defer func() { r.inflight.release(reserved) }()

	var bufs bodyBuffers
	defer bufs.release() // after consume: the exporter is done with them
	body, gzipped, code, err := readBody(w, req, r.cfg.MaxRequestBytes, &bufs)
	if err != nil {
		writeStatus(w, enc, code, status.New(codes.InvalidArgument, err.Error()), 0)
		return
	}
	if extra := int64(len(body)+len(gzipped)) - reserved; extra > 0 {
		if !r.inflight.acquire(extra) {
			r.refuseOverloaded(w, enc, "http")
			return
		}
		reserved += extra
	}

	e, err := decodeBody(enc, body, gzipped)
	if err != nil {
		writeStatus(w, enc, http.StatusBadRequest, status.Newf(codes.InvalidArgument, "cannot decode the %s body as an OTLP traces export: %v", enc, err), 0)
		return
	}
	e.Transport, e.Project = "http", req.Header.Get(ProjectHeader)

	if err := r.consume(req.Context(), e); err != nil {
		st := statusOf(err)
		writeStatus(w, enc, HTTPStatus(st.Code()), st, retryAfterOf(err))
		return
	}
	writeResponse(w, enc)
}

// decodeBody checks a protobuf body where it lies (package wire), or
// decodes a JSON one and encodes it in protobuf, the only encoding Phoenix
// takes.
func decodeBody(enc string, body, gzipped []byte) (*Export, error) {
	if enc == contentTypeProto {
		return newExport(body, gzipped)
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalJSON(body); err != nil {
		return nil, err
	}
	return NewExport(req)
}

func (r *Receiver) refuseOverloaded(w http.ResponseWriter, enc, transport string) {
	err := errOverloaded(r.cfg.MaxInflightBytes)
	if r.metrics != nil {
		r.metrics.overloaded.WithLabelValues(transport).Inc()
	}
	writeStatus(w, enc, http.StatusTooManyRequests, err.GRPCStatus(), err.RetryAfter)
}

// maxSizeHint caps the buffer readBody allocates before reading.
const maxSizeHint = 4 << 20

// gzipReaders reuses gzip readers (and their 32 KB windows) across requests.
var gzipReaders sync.Pool

// buffers recycles what request bodies are read into: an export's body is
// the largest thing the proxy allocates, once per request, and the garbage
// collector's work grows with it.
var buffers sync.Pool // of *bytes.Buffer

// bodyBuffers are the pooled buffers of one request's body, as sent and
// decompressed; release returns them once the export has been handled.
type bodyBuffers struct{ sent, plain *bytes.Buffer }

func (b *bodyBuffers) get(p **bytes.Buffer) *bytes.Buffer {
	if *p == nil {
		*p, _ = buffers.Get().(*bytes.Buffer)
		if *p == nil {
			*p = new(bytes.Buffer)
		}
	}
	return *p
}

func (b *bodyBuffers) release() {
	for _, buf := range []*bytes.Buffer{b.sent, b.plain} {
		// A buffer grown for an unusually large export is left to the
		// garbage collector rather than kept for ever.
		if buf != nil && buf.Cap() <= maxSizeHint+bytes.MinRead {
			buf.Reset()
			buffers.Put(buf)
		}
	}
	*b = bodyBuffers{}
}

// readBody reads the request body, decompressed, capped at limit bytes both
// on the wire and after decompression (so a small gzip bomb is refused too),
// into bufs. For a gzip body it also returns the body as sent: the exporter
// forwards those bytes as they are when it compresses with gzip too, instead
// of compressing again what the client already did (by far the largest cost
// of a gzip pass-through, see docs/benchmarks.md).
// On error it returns the HTTP status to answer with.
func readBody(w http.ResponseWriter, req *http.Request, limit int64, bufs *bodyBuffers) (body, gzipped []byte, code int, err error) {
	var rd io.Reader = http.MaxBytesReader(w, req.Body, limit)
	// Content codings are case-insensitive (RFC 9110, section 8.4.1).
	ce := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding")))
	switch ce {
	case "", "identity":
		ce = ""
	case "gzip", "x-gzip": // x-gzip is gzip (RFC 9110, section 8.4.1.3).
		ce = "gzip"
		if gzipped, err = readAll(bufs.get(&bufs.sent), rd, req.ContentLength, limit); err != nil {
			return bodyError(ce, limit, err)
		}
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		defer gzipReaders.Put(zr)
		if err := zr.Reset(bytes.NewReader(gzipped)); err != nil {
			return bodyError(ce, limit, err)
		}
		rd = zr
	case "deflate": // HTTP's deflate is the zlib format (RFC 9110, section 8.4.1.2).
		zr, err := zlib.NewReader(rd)
		if err != nil {
			return bodyError(ce, limit, err)
		}
		defer zr.Close()
		rd = zr
	case "zstd":
		zr, err := zstd.NewReader(rd, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
		if err != nil {
			return bodyError(ce, limit, err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, nil, http.StatusBadRequest, fmt.Errorf("Content-Encoding %q is not supported; send gzip, deflate, zstd or none", req.Header.Get("Content-Encoding"))
	}
	sizeHint := int64(-1)
	if ce == "" {
		sizeHint = req.ContentLength
	}
	if body, err = readAll(bufs.get(&bufs.plain), rd, sizeHint, limit); err != nil {
		return bodyError(ce, limit, err)
	}
	if int64(len(body)) > limit {
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the decompressed body is over the limit of %d bytes", limit)
	}
	return body, gzipped, 0, nil
}

// readAll reads up to limit+1 bytes of rd into buf. A positive sizeHint
// (the Content-Length of an uncompressed body) is the size to read, so it
// reads without regrowing; capped, since the header is only the client's
// word.
func readAll(buf *bytes.Buffer, rd io.Reader, sizeHint, limit int64) ([]byte, error) {
	if sizeHint > 0 {
		buf.Grow(int(min(sizeHint, limit, maxSizeHint)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(rd, limit+1))
	return buf.Bytes(), err
}

// bodyError is readBody's answer to err: 413 when the body is over the
// limit (as sent, or in the memory a zstd frame asks for), 400 when it is
// not in the encoding it claims.
func bodyError(encoding string, limit int64, err error) ([]byte, []byte, int, error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is over the limit of %d bytes", limit)
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the zstd body needs more than the limit of %d bytes to decompress: %w", limit, err)
	case encoding == "":
		return nil, nil, http.StatusBadRequest, fmt.Errorf("cannot read the body: %w", err)
	}
	return nil, nil, http.StatusBadRequest, fmt.Errorf("cannot read the %s body: %w", encoding, err)
}

// maxJSONDepth bounds how deeply a JSON body may nest. pdata's JSON decoder
// recurses once per nested array or map value with no limit of its own, so
// a small body could otherwise take a deep stack. Real OTLP is far
// shallower: protobuf decoders, pdata's and Phoenix's, stop at 100 nested
// messages.
const maxJSONDepth = 256

// checkJSON refuses what pdata's JSON decoder would take without complaint
// but must not: text that is not UTF-8 (RFC 8259, section 8.1; it would
// become protobuf strings that Phoenix refuses), and nesting deeper than
// maxJSONDepth.
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return fmt.Errorf("invalid UTF-8 at byte %d; JSON text must be UTF-8", i)
	}
	depth, inString, escaped := 0, false, false
	for i, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > maxJSONDepth {
				return fmt.Errorf("nesting deeper than %d levels at byte %d", maxJSONDepth, i)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

func writeResponse(w http.ResponseWriter, enc string) {
	resp := ptraceotlp.NewExportResponse()
	var b []byte
	var err error
	if enc == contentTypeJSON {
		b, err = resp.MarshalJSON()
	} else {
		b, err = resp.MarshalProto()
	}
	if err != nil {
		writeStatus(w, enc, http.StatusInternalServerError, status.New(codes.Internal, err.Error()), 0)
		return
	}
	w.Header().Set("Content-Type", enc)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeStatus answers with a google.rpc.Status in the caller's encoding, and
// with Retry-After on the retryable statuses.
func writeStatus(w http.ResponseWriter, enc string, code int, st *status.Status, retryAfter time.Duration) {
	var b []byte
	var err error
	pb := st.Proto()
	// Decoder errors may quote the body, cut in the middle of a character;
	// both encodings refuse a Status whose message is not UTF-8.
	pb.Message = strings.ToValidUTF8(pb.GetMessage(), "\uFFFD")
	if enc == contentTypeProto {
		b, err = proto.Marshal(pb)
	} else {
		enc = contentTypeJSON
		b, err = protojson.Marshal(pb)
	}
	if err != nil {
		b, enc = []byte(`{"code":13,"message":"cannot encode the error"}`), contentTypeJSON
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(retryAfter)))
	}
	w.Header().Set("Content-Type", enc)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// retryAfterSeconds rounds a delay up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
