package otlp

import (
	"mime"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// handleLogs serves POST /v1/logs as handleTraces serves /v1/traces: the
// same checks, limits, budget and answers, and on success an
// ExportLogsServiceResponse that reports the rejected records.
func (r *Receiver) handleLogs(w http.ResponseWriter, req *http.Request) {
	if err := r.logs.Authorize(req.Header.Get("Authorization")); err != nil {
		st := statusOf(err)
		writeStatus(w, replyEncoding(req), HTTPStatus(st.Code()), st, retryAfterOf(err))
		return
	}
	in, ok := r.readRequest(w, req, LogsPath)
	if !ok {
		return
	}
	defer in.release()
	ld, code, err := r.decodeLogs(in.enc, in.body, in.res, "http")
	if err != nil {
		writeStatus(w, in.enc, code, statusOf(err), retryAfterOf(err))
		return
	}
	res, err := r.consumeLogs(req.Context(), Logs{Logs: ld, Transport: "http"})
	if err != nil {
		st := statusOf(err)
		writeStatus(w, in.enc, HTTPStatus(st.Code()), st, retryAfterOf(err))
		return
	}
	b, err := logsResponse(res, in.enc)
	if err != nil {
		writeStatus(w, in.enc, http.StatusInternalServerError, status.New(codes.Internal, err.Error()), 0)
		return
	}
	w.Header().Set("Content-Type", in.enc)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// replyEncoding is the encoding of an answer given before the request's
// Content-Type is checked: protobuf if the client sends it, else JSON.
func replyEncoding(req *http.Request) string {
	if enc, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err == nil && enc == contentTypeProto {
		return contentTypeProto
	}
	return contentTypeJSON
}
