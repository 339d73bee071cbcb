package phoenix

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"gopkg.in/dnaeon/go-vcr.v4/pkg/cassette"
	"gopkg.in/dnaeon/go-vcr.v4/pkg/recorder"
)

// The harness for the recorded tests in client_test.go; how to record is said there and in
// testdata/README.md.

const (
	// replayBaseURL is the Phoenix the cassettes name: recordings made against another address
	// are rewritten to it, so that cassettes do not depend on the port they were recorded on.
	replayBaseURL = "http://127.0.0.1:6006"
	// vcrProject is the Phoenix project the seed spans are exported to.
	vcrProject = "phoenix-client-vcr"
)

// The seed: one trace as an app instrumented two ways would export it, an HTTP server span with
// an OpenTelemetry GenAI chat span and an OpenInference ChatCompletion span under it, plus spans
// that exist only so that each test annotates a span of its own. Fixed ids: the cassettes hold
// them.
const (
	seedTraceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanRoot         = "00f067aa0ba902b7" // "POST /chat"
	spanGenAI        = "1a2b3c4d5e6f7081" // "chat gpt-4o-mini", gen_ai.response.id
	spanOpenInfer    = "2b3c4d5e6f708192" // "ChatCompletion", id only in output.value
	spanAnnotate     = "3c4d5e6f708192a3"
	spanUpsert       = "4d5e6f708192a3b4"
	spanIdentifiers  = "5e6f708192a3b4c5"
	spanReadBack     = "6f708192a3b4c5d6"
	spanBatch        = "708192a3b4c5d6e7"
	spanAnthropic    = "8192a3b4c5d6e7f8" // "anthropic.messages.create", msg_ id in output.value
	spanGoogle       = "92a3b4c5d6e7f809" // "GenerateContent", response_id in output.value
	spanResponses    = "a3b4c5d6e7f8091a" // "Response", resp_ id in output.value
	spanStreamed     = "b4c5d6e7f8091a2b" // "ChatCompletion", streamed: "id" after the answer
	spanDecoy        = "c5d6e7f8091a2b3c" // "ChatCompletion" quoting ids in its text, one nested
	spanNotes        = "d6e7f8091a2b3c4d" // notes are written on it
	unknownSpanID    = "00000000deadbeef"
	unknownTraceID   = "00000000000000000000000000c0ffee"
	genAIResponseID  = "chatcmpl-vcr0001"
	openInferRespID  = "chatcmpl-vcr0002"
	anthropicRespID  = "msg_vcr0003"
	googleRespID     = "vcr0004-gemini"
	responsesRespID  = "resp_vcr0005"
	nestedOnlyID     = "call_vcr0006" // only nested in spanDecoy's output.value, never top level
	streamedRespID   = "chatcmpl-vcr0007"
	decoyRespID      = "chatcmpl-vcr0009"
	vcrSessionID     = "vcr-session-1" // session.id of the root span
	seedStartUnixSec = 1767225600      // 2026-01-01T00:00:00Z
)

func recording() bool { return os.Getenv("PHOENIX_RECORD") == "1" }

// newVCRClient returns a Client whose requests go through a go-vcr recorder on
// testdata/cassettes/<name>.yaml: replayed offline by default, recorded from PHOENIX_URL with
// PHOENIX_RECORD=1. In replay mode the test fails if it left an interaction unplayed.
func newVCRClient(t *testing.T, name string) *Client {
	t.Helper()
	mode := recorder.ModeReplayOnly
	base := replayBaseURL
	if recording() {
		mode = recorder.ModeRecordOnly
		base = strings.TrimRight(os.Getenv("PHOENIX_URL"), "/")
		if base == "" {
			t.Fatal("PHOENIX_RECORD=1 needs PHOENIX_URL, e.g. http://127.0.0.1:6006")
		}
		seedPhoenix(t, base)
	}

	var unplayed []string
	rec, err := recorder.New(filepath.Join("testdata", "cassettes", name),
		recorder.WithMode(mode),
		recorder.WithMatcher(matchMethodURLBody),
		recorder.WithSkipRequestLatency(true),
		recorder.WithHook(func(i *cassette.Interaction) error {
			// Port-independent cassettes, and no churn from volatile values on re-record.
			i.Request.URL = replayBaseURL + strings.TrimPrefix(i.Request.URL, base)
			i.Request.Host = strings.TrimPrefix(replayBaseURL, "http://")
			i.Response.Headers.Del("Date")
			i.Response.Duration = 0
			return nil
		}, recorder.AfterCaptureHook),
		recorder.WithHook(func(i *cassette.Interaction) error {
			if mode == recorder.ModeReplayOnly && !i.WasReplayed() {
				unplayed = append(unplayed, i.Request.String())
			}
			return nil
		}, recorder.OnRecorderStopHook),
	)
	if err != nil {
		t.Fatalf("recorder: %v (record it: see testdata/README.md)", err)
	}
	t.Cleanup(func() {
		if err := rec.Stop(); err != nil {
			t.Errorf("recorder stop: %v", err)
		}
		if len(unplayed) > 0 {
			t.Errorf("cassette %s has interactions the test did not make (re-record it):\n%s", name, strings.Join(unplayed, "\n"))
		}
	})
	c, err := New(Config{BaseURL: base, HTTPClient: &http.Client{Transport: rec, Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// matchMethodURLBody matches on method, full URL (the client sorts query keys) and body bytes
// (encoding/json writes struct fields in declaration order and sorts map keys), nothing else.
func matchMethodURLBody(r *http.Request, i cassette.Request) bool {
	if r.Method != i.Method || r.URL.String() != i.URL {
		return false
	}
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return false
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return string(body) == i.Body
}

var (
	seedOnce sync.Once
	seedErr  error
)

// seedPhoenix exports the seed trace straight to Phoenix's OTLP/HTTP endpoint (not through the
// recorder: replay does not need it) and waits until Phoenix has ingested every span.
func seedPhoenix(t *testing.T, base string) {
	t.Helper()
	seedOnce.Do(func() { seedErr = exportSeed(base) })
	if seedErr != nil {
		t.Fatalf("seeding Phoenix at %s: %v", base, seedErr)
	}
}

func exportSeed(base string) error {
	body, err := ptraceotlp.NewExportRequestFromTraces(seedTraces()).MarshalProto()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("x-project-name", vcrProject)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /v1/traces: %s: %s", resp.Status, msg)
	}

	// Ingest is asynchronous: poll, outside any cassette, until all spans are queryable.
	plain, err := New(Config{BaseURL: base})
	if err != nil {
		return err
	}
	for {
		spans, err := plain.Spans(ctx, vcrProject, SpanQuery{TraceID: seedTraceID, Limit: 100})
		if err == nil && len(spans) == len(seedSpans) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("spans not ingested after 60s (last: %d spans, %v)", len(spans), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type seedSpan struct {
	id, parent, name string
	attrs            map[string]any
}

var seedSpans = []seedSpan{
	{id: spanRoot, name: "POST /chat", attrs: map[string]any{"http.request.method": "POST", "session.id": vcrSessionID}},
	{id: spanGenAI, parent: spanRoot, name: "chat gpt-4o-mini", attrs: map[string]any{
		"gen_ai.operation.name":     "chat",
		"gen_ai.system":             "openai",
		"gen_ai.request.model":      "gpt-4o-mini",
		"gen_ai.response.id":        genAIResponseID,
		"gen_ai.usage.input_tokens": int64(12),
	}},
	{id: spanOpenInfer, parent: spanRoot, name: "ChatCompletion", attrs: map[string]any{
		"openinference.span.kind": "LLM",
		"llm.system":              "openai",
		"llm.model_name":          "gpt-4o-mini",
		"output.mime_type":        "application/json",
		"output.value":            `{"id":"` + openInferRespID + `","object":"chat.completion"}`,
	}},
	{id: spanAnnotate, parent: spanRoot, name: "annotate"},
	{id: spanUpsert, parent: spanRoot, name: "upsert"},
	{id: spanIdentifiers, parent: spanRoot, name: "identifiers"},
	{id: spanReadBack, parent: spanRoot, name: "read back"},
	{id: spanBatch, parent: spanRoot, name: "batch"},
	{id: spanAnthropic, parent: spanRoot, name: "anthropic.messages.create", attrs: map[string]any{
		"openinference.span.kind": "LLM",
		"llm.system":              "anthropic",
		"output.mime_type":        "application/json",
		"output.value": `{"id":"` + anthropicRespID + `","type":"message","role":"assistant",` +
			`"content":[{"type":"text","text":"Southern Ocean"}],"model":"claude-sonnet-4-5"}`,
	}},
	{id: spanGoogle, parent: spanRoot, name: "GenerateContent", attrs: map[string]any{
		"openinference.span.kind": "LLM",
		"llm.system":              "vertexai",
		"output.mime_type":        "application/json",
		"output.value":            `{"candidates":[{"content":{"parts":[{"text":"Southern Ocean"}]}}],"response_id":"` + googleRespID + `"}`,
	}},
	{id: spanResponses, parent: spanRoot, name: "Response", attrs: map[string]any{
		"openinference.span.kind": "LLM",
		"llm.system":              "openai",
		"output.mime_type":        "application/json",
		"output.value":            `{"id":"` + responsesRespID + `","object":"response","output":[{"id":"msg_vcr0005","type":"message"}]}`,
	}},
	{id: spanStreamed, parent: spanRoot, name: "ChatCompletion", attrs: map[string]any{
		"openinference.span.kind": "LLM",
		"llm.system":              "openai",
		"output.mime_type":        "application/json",
		"output.value":            `{"choices":[{"index":0,"message":{"role":"assistant","content":"Southern Ocean"}}],"id":"` + streamedRespID + `"}`,
	}},
	{id: spanDecoy, parent: spanRoot, name: "ChatCompletion", attrs: map[string]any{
		"openinference.span.kind": "LLM",
		"llm.system":              "openai",
		"output.mime_type":        "application/json",
		"output.value": `{"id":"` + decoyRespID + `","choices":[{"message":{"content":"Earlier answers: \"` +
			openInferRespID + `\", \"` + anthropicRespID + `\"","tool_calls":[{"id":"` + nestedOnlyID + `"}]}}]}`,
	}},
	// Last, so that the start times of the others (their index) stay as the cassettes hold them.
	{id: spanNotes, parent: spanRoot, name: "notes"},
}

func seedTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "phoenix-client-vcr")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("phoenix-client-vcr")
	start := time.Unix(seedStartUnixSec, 0).UTC()
	for i, s := range seedSpans {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(traceID(seedTraceID))
		sp.SetSpanID(spanID(s.id))
		if s.parent != "" {
			sp.SetParentSpanID(spanID(s.parent))
		}
		sp.SetName(s.name)
		sp.SetKind(ptrace.SpanKindInternal)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(i) * time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Second)))
		for k, v := range s.attrs {
			switch v := v.(type) {
			case string:
				sp.Attributes().PutStr(k, v)
			case int64:
				sp.Attributes().PutInt(k, v)
			default:
				panic(fmt.Sprintf("seed attribute %s: unsupported %T", k, v))
			}
		}
	}
	return td
}

func mustHex(s string, n int) []byte {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		panic(fmt.Sprintf("bad %d-byte hex id %q", n, s))
	}
	return b
}

func traceID(s string) pcommon.TraceID { return pcommon.TraceID(mustHex(s, 16)) }

func spanID(s string) pcommon.SpanID { return pcommon.SpanID(mustHex(s, 8)) }

// globalID decodes one of Phoenix's relay ids ("U3BhbkFubm90YXRpb246MQ==" is
// "SpanAnnotation:1") into its type and row id.
func globalID(t *testing.T, id string) (typ, row string) {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(id)
	if err != nil {
		t.Fatalf("id %q is not base64: %v", id, err)
	}
	typ, row, ok := strings.Cut(string(b), ":")
	if !ok {
		t.Fatalf("id %q decodes to %q, want Type:row", id, b)
	}
	return typ, row
}
