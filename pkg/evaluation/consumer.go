package evaluation

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
)

// Submitter takes feedback; *feedback.Service is one.
type Submitter interface {
	Submit(items []feedback.Feedback) ([]feedback.Status, error)
}

// Consumer is the receiver's logs consumer (otlp.LogsConsumer): it takes
// the evaluation events of an export as feedback and rejects the other log
// records. It is safe for concurrent use.
type Consumer struct {
	svc     Submitter
	token   string
	metrics *Metrics
	log     *slog.Logger
}

// NewConsumer returns a consumer that submits to svc. token, when set, is
// the shared secret POST /feedback requires (--feedback-token): exports
// must carry it too, as "Authorization: Bearer <token>", since they write
// the same annotations. metrics and log may be nil.
func NewConsumer(svc Submitter, token string, metrics *Metrics, log *slog.Logger) *Consumer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Consumer{svc: svc, token: token, metrics: metrics, log: log}
}

// Authorize checks the export's Authorization header against the token.
func (c *Consumer) Authorize(authorization string) error {
	if c.token == "" {
		return nil
	}
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	scheme, got, ok := strings.Cut(authorization, " ")
	if ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(got), []byte(c.token)) == 1 {
		return nil
	}
	return otlp.Errorf(codes.Unauthenticated, "OTLP logs (evaluation events) need the header Authorization: Bearer <the proxy's --feedback-token>, "+
		"as POST /feedback does; with an OpenTelemetry SDK set OTEL_EXPORTER_OTLP_LOGS_HEADERS=authorization=Bearer%%20<token>")
}

// retryAfter is the delay announced when the feedback service cannot take
// more for now, as POST /feedback announces it.
const retryAfter = 5 * time.Second

// ConsumeLogs submits the feedback of the export's evaluation events, all
// at once: it returns once the service has taken them (on disk, with a data
// directory), or refused them all. The other records are reported as
// rejected.
func (c *Consumer) ConsumeLogs(_ context.Context, l otlp.Logs) (otlp.LogsResult, error) {
	res := FromLogs(l.Logs, MaxPerExport)
	if len(res.Feedback) > 0 {
		if _, err := c.svc.Submit(res.Feedback); err != nil {
			err = submitError(err)
			c.metrics.add(l.Transport, status.Code(err).String(), l.Logs.LogRecordCount())
			return otlp.LogsResult{}, err
		}
	}
	c.metrics.add(l.Transport, "accepted", len(res.Feedback))
	c.metrics.add(l.Transport, "not_evaluation", res.NotEvaluation)
	c.metrics.add(l.Transport, "invalid", res.Invalid)
	return otlp.LogsResult{Rejected: int64(res.Rejected()), Message: res.Message()}, nil
}

// submitError is the OTLP answer to a batch the feedback service refused,
// as POST /feedback answers it: retry later when it is full or cannot
// store, permanent for an invalid item.
func submitError(err error) error {
	var ferr *feedback.FieldError
	switch {
	case errors.Is(err, feedback.ErrBatchTooLarge):
		// Retrying it as it is could never succeed.
		return otlp.Errorf(codes.InvalidArgument, "the export holds more evaluation events than the proxy keeps pending at once; nothing of it was taken: export smaller batches (%v)", err)
	case errors.Is(err, feedback.ErrFull):
		return &otlp.Error{Code: codes.ResourceExhausted, RetryAfter: retryAfter,
			Msg: fmt.Sprintf("the proxy holds as much pending feedback as it takes; nothing of this export was taken; retry later (%v)", err)}
	case errors.Is(err, feedback.ErrStore):
		return &otlp.Error{Code: codes.Unavailable, RetryAfter: retryAfter,
			Msg: fmt.Sprintf("the feedback could not be stored, so nothing of this export was taken; retry later (%v)", err)}
	case errors.As(err, &ferr):
		// FromLogs checks what Submit checks: not expected.
		return otlp.Errorf(codes.InvalidArgument, "an evaluation event was refused, so nothing of this export was taken: %v", err)
	}
	// The service is shutting down.
	return &otlp.Error{Code: codes.Unavailable, RetryAfter: retryAfter, Msg: fmt.Sprintf("the feedback was not taken; retry later (%v)", err)}
}
