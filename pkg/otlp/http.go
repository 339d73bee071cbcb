package otlp

import (
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

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

	body, code, err := readBody(w, req, r.cfg.MaxRequestBytes)
	if err != nil {
		writeStatus(w, enc, code, status.New(codes.InvalidArgument, err.Error()), 0)
		return
	}

	e := &Export{Request: ptraceotlp.NewExportRequest(), Transport: "http", Project: req.Header.Get(ProjectHeader)}
	if enc == contentTypeProto {
		err = e.Request.UnmarshalProto(body)
		e.Body = body
	} else {
		err = e.Request.UnmarshalJSON(body)
	}
	if err != nil {
		writeStatus(w, enc, http.StatusBadRequest, status.Newf(codes.InvalidArgument, "cannot decode the %s body as an OTLP traces export: %v", enc, err), 0)
		return
	}

	if err := r.consume(req.Context(), e); err != nil {
		st := statusOf(err)
		writeStatus(w, enc, HTTPStatus(st.Code()), st, retryAfterOf(err))
		return
	}
	writeResponse(w, enc)
}

// readBody reads the request body, decompressed, capped at limit bytes both
// on the wire and after decompression (so a small gzip bomb is refused too).
// On error it returns the HTTP status to answer with.
func readBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, int, error) {
	var rd io.Reader = http.MaxBytesReader(w, req.Body, limit)
	switch ce := req.Header.Get("Content-Encoding"); ce {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, bodyErrStatus(err), fmt.Errorf("cannot read the gzip body: %w", err)
		}
		defer zr.Close()
		rd = zr
	case "deflate": // HTTP's deflate is the zlib format (RFC 9110, section 8.4.1.2).
		zr, err := zlib.NewReader(rd)
		if err != nil {
			return nil, bodyErrStatus(err), fmt.Errorf("cannot read the deflate body: %w", err)
		}
		defer zr.Close()
		rd = zr
	case "zstd":
		zr, err := zstd.NewReader(rd, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("cannot read the zstd body: %w", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("Content-Encoding %q is not supported; send gzip, deflate, zstd or none", ce)
	}
	body, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, bodyErrStatus(err), fmt.Errorf("cannot read the body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the decompressed body is over the limit of %d bytes", limit)
	}
	return body, 0, nil
}

func bodyErrStatus(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
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
