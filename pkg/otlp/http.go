package otlp

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
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

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
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

// HTTPHandler returns the OTLP/HTTP handler (POST /v1/traces, and POST
// /v1/logs with WithLogs).
func (r *Receiver) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TracesPath, r.handleTraces)
	if r.logs != nil {
		mux.HandleFunc(LogsPath, r.handleLogs)
	}
	return mux
}

func (r *Receiver) handleTraces(w http.ResponseWriter, req *http.Request) {
	in, ok := r.readRequest(w, req, TracesPath)
	if !ok {
		return
	}
	defer in.release() // after consume: the exporter is done with the buffers
	enc, body := in.enc, in.body

	var e *Export
	var err error
	if enc == contentTypeJSON {
		// pdata's JSON decoder builds objects many times the size of their
		// text ({} as a span takes 263 bytes): charged up front by counting
		// them, and a body that could never fit the budget is refused for
		// what it is.
		need, malformed := scanJSON(body)
		if need > r.cfg.MaxInflightBytes {
			writeStatus(w, enc, http.StatusRequestEntityTooLarge, status.Newf(codes.InvalidArgument,
				"an OTLP/JSON body of %d bytes may take %d to decode, more than this proxy's --max-inflight-bytes (%d); send protobuf, or smaller exports",
				len(body), need, r.cfg.MaxInflightBytes), 0)
			return
		}
		if !in.res.Grow(need) {
			r.refuseOverloaded(w, enc, "http")
			return
		}
		if err = malformed; err == nil {
			e, err = decodeJSON(body)
		}
	} else {
		// Checked where it lies (package wire).
		e, err = newExport(body, in.gzipped)
	}
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

// request is an OTLP/HTTP request's body, read and decompressed, with the
// reservation that holds its memory; release gives both back.
type request struct {
	enc           string // contentTypeProto or contentTypeJSON
	body, gzipped []byte // see readBody
	res           *budget.Reservation
	bufs          bodyBuffers
}

func (in *request) release() {
	in.bufs.release()
	in.res.Release()
}

// readRequest checks an OTLP/HTTP request to path (method, Content-Type)
// and reads its body within the limits and the in-flight budget. When it
// cannot, it answers the client itself and returns false.
func (r *Receiver) readRequest(w http.ResponseWriter, req *http.Request, path string) (*request, bool) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, contentTypeJSON, http.StatusMethodNotAllowed,
			status.New(codes.InvalidArgument, fmt.Sprintf("%s %s is not supported; send POST", req.Method, path)), 0)
		return nil, false
	}
	enc, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (enc != contentTypeProto && enc != contentTypeJSON) {
		writeStatus(w, contentTypeJSON, http.StatusUnsupportedMediaType, status.Newf(codes.InvalidArgument,
			"Content-Type %q is not supported; send %s or %s", req.Header.Get("Content-Type"), contentTypeProto, contentTypeJSON), 0)
		return nil, false
	}

	// The budget is charged for what the body takes in memory as it
	// arrives (as sent and decompressed), never for what Content-Length
	// announces: a client that declares 20 MiB and sends nothing holds
	// nothing. Whatever path the request takes, the reservation is given
	// back after its buffers are.
	in := &request{enc: enc, res: r.budget.Reserve()}
	// While the body comes, the request may be cut off should it stall
	// while others need the budget (see package budget).
	rc := http.NewResponseController(w)
	in.res.Track(func() { _ = rc.SetReadDeadline(time.Now()) })
	body, gzipped, code, err := readBody(w, req, r.cfg.MaxRequestBytes, in.res, &in.bufs)
	in.res.Untrack()
	in.body, in.gzipped = body, gzipped
	switch {
	case in.res.Aborted():
		writeStatus(w, enc, http.StatusServiceUnavailable, status.New(codes.Unavailable,
			"the request body stopped coming while other exports needed the memory it held; retry"), time.Second)
	case errors.Is(err, errBudgetSpent):
		r.refuseOverloaded(w, enc, "http")
	case err != nil:
		writeStatus(w, enc, code, status.New(codes.InvalidArgument, err.Error()), 0)
	default:
		return in, true
	}
	in.release()
	return nil, false
}

// decodeJSON decodes a JSON body, which scanJSON found well formed, and
// encodes it in protobuf, the only encoding Phoenix takes.
func decodeJSON(body []byte) (*Export, error) {
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalJSON(body); err != nil {
		return nil, err
	}
	return NewExport(req)
}

func (r *Receiver) refuseOverloaded(w http.ResponseWriter, enc, transport string) {
	err := errOverloaded(r.cfg.MaxInflightBytes)
	r.overloaded(transport)
	writeStatus(w, enc, http.StatusTooManyRequests, err.GRPCStatus(), err.RetryAfter)
}

// readChunk is the first allocation for a body, and the least it grows by.
const readChunk = 32 << 10

// maxPooled is the largest buffer kept for reuse; one grown for an
// unusually large export is left to the garbage collector.
const maxPooled = 4 << 20

// errBudgetSpent is readBody's error when the in-flight budget cannot take
// the bytes the body needs.
var errBudgetSpent = errors.New("in-flight budget spent")

// gzipReaders reuses gzip readers (and their 32 KB windows) across requests.
var gzipReaders sync.Pool

// buffers recycles what request bodies are read into: an export's body is
// the largest thing the proxy allocates, once per request, and the garbage
// collector's work grows with it.
var buffers sync.Pool // of *[]byte

// bodyBuffers are the pooled buffers of one request's body, as sent and
// decompressed; release returns them once the export has been handled.
type bodyBuffers struct{ sent, plain *[]byte }

func (b *bodyBuffers) get(p **[]byte) *[]byte {
	if *p == nil {
		*p, _ = buffers.Get().(*[]byte)
		if *p == nil {
			*p = new([]byte)
		}
	}
	return *p
}

func (b *bodyBuffers) release() {
	for _, buf := range []*[]byte{b.sent, b.plain} {
		if buf != nil && cap(*buf) <= maxPooled {
			*buf = (*buf)[:0]
			buffers.Put(buf)
		}
	}
	*b = bodyBuffers{}
}

// readBody reads the request body, decompressed, capped at limit bytes both
// on the wire and after decompression (so a small gzip bomb is refused too),
// into bufs, charging res for the memory as it is taken. For a gzip body it
// also returns the body as sent: the exporter forwards those bytes as they
// are when it compresses with gzip too, instead of compressing again what
// the client already did (by far the largest cost of a gzip pass-through,
// see docs/benchmarks.md). On error it returns the HTTP status to answer
// with; errBudgetSpent when res could not grow.
func readBody(w http.ResponseWriter, req *http.Request, limit int64, res *budget.Reservation, bufs *bodyBuffers) (body, gzipped []byte, code int, err error) {
	// The body as sent is capped too when it is decompressed as a stream:
	// zstd's skippable frames, say, are input that yields nothing.
	var rd io.Reader = http.MaxBytesReader(w, req.Body, limit)
	// Content codings are case-insensitive (RFC 9110, section 8.4.1).
	ce := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding")))
	plainHint := int64(-1)
	switch ce {
	case "", "identity":
		ce = ""
		plainHint = req.ContentLength
	case "gzip", "x-gzip": // x-gzip is gzip (RFC 9110, section 8.4.1.3).
		ce = "gzip"
		sent := bufs.get(&bufs.sent)
		if *sent, err = readAll(*sent, rd, req.ContentLength, limit, res); err != nil {
			return bodyError(ce, limit, err)
		}
		gzipped = *sent
		if int64(len(gzipped)) > limit {
			return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is over the limit of %d bytes", limit)
		}
		switch body, err = gunzip(gzipped, limit, res, bufs); {
		case err == nil:
			return body, gzipped, 0, nil
		case errors.Is(err, errTooLarge):
			return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the decompressed body is over the limit of %d bytes", limit)
		}
		return bodyError(ce, limit, err)
	case "deflate": // HTTP's deflate is the zlib format (RFC 9110, section 8.4.1.2).
		// The reader's window and state, charged as part of the request.
		if !res.Grow(inflaterBytes) {
			return nil, nil, 0, errBudgetSpent
		}
		zr, err := zlib.NewReader(rd)
		if err != nil {
			return bodyError(ce, limit, err)
		}
		defer zr.Close()
		rd = zr
	case "zstd":
		// Read whole first, charged and evictable like any body, so that a
		// decoder is held only while it decodes, never by a client that
		// stalls.
		sent := bufs.get(&bufs.sent)
		if *sent, err = readAll(*sent, rd, req.ContentLength, limit, res); err != nil {
			return bodyError(ce, limit, err)
		}
		if int64(len(*sent)) > limit {
			return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is over the limit of %d bytes", limit)
		}
		zr, ok := zstdDecoders.get(zstdWait)
		if !ok {
			return nil, nil, 0, errBudgetSpent
		}
		defer zstdDecoders.put(zr)
		if err := zr.Reset(bytes.NewReader(*sent)); err != nil {
			return bodyError(ce, limit, err)
		}
		rd = zr
	default:
		return nil, nil, http.StatusBadRequest, fmt.Errorf("Content-Encoding %q is not supported; send gzip, deflate, zstd or none", req.Header.Get("Content-Encoding"))
	}
	plain := bufs.get(&bufs.plain)
	if *plain, err = readAll(*plain, rd, plainHint, limit, res); err != nil {
		return bodyError(ce, limit, err)
	}
	body = *plain
	if int64(len(body)) > limit {
		if ce == "" {
			return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is over the limit of %d bytes", limit)
		}
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the decompressed body is over the limit of %d bytes", limit)
	}
	return body, gzipped, 0, nil
}

// errTooLarge is gunzip's error for a body over its limit once
// decompressed.
var errTooLarge = errors.New("decompressed body over the limit")

// gunzip decompresses a gzip body read whole into bufs, charging res for
// the memory as it is taken, at most limit bytes (errTooLarge past it);
// errBudgetSpent when res could not grow.
func gunzip(gzipped []byte, limit int64, res *budget.Reservation, bufs *bodyBuffers) ([]byte, error) {
	// The trailer holds the decompressed size (modulo 2^32): read into a
	// buffer of that size at once instead of regrowing one. A lie costs
	// the liar only its own budget, and a regrowth.
	plainHint := int64(-1)
	if n := len(gzipped); n >= 4 {
		plainHint = int64(binary.LittleEndian.Uint32(gzipped[n-4:]))
	}
	// The reader's window and state, charged as part of the request.
	if !res.Grow(inflaterBytes) {
		return nil, errBudgetSpent
	}
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gzipReaders.Put(zr)
	if err := zr.Reset(bytes.NewReader(gzipped)); err != nil {
		return nil, err
	}
	plain := bufs.get(&bufs.plain)
	var err error
	if *plain, err = readAll(*plain, zr, plainHint, limit, res); err != nil {
		return nil, err
	}
	if int64(len(*plain)) > limit {
		return nil, errTooLarge
	}
	return *plain, nil
}

// readAll reads up to limit+1 bytes of rd into b (from its start), growing
// it as bytes arrive, and charges res for the memory first: the capacity it
// allocates, and what it fills of the capacity b came with (a pooled
// buffer). A sizeHint (a Content-Length, a gzip trailer) caps each growth,
// so that the last one fits the body exactly; it never makes a buffer grow
// ahead of the bytes.
func readAll(b []byte, rd io.Reader, sizeHint, limit int64, res *budget.Reservation) ([]byte, error) {
	b = b[:0]
	pooled := int64(cap(b)) // capacity that exists already: charged as filled
	var charged int64
	// charge brings the charge up to what b holds of the memory.
	charge := func(grownCap int64) bool {
		want := min(int64(len(b)), pooled) + max(grownCap-pooled, 0)
		if want <= charged {
			return true
		}
		if !res.Grow(want - charged) {
			return false
		}
		charged = want
		return true
	}
	for {
		if len(b) == cap(b) {
			if int64(len(b)) > limit {
				return b, nil
			}
			// Doubling, up to what the hint says is left: a client that
			// announces a large body gets memory only as it sends it.
			newCap := max(2*int64(cap(b)), readChunk)
			if sizeHint >= int64(len(b)) {
				newCap = min(newCap, sizeHint+1)
			}
			newCap = min(newCap, limit+1)
			if !charge(newCap) {
				return b, errBudgetSpent
			}
			nb := make([]byte, len(b), newCap)
			copy(nb, b)
			b, pooled = nb, 0
			charged = newCap
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if n > 0 {
			res.Progress()
		}
		if !charge(int64(cap(b))) {
			return b, errBudgetSpent
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// bodyError is readBody's answer to err: 413 when the body is over the
// limit (as sent, or in the memory a zstd frame asks for), 400 when it is
// not in the encoding it claims.
func bodyError(encoding string, limit int64, err error) ([]byte, []byte, int, error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errBudgetSpent):
		return nil, nil, 0, err
	case errors.As(err, &mbe):
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is over the limit of %d bytes", limit)
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the zstd body needs a window over the proxy's limit of %d bytes: %w", zstdMaxWindow, err)
	case encoding == "":
		return nil, nil, http.StatusBadRequest, fmt.Errorf("cannot read the body: %w", err)
	}
	return nil, nil, http.StatusBadRequest, fmt.Errorf("cannot read the %s body: %w", encoding, err)
}

func (r *Receiver) overloaded(transport string) {
	if r.metrics != nil {
		r.metrics.overloaded.WithLabelValues(transport).Inc()
	}
}

// maxJSONDepth bounds how deeply a JSON body may nest. pdata's JSON decoder
// recurses once per nested array or map value with no limit of its own, so
// a small body could otherwise take a deep stack. Real OTLP is far
// shallower: protobuf decoders, pdata's and Phoenix's, stop at 100 nested
// messages.
const maxJSONDepth = 256

// scanJSON reads an OTLP/JSON body once, for two things. cost is what
// pdata may allocate at most to decode it, logs or traces: every object is
// a message, every element of an array a slot (a repeated string's, at
// most), and the text may be copied twice (unescaped, then kept). The
// costliest message of either signal, an empty span ({} in spans), takes
// 263 bytes with its slot (pdata 1.71): under decodedMessageBytes plus
// decodedElementBytes. err refuses what pdata's decoder would take without
// complaint but must not: text that is not UTF-8 (RFC 8259, section 8.1;
// it would become protobuf strings that Phoenix refuses), nesting deeper
// than maxJSONDepth, and anything after the first value. The cost counts
// the whole body even past an error: a body that could never fit the
// budget is refused as such, whatever else is wrong with it. Brackets and
// commas within strings count for neither.
func scanJSON(b []byte) (cost int64, err error) {
	if !utf8.Valid(b) {
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		err = fmt.Errorf("invalid UTF-8 at byte %d; JSON text must be UTF-8", i)
	}
	var objects, elements int64
	// checking is whether the first value is still being read, and no
	// error found yet.
	checking := err == nil
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
		case c == ',':
			elements++
		case c == '{' || c == '[':
			if c == '{' {
				objects++
			} else {
				elements++
			}
			if depth++; checking && depth > maxJSONDepth {
				err, checking = fmt.Errorf("nesting deeper than %d levels at byte %d", maxJSONDepth, i), false
			}
		case c == '}' || c == ']':
			if depth--; checking && depth == 0 {
				checking = false
				// pdata's decoder stops after the first value: what
				// follows would be dropped without a word.
				if rest := bytes.TrimLeft(b[i+1:], " \t\r\n"); len(rest) > 0 {
					err = fmt.Errorf("found more after the export's JSON object, at byte %d; send one object per request", len(b)-len(rest))
				}
			}
		}
	}
	return 2*copiedBytes(b) + objects*decodedMessageBytes + elements*decodedElementBytes, err
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
