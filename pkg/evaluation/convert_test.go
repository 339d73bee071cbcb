package evaluation

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// event returns an evaluation event as the Python SDK 1.45 emits one:
// event_name set, the conventions' attributes, then edit's changes.
func event(edit func(rec plog.LogRecord)) plog.LogRecord {
	rec := plog.NewLogRecord()
	rec.SetEventName(EventName)
	a := rec.Attributes()
	a.PutStr(AttrResponseID, "chatcmpl-abc")
	a.PutStr(AttrEvaluationName, "user feedback")
	a.PutDouble(AttrScoreValue, 1)
	a.PutStr(AttrScoreLabel, "thumbs-up")
	if edit != nil {
		edit(rec)
	}
	return rec
}

func ptr[T any](v T) *T { return &v }

func TestFeedback(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  plog.LogRecord
		// want is checked against the feedback when err is "".
		want feedback.Feedback
		// err is the attribute the *RecordError must name, or "not" for
		// ErrNotEvaluation.
		err string
	}{
		{name: "event_name field", rec: event(nil), want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback",
			Label: ptr("thumbs-up"), Score: ptr(1.0), AnnotatorKind: "HUMAN"}},
		{name: "event.name attribute, as SDKs before OTLP 1.5 send it", rec: event(func(r plog.LogRecord) {
			r.SetEventName("")
			r.Attributes().PutStr(AttrEventName, EventName)
		}), want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback", Label: ptr("thumbs-up"), Score: ptr(1.0), AnnotatorKind: "HUMAN"}},
		{name: "the field wins over the attribute", rec: event(func(r plog.LogRecord) {
			r.SetEventName("gen_ai.client.inference.operation.details")
			r.Attributes().PutStr(AttrEventName, EventName)
		}), err: "not"},
		{name: "no event name", rec: event(func(r plog.LogRecord) { r.SetEventName("") }), err: "not"},
		{name: "another event", rec: event(func(r plog.LogRecord) { r.SetEventName("gen_ai.client.operation.exception") }), err: "not"},
		{name: "event.name not a string", rec: event(func(r plog.LogRecord) {
			r.SetEventName("")
			r.Attributes().PutInt(AttrEventName, 1)
		}), err: "not"},
		{name: "every attribute", rec: event(func(r plog.LogRecord) {
			a := r.Attributes()
			a.PutStr(AttrEvaluationName, "Relevance")
			a.PutDouble(AttrScoreValue, 4.5)
			a.PutStr(AttrScoreLabel, "relevant")
			a.PutStr(AttrExplanation, "on topic")
			a.PutStr(AttrUserID, "user-42")
		}), want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "Relevance", Label: ptr("relevant"), Score: ptr(4.5),
			Explanation: ptr("on topic"), Identifier: "user-42", AnnotatorKind: "HUMAN"}},
		{name: "no evaluation name: the default", rec: event(func(r plog.LogRecord) { r.Attributes().Remove(AttrEvaluationName) }),
			want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: feedback.DefaultName, Label: ptr("thumbs-up"), Score: ptr(1.0), AnnotatorKind: "HUMAN"}},
		{name: "score as an int", rec: event(func(r plog.LogRecord) { r.Attributes().PutInt(AttrScoreValue, 0) }),
			want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback", Label: ptr("thumbs-up"), Score: ptr(0.0), AnnotatorKind: "HUMAN"}},
		{name: "label only", rec: event(func(r plog.LogRecord) { r.Attributes().Remove(AttrScoreValue) }),
			want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback", Label: ptr("thumbs-up"), AnnotatorKind: "HUMAN"}},
		{name: "explanation only", rec: event(func(r plog.LogRecord) {
			r.Attributes().Remove(AttrScoreValue)
			r.Attributes().Remove(AttrScoreLabel)
			r.Attributes().PutStr(AttrExplanation, "too long")
		}), want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback", Explanation: ptr("too long"), AnnotatorKind: "HUMAN"}},
		{name: "enduser.id when there is no user.id", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrEndUserID, "alice") }),
			want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback", Label: ptr("thumbs-up"), Score: ptr(1.0), Identifier: "alice", AnnotatorKind: "HUMAN"}},
		{name: "user.id wins over enduser.id", rec: event(func(r plog.LogRecord) {
			r.Attributes().PutStr(AttrEndUserID, "alice")
			r.Attributes().PutStr(AttrUserID, "u-1")
		}), want: feedback.Feedback{ResponseID: "chatcmpl-abc", Name: "user feedback", Label: ptr("thumbs-up"), Score: ptr(1.0), Identifier: "u-1", AnnotatorKind: "HUMAN"}},

		{name: "no response id", rec: event(func(r plog.LogRecord) { r.Attributes().Remove(AttrResponseID) }), err: AttrResponseID},
		{name: "empty response id", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrResponseID, "") }), err: AttrResponseID},
		{name: "response id not a string", rec: event(func(r plog.LogRecord) { r.Attributes().PutInt(AttrResponseID, 7) }), err: AttrResponseID},
		{name: "response id too long", rec: event(func(r plog.LogRecord) {
			r.Attributes().PutStr(AttrResponseID, strings.Repeat("x", feedback.MaxResponseIDLen+1))
		}), err: AttrResponseID},
		{name: "response id not UTF-8", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrResponseID, "chatcmpl-\xff") }), err: AttrResponseID},
		{name: "score a string", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrScoreValue, "1") }), err: AttrScoreValue},
		{name: "score NaN", rec: event(func(r plog.LogRecord) { r.Attributes().PutDouble(AttrScoreValue, math.NaN()) }), err: AttrScoreValue},
		{name: "score infinite", rec: event(func(r plog.LogRecord) { r.Attributes().PutDouble(AttrScoreValue, math.Inf(-1)) }), err: AttrScoreValue},
		{name: "no score, label nor explanation", rec: event(func(r plog.LogRecord) {
			r.Attributes().Remove(AttrScoreValue)
			r.Attributes().Remove(AttrScoreLabel)
		}), err: AttrScoreValue},
		{name: "label not a string", rec: event(func(r plog.LogRecord) { r.Attributes().PutBool(AttrScoreLabel, true) }), err: AttrScoreLabel},
		{name: "label too long", rec: event(func(r plog.LogRecord) {
			r.Attributes().PutStr(AttrScoreLabel, strings.Repeat("x", feedback.MaxLabelLen+1))
		}), err: AttrScoreLabel},
		{name: "explanation too long", rec: event(func(r plog.LogRecord) {
			r.Attributes().PutStr(AttrExplanation, strings.Repeat("x", feedback.MaxExplanationLen+1))
		}), err: AttrExplanation},
		{name: "explanation not UTF-8", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrExplanation, "\xc3") }), err: AttrExplanation},
		{name: "name reserved by Phoenix", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrEvaluationName, "note") }), err: AttrEvaluationName},
		{name: "name too long", rec: event(func(r plog.LogRecord) {
			r.Attributes().PutStr(AttrEvaluationName, strings.Repeat("x", feedback.MaxNameLen+1))
		}), err: AttrEvaluationName},
		{name: "user id a map", rec: event(func(r plog.LogRecord) { r.Attributes().PutEmptyMap(AttrUserID) }), err: AttrUserID},
		{name: "the evaluation failed", rec: event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrErrorType, "timeout") }), err: AttrErrorType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Feedback(tc.rec)
			switch tc.err {
			case "":
				if err != nil {
					t.Fatalf("Feedback: %v", err)
				}
				assertFeedback(t, f, tc.want)
			case "not":
				if !errors.Is(err, ErrNotEvaluation) {
					t.Fatalf("Feedback = %+v, %v; want ErrNotEvaluation", f, err)
				}
			default:
				var rerr *RecordError
				if !errors.As(err, &rerr) || rerr.Attribute != tc.err {
					t.Fatalf("Feedback = %+v, %v; want a *RecordError on %s", f, err, tc.err)
				}
			}
		})
	}
}

func assertFeedback(t *testing.T, got, want feedback.Feedback) {
	t.Helper()
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	num := func(p *float64) any {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	if got.ResponseID != want.ResponseID || got.Name != want.Name || got.Identifier != want.Identifier ||
		got.AnnotatorKind != want.AnnotatorKind || str(got.Label) != str(want.Label) ||
		str(got.Explanation) != str(want.Explanation) || num(got.Score) != num(want.Score) ||
		got.Thumbs != "" || got.Metadata != nil {
		t.Errorf("got  id=%q name=%q identifier=%q kind=%q label=%s score=%v explanation=%s thumbs=%q metadata=%v\n"+
			"want id=%q name=%q identifier=%q kind=%q label=%s score=%v explanation=%s",
			got.ResponseID, got.Name, got.Identifier, got.AnnotatorKind, str(got.Label), num(got.Score), str(got.Explanation), got.Thumbs, got.Metadata,
			want.ResponseID, want.Name, want.Identifier, want.AnnotatorKind, str(want.Label), num(want.Score), str(want.Explanation))
	}
}

// logsOf puts records in resources and scopes: shape[i][j] is how many
// records scope j of resource i holds; record n of the whole export is
// made by mk(n).
func logsOf(shape [][]int, mk func(n int) plog.LogRecord) plog.Logs {
	ld := plog.NewLogs()
	n := 0
	for _, scopes := range shape {
		rl := ld.ResourceLogs().AppendEmpty()
		for _, records := range scopes {
			sl := rl.ScopeLogs().AppendEmpty()
			for range records {
				mk(n).CopyTo(sl.LogRecords().AppendEmpty())
				n++
			}
		}
	}
	return ld
}

func TestFromLogs(t *testing.T) {
	plain := func() plog.LogRecord {
		r := plog.NewLogRecord()
		r.Body().SetStr("GET /healthz 200")
		return r
	}
	noID := event(func(r plog.LogRecord) { r.Attributes().Remove(AttrResponseID) })
	for _, tc := range []struct {
		name    string
		ld      plog.Logs
		max     int
		check   func(t *testing.T, res Result)
		message string // what Message must hold; "" for none
	}{
		{name: "empty export", ld: plog.NewLogs(), check: func(t *testing.T, res Result) {
			if len(res.Feedback) != 0 || res.Rejected() != 0 {
				t.Errorf("got %+v; want nothing", res)
			}
		}},
		{name: "all evaluations, in order", ld: logsOf([][]int{{2, 1}, {1}}, func(n int) plog.LogRecord {
			return event(func(r plog.LogRecord) { r.Attributes().PutStr(AttrResponseID, "chatcmpl-"+string(rune('a'+n))) })
		}), check: func(t *testing.T, res Result) {
			var ids []string
			for _, f := range res.Feedback {
				ids = append(ids, f.ResponseID)
			}
			if got := strings.Join(ids, ","); got != "chatcmpl-a,chatcmpl-b,chatcmpl-c,chatcmpl-d" || res.Rejected() != 0 {
				t.Errorf("got %s, %d rejected; want the four in order", got, res.Rejected())
			}
		}},
		{name: "plain logs are rejected, the first named", ld: logsOf([][]int{{1}, {0, 3}}, func(n int) plog.LogRecord {
			if n == 2 {
				return plain()
			}
			if n == 3 {
				return noID
			}
			return event(nil)
		}), message: "2 of 4 log records rejected (1 not gen_ai.evaluation.result events, 1 invalid); the first: resource_logs[1].scope_logs[1].log_records[1]: a log record with no event name is not a gen_ai.evaluation.result event",
			check: func(t *testing.T, res Result) {
				if len(res.Feedback) != 2 || res.NotEvaluation != 1 || res.Invalid != 1 {
					t.Errorf("got %d feedback, %d not evaluations, %d invalid; want 2, 1, 1", len(res.Feedback), res.NotEvaluation, res.Invalid)
				}
			}},
		{name: "another event is named", ld: logsOf([][]int{{1}}, func(int) plog.LogRecord {
			return event(func(r plog.LogRecord) { r.SetEventName("gen_ai.client.inference.operation.details") })
		}), message: `the first: resource_logs[0].scope_logs[0].log_records[0]: event "gen_ai.client.inference.operation.details" is not a gen_ai.evaluation.result event: this endpoint takes only those`},
		{name: "an invalid event says which attribute", ld: logsOf([][]int{{1}}, func(int) plog.LogRecord { return noID }),
			message: "resource_logs[0].scope_logs[0].log_records[0]: gen_ai.response.id: required"},
		{name: "past max", max: 2, ld: logsOf([][]int{{3}}, func(int) plog.LogRecord { return event(nil) }),
			message: "1 of 3 log records rejected (0 not gen_ai.evaluation.result events, 1 invalid); the first: resource_logs[0].scope_logs[0].log_records[2]: the export holds more than 2",
			check: func(t *testing.T, res Result) {
				if len(res.Feedback) != 2 {
					t.Errorf("got %d feedback; want 2", len(res.Feedback))
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.max == 0 {
				tc.max = MaxPerExport
			}
			res := FromLogs(tc.ld, tc.max)
			if tc.check != nil {
				tc.check(t, res)
			}
			msg := res.Message()
			if (tc.message == "") != (msg == "") || !strings.Contains(msg, tc.message) {
				t.Errorf("Message() = %q; want one holding %q", msg, tc.message)
			}
		})
	}
}

// never is a resolver that knows no span, and an annotator that is never
// called: feedback stays pending.
type never struct{}

func (never) Lookup(string) (index.Span, bool) { return index.Span{}, false }
func (never) AnnotateSpans(context.Context, []phoenix.SpanAnnotation) ([]string, error) {
	return nil, errors.New("not called")
}

// newService returns a feedback service in memory, shut down when the test
// ends.
func newService(t testing.TB, cfg feedback.Config) *feedback.Service {
	t.Helper()
	svc, err := feedback.New(cfg, never{}, never{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return svc
}

// TestFeedbackSubmits checks that what Feedback returns is what the
// feedback service takes, at the edges of every bound: an event FromLogs
// passes must never get the whole export refused.
func TestFeedbackSubmits(t *testing.T) {
	svc := newService(t, feedback.Config{})
	edits := []func(a pcommon.Map){
		func(a pcommon.Map) { a.PutStr(AttrResponseID, strings.Repeat("r", feedback.MaxResponseIDLen)) },
		func(a pcommon.Map) { a.PutStr(AttrEvaluationName, strings.Repeat("n", feedback.MaxNameLen)) },
		func(a pcommon.Map) { a.PutStr(AttrScoreLabel, strings.Repeat("l", feedback.MaxLabelLen)) },
		func(a pcommon.Map) { a.PutStr(AttrExplanation, strings.Repeat("é", feedback.MaxExplanationLen/2)) },
		func(a pcommon.Map) { a.PutStr(AttrUserID, strings.Repeat("u", feedback.MaxIdentifierLen)) },
		func(a pcommon.Map) { a.PutDouble(AttrScoreValue, -math.MaxFloat64) },
		func(a pcommon.Map) { a.PutInt(AttrScoreValue, math.MinInt64) },
		func(a pcommon.Map) { a.Remove(AttrEvaluationName) },
		func(a pcommon.Map) { a.PutStr(AttrEvaluationName, "") },
		func(a pcommon.Map) { a.Remove(AttrScoreValue); a.Remove(AttrScoreLabel); a.PutStr(AttrExplanation, "") },
		func(a pcommon.Map) { a.PutStr(AttrScoreLabel, "") },
		func(a pcommon.Map) { a.PutStr(AttrUserID, "") },
	}
	for i, edit := range edits {
		f, err := Feedback(event(func(r plog.LogRecord) { edit(r.Attributes()) }))
		if err != nil {
			t.Fatalf("edit %d: Feedback: %v", i, err)
		}
		if _, err := svc.Submit([]feedback.Feedback{f}); err != nil {
			t.Errorf("edit %d: Submit refused what Feedback returned: %v", i, err)
		}
	}
}
