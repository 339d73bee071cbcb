//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// vercelAISDK is the instrumentation of the TypeScript app e2e/apps/ts: the
// Vercel AI SDK's own OpenTelemetry spans (experimental_telemetry), exported
// by the OpenTelemetry JS SDK.
const vercelAISDK = "vercel-ai-sdk"

// tsAppDir is the TypeScript app; scripts/ts-app.sh installs its
// node_modules (npm ci) from its package-lock.json.
const tsAppDir = "apps/ts"

// typeScript reports whether the cell runs the TypeScript app.
func (o appOptions) typeScript() bool { return o.Instrumentation == vercelAISDK }

// startTSApp runs e2e/apps/ts/app.ts with the tsx the lockfile pins, with
// the flags of app.py that it has.
func startTSApp(t *testing.T, p *proxy.Proxy, llmURL string, opts appOptions) *app {
	t.Helper()
	dir, err := filepath.Abs(tsAppDir)
	if err != nil {
		t.Fatal(err)
	}
	tsx := filepath.Join(dir, "node_modules", ".bin", "tsx")
	if _, err := os.Stat(tsx); err != nil {
		t.Fatalf("%v: the TypeScript app is not installed; run scripts/e2e.sh (or make e2e), which runs scripts/ts-app.sh (npm ci)", err)
	}
	if opts.Exporter != "http" || opts.Provider != "" || opts.PrintEarly || opts.LingerMS > 0 {
		t.Fatalf("the TypeScript app runs against OpenAI, exports over HTTP and prints after the flush only, not %+v", opts)
	}
	args := []string{"app.ts", "--call", opts.Call, "--exporter", "http", "--base-url", llmURL,
		"--question", llmserver.BouvetQuestion, "--endpoint", "http://" + p.Addrs().OTLPHTTP}
	if opts.Project != "" {
		args = append(args, "--project", opts.Project)
	}
	if opts.ScheduleDelayMS > 0 {
		args = append(args, "--schedule-delay-ms", strconv.Itoa(opts.ScheduleDelayMS))
	}
	return launch(t, opts, tsx, dir, args)
}

// llmParent is the indexed span's parent; a zero span when there is none.
func (tr traceShape) llmParent() phoenix.Span {
	if tr.llm != nil {
		for _, s := range tr.spans {
			if s.Context.SpanID == tr.llm.ParentID {
				return s
			}
		}
	}
	return phoenix.Span{}
}

// checkVercelShape checks the trace of the TypeScript app: handle_request >
// ai.generateText > ai.generateText.doGenerate (ai.streamText >
// ai.streamText.doStream when streaming), with no HTTP client span (Node's
// fetch is not instrumented). The proxy must have indexed the inner span,
// the provider call, which alone carries gen_ai.response.id (and
// ai.response.id); the outer span carries neither. Phoenix must not
// classify any other span as an LLM span. It returns the attribute the id
// is in.
func checkVercelShape(t *testing.T, tr traceShape, call, responseID string) string {
	t.Helper()
	outer := "ai.generateText"
	if strings.HasSuffix(call, "-stream") {
		outer = "ai.streamText"
	}
	inner := outer + ".doGenerate"
	if outer == "ai.streamText" {
		inner = outer + ".doStream"
	}
	if tr.root == nil || tr.llm == nil {
		t.Fatalf("want %s > %s > %s in Phoenix, got %s", rootSpanName, outer, inner, describeSpans(tr.spans))
	}
	parent := tr.llmParent()
	if tr.llm.Name != inner || parent.Name != outer || parent.ParentID != tr.root.Context.SpanID || len(tr.spans) != 3 {
		t.Fatalf("want %s > %s > %s (indexed) in Phoenix, got %s with %s indexed",
			rootSpanName, outer, inner, describeSpans(tr.spans), tr.llm.Name)
	}
	if tr.child != nil {
		t.Errorf("the indexed span %s has a child %s: %s", tr.llm.Name, tr.child.Name, describeSpans(tr.spans))
	}
	for _, key := range []string{"gen_ai.response.id", "ai.response.id"} {
		if v, _ := tr.llm.Attributes[key].(string); v != responseID {
			t.Errorf("%s's %s = %q, want %s", tr.llm.Name, key, v, responseID)
		}
		if v, ok := parent.Attributes[key]; ok {
			t.Errorf("%s carries %s = %v too; it did not in the installed SDK: assert the new shape", outer, key, v)
		}
	}
	for _, s := range llmKind(tr.spans) {
		if s.Context.SpanID != tr.llm.Context.SpanID {
			t.Errorf("Phoenix classifies %s as an LLM span, beside the indexed %s: %s", s.Name, tr.llm.Name, describeSpans(tr.spans))
		}
	}
	in := responseIDIn(*tr.llm, responseID)
	if in == "" {
		t.Errorf("the indexed span in Phoenix does not carry the response id %s", responseID)
	}
	return in
}
