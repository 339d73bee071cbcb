package evaluation

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// The event and the attributes this package reads: the GenAI semantic
// conventions' evaluation event (semantic-conventions v1.38.0 to v1.41.x,
// model/gen-ai/events.yaml and registry.yaml), the event name attribute
// older SDKs set, and the user's id.
const (
	// EventName is the event's name: the log record's event_name field
	// (OTLP 1.5, logs.proto field 12), or for SDKs older than it the
	// attribute AttrEventName.
	EventName     = "gen_ai.evaluation.result"
	AttrEventName = "event.name"

	AttrEvaluationName = "gen_ai.evaluation.name"
	AttrScoreValue     = "gen_ai.evaluation.score.value"
	AttrScoreLabel     = "gen_ai.evaluation.score.label"
	AttrExplanation    = "gen_ai.evaluation.explanation"
	AttrResponseID     = "gen_ai.response.id"
	AttrErrorType      = "error.type"

	// AttrUserID, else AttrEndUserID, becomes the annotation's identifier:
	// one annotation per user and name, as POST /feedback's identifier.
	// The evaluation event names no identifier of its own; these are the
	// conventions' user attributes (user.id, model/user; enduser.id,
	// model/enduser).
	AttrUserID    = "user.id"
	AttrEndUserID = "enduser.id"
)

// MaxPerExport is how many evaluation events one export may carry; those
// past it are rejected. The SDKs' batch processors send at most 512 log
// records at once; the bound keeps one export from taking more than the
// feedback service's limits could ever hold, which it would be refused
// (and retried) forever for.
const MaxPerExport = 1000

// ErrNotEvaluation is the error of a log record that is not a
// gen_ai.evaluation.result event.
var ErrNotEvaluation = errors.New("not a " + EventName + " event: this endpoint takes only those, as feedback; other logs are neither stored nor forwarded")

// RecordError is why an evaluation event cannot be taken: the attribute at
// fault, and what was expected.
type RecordError struct {
	Attribute string
	Message   string
}

func (e *RecordError) Error() string { return e.Attribute + ": " + e.Message }

func recordErr(attr, format string, args ...any) *RecordError {
	return &RecordError{Attribute: attr, Message: fmt.Sprintf(format, args...)}
}

// IsEvaluation reports whether rec is a gen_ai.evaluation.result event: by
// its event_name field, or when that is empty by its event.name attribute.
func IsEvaluation(rec plog.LogRecord) bool {
	return eventName(rec) == EventName
}

func eventName(rec plog.LogRecord) string {
	if n := rec.EventName(); n != "" {
		return n
	}
	if v, ok := rec.Attributes().Get(AttrEventName); ok && v.Type() == pcommon.ValueTypeStr {
		return v.Str()
	}
	return ""
}

// Feedback returns the feedback an evaluation event stands for: its score,
// label and explanation, under the evaluation's name (feedback.DefaultName
// when it has none), from a HUMAN annotator, on the span of its response
// id. The error is ErrNotEvaluation, or a *RecordError. A feedback it
// returns is one feedback.Service.Submit takes.
func Feedback(rec plog.LogRecord) (feedback.Feedback, error) {
	if !IsEvaluation(rec) {
		return feedback.Feedback{}, ErrNotEvaluation
	}
	attrs := rec.Attributes()
	if v, ok := attrs.Get(AttrErrorType); ok {
		return feedback.Feedback{}, recordErr(AttrErrorType, "the evaluation failed (%s); a failed evaluation is not written as an annotation", quote(v.AsString()))
	}
	var f feedback.Feedback
	id, ok, err := text(attrs, AttrResponseID, feedback.MaxResponseIDLen)
	switch {
	case err != nil:
		return f, err
	case !ok || id == "":
		return f, recordErr(AttrResponseID, "required: the evaluated response's id (e.g. chatcmpl-...), by which the proxy finds its span")
	}
	f.ResponseID = id
	if f.Name, _, err = text(attrs, AttrEvaluationName, feedback.MaxNameLen); err != nil {
		return f, err
	}
	switch f.Name {
	case "":
		f.Name = feedback.DefaultName
	case "note":
		return f, recordErr(AttrEvaluationName, `"note" is reserved by Phoenix; choose another name`)
	}
	if label, ok, err := text(attrs, AttrScoreLabel, feedback.MaxLabelLen); err != nil {
		return f, err
	} else if ok {
		f.Label = &label
	}
	if expl, ok, err := text(attrs, AttrExplanation, feedback.MaxExplanationLen); err != nil {
		return f, err
	} else if ok {
		f.Explanation = &expl
	}
	if v, ok := attrs.Get(AttrScoreValue); ok {
		var score float64
		switch v.Type() {
		case pcommon.ValueTypeDouble:
			score = v.Double()
		case pcommon.ValueTypeInt: // an SDK given 1 rather than 1.0
			score = float64(v.Int())
		default:
			return f, recordErr(AttrScoreValue, "expected a double, got %s", typeName(v.Type()))
		}
		if math.IsNaN(score) || math.IsInf(score, 0) {
			return f, recordErr(AttrScoreValue, "expected a finite number")
		}
		f.Score = &score
	}
	if f.Score == nil && f.Label == nil && f.Explanation == nil {
		return f, recordErr(AttrScoreValue, "an evaluation needs at least one of %s, %s or %s", AttrScoreValue, AttrScoreLabel, AttrExplanation)
	}
	for _, attr := range []string{AttrUserID, AttrEndUserID} {
		user, ok, err := text(attrs, attr, feedback.MaxIdentifierLen)
		if err != nil {
			return f, err
		}
		if ok {
			f.Identifier = user
			break
		}
	}
	f.AnnotatorKind = feedback.DefaultAnnotatorKind
	return f, nil
}

// text returns the string attribute key of attrs, if it is there, checked
// as POST /feedback checks its text fields.
func text(attrs pcommon.Map, key string, maxLen int) (string, bool, error) {
	v, ok := attrs.Get(key)
	if !ok {
		return "", false, nil
	}
	if v.Type() != pcommon.ValueTypeStr {
		return "", false, recordErr(key, "expected a string, got %s", typeName(v.Type()))
	}
	s := v.Str()
	if len(s) > maxLen {
		return "", false, recordErr(key, "at most %d bytes, got %d", maxLen, len(s))
	}
	if !utf8.ValidString(s) {
		return "", false, recordErr(key, "expected valid UTF-8 text")
	}
	return s, true, nil
}

func typeName(t pcommon.ValueType) string {
	switch t {
	case pcommon.ValueTypeStr:
		return "a string"
	case pcommon.ValueTypeInt:
		return "an int"
	case pcommon.ValueTypeDouble:
		return "a double"
	case pcommon.ValueTypeBool:
		return "a bool"
	case pcommon.ValueTypeMap:
		return "a map"
	case pcommon.ValueTypeSlice:
		return "an array"
	case pcommon.ValueTypeBytes:
		return "bytes"
	}
	return "no value"
}

// quote quotes s for a message, cut to 64 bytes.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// Result is what FromLogs found in an export.
type Result struct {
	// Feedback is the feedback of the valid evaluation events, in order.
	Feedback []feedback.Feedback
	// NotEvaluation counts the log records that are not evaluation
	// events; Invalid the evaluation events that cannot be taken.
	NotEvaluation, Invalid int
	// First is the first record rejected and why, as
	// "resource_logs[i].scope_logs[j].log_records[k]: reason"; "" when
	// none was.
	First string
}

// Rejected is the number of log records rejected.
func (r Result) Rejected() int { return r.NotEvaluation + r.Invalid }

// Message is the partial success's error message: how many records were
// rejected and the first problem; "" when none was.
func (r Result) Message() string {
	if r.Rejected() == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d log records rejected (%d not %s events, %d invalid); the first: %s",
		r.Rejected(), r.Rejected()+len(r.Feedback), r.NotEvaluation, EventName, r.Invalid, r.First)
}

// FromLogs returns the feedback of the evaluation events in ld, at most max
// of them (those past it are rejected), and what it rejected.
func FromLogs(ld plog.Logs, max int) Result {
	var res Result
	reject := func(i, j, k int, err error) {
		if res.First == "" {
			res.First = fmt.Sprintf("resource_logs[%d].scope_logs[%d].log_records[%d]: %v", i, j, k, err)
		}
	}
	for i, rl := range ld.ResourceLogs().All() {
		for j, sl := range rl.ScopeLogs().All() {
			for k, rec := range sl.LogRecords().All() {
				f, err := Feedback(rec)
				switch {
				case errors.Is(err, ErrNotEvaluation):
					res.NotEvaluation++
					if n := eventName(rec); n != "" {
						err = fmt.Errorf("event %s is %w", quote(n), err)
					} else {
						err = fmt.Errorf("a log record with no event name is %w", err)
					}
					reject(i, j, k, err)
				case err != nil:
					res.Invalid++
					reject(i, j, k, err)
				case len(res.Feedback) >= max:
					res.Invalid++
					reject(i, j, k, fmt.Errorf("the export holds more than %d %s events, the most the proxy takes at once; send smaller batches", max, EventName))
				default:
					res.Feedback = append(res.Feedback, f)
				}
			}
		}
	}
	return res
}
