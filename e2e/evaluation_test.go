//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/evaluation"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// evaluateOptions are the flags of e2e/apps/evaluate.py, which emits a
// gen_ai.evaluation.result event with the OpenTelemetry Python SDK's logs
// API and its real OTLP log exporter.
type evaluateOptions struct {
	Exporter           string // http or grpc
	Plain              bool   // an ordinary log line instead
	EventNameAttribute bool   // event.name attribute instead of the event_name field
	Token              string
	ResponseID, Name   string
	Label, Explanation string
	UserID             string
	Score              *float64
}

// evaluateResult is the JSON line evaluate.py prints.
type evaluateResult struct {
	Exported int `json:"exported"`
	Failed   int `json:"failed"`
}

// runEvaluate runs evaluate.py against the proxy and returns what it
// printed; wantOK says whether it must exit cleanly (every record exported).
func runEvaluate(t *testing.T, p *proxy.Proxy, o evaluateOptions, wantOK bool) evaluateResult {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("apps", "evaluate.py"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script, "--exporter", o.Exporter}
	switch o.Exporter {
	case "http":
		args = append(args, "--endpoint", "http://"+p.Addrs().OTLPHTTP)
	case "grpc":
		args = append(args, "--endpoint", p.Addrs().OTLPGRPC)
	default:
		t.Fatalf("unknown exporter %q", o.Exporter)
	}
	for flag, v := range map[string]string{"--token": o.Token, "--response-id": o.ResponseID, "--name": o.Name,
		"--label": o.Label, "--explanation": o.Explanation, "--user-id": o.UserID} {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	if o.Score != nil {
		args = append(args, "--score", strconv.FormatFloat(*o.Score, 'g', -1, 64))
	}
	if o.Plain {
		args = append(args, "--plain")
	}
	if o.EventNameAttribute {
		args = append(args, "--event-name-attribute")
	}
	appSlots <- struct{}{}
	defer func() { <-appSlots }()
	ctx, cancel := context.WithTimeout(context.Background(), appTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), args...)
	cmd.Env = appEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if (err == nil) != wantOK {
		t.Fatalf("evaluate.py %v: %v (want it to succeed: %v)\nstdout: %s\nstderr:\n%s", args[1:], err, wantOK, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("evaluate.py stderr:\n%s", stderr.String())
	}
	var res evaluateResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("evaluate.py printed %q, want a JSON line (%v)", stdout.String(), err)
	}
	return res
}

// TestEvaluationEvent: a real traced LLM call, then the user's verdict on
// it sent as a gen_ai.evaluation.result event by the OpenTelemetry Python
// SDK, over OTLP/HTTP (the event_name field) and OTLP/gRPC (the event.name
// attribute, as older SDKs send it): each becomes an annotation on the LLM
// span in Phoenix, as POST /feedback would have written it.
func TestEvaluationEvent(t *testing.T) {
	p := startProxy(t, nil)
	llm, _ := startLLM(t)
	res := runApp(t, p, llm.BaseURL(llmserver.ProviderOpenAI), appOptions{Instrumentation: "openai-v2", Call: "chat", Exporter: "http"})
	st := waitIndexed(t, p, res.ResponseID)

	type verdict struct {
		opts  evaluateOptions
		score float64
	}
	verdicts := []verdict{
		{opts: evaluateOptions{Exporter: "http", Label: "thumbs-up", Explanation: "short and right", UserID: "user-http"}, score: 1},
		{opts: evaluateOptions{Exporter: "grpc", EventNameAttribute: true, Label: "thumbs-down", UserID: "user-grpc"}, score: 0},
	}
	for _, v := range verdicts {
		v.opts.ResponseID, v.opts.Name, v.opts.Score = res.ResponseID, "helpfulness", &v.score
		if got := runEvaluate(t, p, v.opts, true); got.Exported != 1 {
			t.Fatalf("evaluate.py over %s exported %d records, want 1", v.opts.Exporter, got.Exported)
		}
	}

	c := phoenixClient(t)
	eventually(t, phoenixWait, "both annotations on the LLM span in Phoenix", func() (bool, string) {
		anns := annotationsOn(t, c, st.Span.Project, st.Span.SpanID)
		return len(anns) == len(verdicts), fmt.Sprintf("%+v", anns)
	})
	anns := annotationsOn(t, c, st.Span.Project, st.Span.SpanID)
	for _, v := range verdicts {
		var found bool
		for _, a := range anns {
			if a.Identifier != v.opts.UserID {
				continue
			}
			found = true
			expl := ""
			if a.Result.Explanation != nil {
				expl = *a.Result.Explanation
			}
			if a.Name != "helpfulness" || a.AnnotatorKind != "HUMAN" || a.Result.Label == nil || *a.Result.Label != v.opts.Label ||
				a.Result.Score == nil || *a.Result.Score != v.score || expl != v.opts.Explanation || a.Metadata["response_id"] != res.ResponseID {
				t.Errorf("%s: annotation %+v (result %s, explanation %q); want helpfulness/HUMAN label %q score %v explanation %q, metadata.response_id %s",
					v.opts.Exporter, a, describe(a.Result.Label, a.Result.Score), expl, v.opts.Label, v.score, v.opts.Explanation, res.ResponseID)
			}
		}
		if !found {
			t.Errorf("%s: no annotation for %s among %+v", v.opts.Exporter, v.opts.UserID, anns)
		}
	}
	for _, transport := range []string{"http", "grpc"} {
		sample := `feedbackproxy_evaluation_log_records_total{outcome="accepted",transport="` + transport + `"}`
		if got := metric(t, p, sample); got != "1" {
			t.Errorf("%s = %q, want 1", sample, got)
		}
	}
	// The proxy's own account agrees: both annotated.
	waitState(t, p, res.ResponseID, string(feedback.Annotated), 10*time.Second)
}

// otherLogs is an export of an ordinary log line and an evaluation event
// without a response id: both are rejected, the first named.
func otherLogs() plog.Logs {
	ld := plog.NewLogs()
	recs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	recs.AppendEmpty().Body().SetStr("GET /healthz 200")
	ev := recs.AppendEmpty()
	ev.SetEventName(evaluation.EventName)
	ev.Attributes().PutStr(evaluation.AttrScoreLabel, "thumbs-up")
	return ld
}

// checkRejected checks a partial success that rejects otherLogs.
func checkRejected(t *testing.T, how string, ps plogotlp.ExportPartialSuccess) {
	t.Helper()
	msg := ps.ErrorMessage()
	if ps.RejectedLogRecords() != 2 || !strings.Contains(msg, "2 of 2 log records rejected") ||
		!strings.Contains(msg, "log_records[0]: a log record with no event name is not a gen_ai.evaluation.result event: this endpoint takes only those") {
		t.Errorf("%s: partial success %d %q; want both records rejected, the first named", how, ps.RejectedLogRecords(), msg)
	}
}

// TestEvaluationOtherLogs: logs that are not evaluation events are answered
// as the README says: accepted with a partial success that rejects them and
// names the first, neither stored nor forwarded. The Python SDK's
// exporters take that as success (they do not read partial_success), so
// the proxy counts them in its metrics and logs them.
func TestEvaluationOtherLogs(t *testing.T) {
	p := startProxy(t, nil)

	if got := runEvaluate(t, p, evaluateOptions{Exporter: "http", Plain: true}, true); got.Exported != 1 {
		t.Errorf("a plain log line over http: exported %d, want 1", got.Exported)
	}
	score := 1.0
	if got := runEvaluate(t, p, evaluateOptions{Exporter: "grpc", Score: &score}, true); got.Exported != 1 {
		t.Errorf("an event without a response id over grpc: exported %d, want 1", got.Exported)
	}
	for sample, want := range map[string]string{
		`feedbackproxy_evaluation_log_records_total{outcome="not_evaluation",transport="http"}`: "1",
		`feedbackproxy_evaluation_log_records_total{outcome="invalid",transport="grpc"}`:        "1",
		`feedbackproxy_feedback_received_total`:                                                 "0",
	} {
		if got := metric(t, p, sample); got != want {
			t.Errorf("%s = %q, want %s", sample, got, want)
		}
	}

	// The exact answers, in each encoding.
	req := plogotlp.NewExportRequestFromLogs(otherLogs())
	for _, enc := range []string{"application/x-protobuf", "application/json"} {
		var body []byte
		var err error
		if enc == "application/json" {
			body, err = req.MarshalJSON()
		} else {
			body, err = req.MarshalProto()
		}
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+p.Addrs().OTLPHTTP+"/v1/logs", enc, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != enc {
			t.Fatalf("POST /v1/logs (%s) = %d %s %s; want 200 in %s", enc, resp.StatusCode, resp.Header.Get("Content-Type"), raw, enc)
		}
		answer := plogotlp.NewExportResponse()
		if enc == "application/json" {
			err = answer.UnmarshalJSON(raw)
		} else {
			err = answer.UnmarshalProto(raw)
		}
		if err != nil {
			t.Fatalf("POST /v1/logs (%s) answered %q: %v", enc, raw, err)
		}
		checkRejected(t, "HTTP "+enc, answer.PartialSuccess())
	}
	cc, err := grpc.NewClient(p.Addrs().OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	answer, err := plogotlp.NewGRPCClient(cc).Export(ctx, req)
	if err != nil {
		t.Fatalf("LogsService/Export: %v", err)
	}
	checkRejected(t, "gRPC", answer.PartialSuccess())
}

// TestEvaluationToken: with --feedback-token, evaluation events need it
// too, as the SDK's exporter headers send it.
func TestEvaluationToken(t *testing.T) {
	p := startProxy(t, func(cfg *proxy.Config) { cfg.Feedback.Token = "s3cret" })
	score := 1.0
	o := evaluateOptions{Exporter: "http", ResponseID: "chatcmpl-token" + randomSuffix(), Score: &score}
	if got := runEvaluate(t, p, o, false); got.Failed != 1 {
		t.Errorf("without the token: %d records failed, want 1", got.Failed)
	}
	o.Token = "s3cret"
	if got := runEvaluate(t, p, o, true); got.Exported != 1 {
		t.Errorf("with the token: exported %d, want 1", got.Exported)
	}
	if st := getFeedbackWithToken(t, p, o.ResponseID, o.Token); len(st.Feedback) != 1 || st.Feedback[0].State != feedback.Pending {
		t.Errorf("GET /feedback/%s = %+v; want one pending feedback", o.ResponseID, st)
	}
}

func getFeedbackWithToken(t *testing.T, p *proxy.Proxy, responseID, token string) feedback.ResponseState {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.Addrs().Feedback+"/feedback/"+responseID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st feedback.ResponseState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestEvaluationDurable: an evaluation event the proxy accepted before its
// span came is on disk, as a POST /feedback would be: it survives a
// restart, and is written once the span passes through.
func TestEvaluationDurable(t *testing.T) {
	dir := t.TempDir()
	onDir := func(cfg *proxy.Config) { cfg.DataDir = dir }
	ct := newChatTrace("")
	t.Run("accepted before the span", func(t *testing.T) {
		p := startProxy(t, onDir) // shut down when this subtest ends
		ld := plog.NewLogs()
		ev := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
		ev.SetEventName(evaluation.EventName)
		ev.Attributes().PutStr(evaluation.AttrResponseID, ct.responseID)
		ev.Attributes().PutStr(evaluation.AttrScoreLabel, "thumbs-up")
		ev.Attributes().PutDouble(evaluation.AttrScoreValue, 1)
		ev.Attributes().PutStr(evaluation.AttrUserID, "user-durable")
		body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+p.Addrs().OTLPHTTP+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer := plogotlp.NewExportResponse()
		if resp.StatusCode != http.StatusOK || answer.UnmarshalProto(raw) != nil || answer.PartialSuccess().RejectedLogRecords() != 0 {
			t.Fatalf("POST /v1/logs = %d %q; want 200 with nothing rejected", resp.StatusCode, raw)
		}
		if st := getFeedback(t, p, ct.responseID); len(st.Feedback) != 1 || st.Feedback[0].State != feedback.Pending {
			t.Fatalf("GET /feedback/%s = %+v; want one pending feedback", ct.responseID, st)
		}
	})
	p := startProxy(t, onDir)
	if st := getFeedback(t, p, ct.responseID); len(st.Feedback) != 1 || st.Feedback[0].State != feedback.Pending {
		t.Fatalf("after a restart, GET /feedback/%s = %+v; want the pending feedback back", ct.responseID, st)
	}
	exportHTTP(t, p, ct.td)
	checkOnlyOnLLMSpan(t, ct, "default", "user-durable", "thumbs-up", 1)
}
