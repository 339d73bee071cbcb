package evaluation

import (
	"errors"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// FuzzFromLogs feeds any logs export that decodes to FromLogs, and what it
// takes to the feedback service: the service must never refuse an item
// FromLogs passed (that would cost the whole export), and every record
// must be counted once, taken or rejected.
func FuzzFromLogs(f *testing.F) {
	seeds := []plog.Logs{
		logsOf([][]int{{2}}, func(int) plog.LogRecord { return event(nil) }),
		logsOf([][]int{{1, 1}}, func(n int) plog.LogRecord {
			return event(func(r plog.LogRecord) {
				r.SetEventName("")
				r.Attributes().PutStr(AttrEventName, EventName)
				r.Attributes().PutStr(AttrExplanation, "because")
				r.Attributes().PutStr(AttrUserID, "u")
				if n == 1 {
					r.Attributes().PutInt(AttrScoreValue, 3)
				}
			})
		}),
		logsOf([][]int{{1}}, func(int) plog.LogRecord { return plog.NewLogRecord() }),
	}
	for _, ld := range seeds {
		b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	svc := newService(f, feedback.Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := plogotlp.NewExportRequest()
		if req.UnmarshalProto(body) != nil {
			return
		}
		res := FromLogs(req.Logs(), MaxPerExport)
		if n := len(res.Feedback) + res.Rejected(); n != req.Logs().LogRecordCount() {
			t.Fatalf("%d records counted; the export holds %d", n, req.Logs().LogRecordCount())
		}
		if res.Rejected() > 0 && res.First == "" {
			t.Fatal("records rejected without a reason")
		}
		if len(res.Feedback) == 0 {
			return
		}
		var ferr *feedback.FieldError
		if _, err := svc.Submit(res.Feedback); errors.As(err, &ferr) {
			t.Fatalf("Submit refused what FromLogs passed: %v", err)
		}
	})
}
