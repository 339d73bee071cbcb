package otlp

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc/codes"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
)

// The logs side takes OTLP logs exports, for the events in them (the proxy
// takes GenAI evaluation events as feedback, see package evaluation). They
// come through the same listeners, limits and in-flight budget as traces,
// but are decoded with pdata: they are few and small next to traces, and
// nothing forwards their bytes.

// LogsPath is the OTLP/HTTP path for logs.
const LogsPath = "/v1/logs"

// Logs is one received logs export.
type Logs struct {
	Logs plog.Logs
	// Transport is "grpc" or "http".
	Transport string
}

// LogsResult is what a LogsConsumer did not take of an export, answered as
// OTLP's partial success
// (https://opentelemetry.io/docs/specs/otlp/#partial-success): the export
// is accepted, and the client is told how many log records were rejected
// and why, and does not send them again.
type LogsResult struct {
	// Rejected is the number of log records rejected; zero when all were
	// taken.
	Rejected int64
	// Message says why, e.g. the first problem found.
	Message string
}

// LogsConsumer takes received logs exports. It is used from many
// goroutines at once.
type LogsConsumer interface {
	// Authorize is asked before an export is read, with the request's
	// Authorization header (gRPC: its "authorization" metadata), "" if it
	// has none. An error refuses the export as ConsumeLogs's does (an
	// *Error with codes.Unauthenticated answers 401).
	Authorize(authorization string) error
	// ConsumeLogs takes an export, and returns once what it took is safe:
	// the client is answered then. The records it rejects are reported in
	// the answer; an error refuses the whole export and is what the client
	// is told, as for Consumer.
	ConsumeLogs(ctx context.Context, l Logs) (LogsResult, error)
}

// ReceiverOption sets what NewReceiver builds beyond its ReceiverConfig.
type ReceiverOption func(*Receiver)

// WithLogs makes the receiver serve OTLP logs too, OTLP/HTTP POST /v1/logs
// and OTLP/gRPC LogsService/Export, handing them to c. Without it, /v1/logs
// answers 404 and LogsService Unimplemented.
func WithLogs(c LogsConsumer) ReceiverOption {
	return func(r *Receiver) { r.logs = c }
}

// decodeLogs charges res for what decoding body (in enc) takes, then
// decodes it. On error it also returns the HTTP status to answer with.
func (r *Receiver) decodeLogs(enc string, body []byte, res *budget.Reservation, transport string) (plog.Logs, int, error) {
	var cost int64
	if enc == contentTypeJSON {
		var err error
		if cost, err = scanJSON(body); err != nil {
			return plog.Logs{}, http.StatusBadRequest, Errorf(codes.InvalidArgument, "cannot decode the %s body as an OTLP logs export: %v", enc, err)
		}
	} else {
		var err error
		if cost, err = logsProtoCost(body); err != nil {
			return plog.Logs{}, http.StatusBadRequest, Errorf(codes.InvalidArgument, "cannot decode the %s body as an OTLP logs export: %v", enc, err)
		}
	}
	if cost > r.cfg.MaxInflightBytes {
		// It could never fit: refused for what it is, not as an overload
		// the client would retry forever.
		return plog.Logs{}, http.StatusRequestEntityTooLarge, Errorf(codes.InvalidArgument,
			"this logs export of %d bytes may take %d to decode (it holds many small values), more than this proxy's --max-inflight-bytes (%d); send smaller exports",
			len(body), cost, r.cfg.MaxInflightBytes)
	}
	if !res.Grow(cost) {
		r.overloaded(transport)
		return plog.Logs{}, http.StatusTooManyRequests, errOverloaded(r.cfg.MaxInflightBytes)
	}
	req := plogotlp.NewExportRequest()
	var err error
	if enc == contentTypeJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		return plog.Logs{}, http.StatusBadRequest, Errorf(codes.InvalidArgument, "cannot decode the %s body as an OTLP logs export: %v", enc, err)
	}
	return req.Logs(), 0, nil
}

// consumeLogs hands an export to the logs consumer.
func (r *Receiver) consumeLogs(ctx context.Context, l Logs) (LogsResult, error) {
	res, err := r.logs.ConsumeLogs(ctx, l)
	if err != nil {
		r.log.Warn("logs export refused", "transport", l.Transport, "log_records", l.Logs.LogRecordCount(), "err", err)
		return LogsResult{}, err
	}
	if res.Rejected > 0 {
		r.log.Info("log records rejected", "transport", l.Transport, "log_records", l.Logs.LogRecordCount(),
			"rejected", res.Rejected, "reason", res.Message)
	}
	return res, nil
}

// logsResponse encodes the answer to an accepted export in enc.
func logsResponse(res LogsResult, enc string) ([]byte, error) {
	resp := plogotlp.NewExportResponse()
	if res.Rejected > 0 || res.Message != "" {
		resp.PartialSuccess().SetRejectedLogRecords(res.Rejected)
		// Clients decode it as a protobuf string: UTF-8.
		resp.PartialSuccess().SetErrorMessage(strings.ToValidUTF8(res.Message, "\uFFFD"))
	}
	if enc == contentTypeJSON {
		return resp.MarshalJSON()
	}
	b, err := resp.MarshalProto()
	if err != nil {
		return nil, fmt.Errorf("encoding the logs export response: %w", err)
	}
	return b, nil
}
