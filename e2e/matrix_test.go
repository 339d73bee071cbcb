//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/e2e/internal/versions"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// providerCells are the cells of one provider of e2e/apps/app.py: each
// instrumentation, call and exporter.
type providerCells struct {
	provider                           string
	instrumentations, calls, exporters []string
}

// matrix is every provider of e2e/apps/app.py with its instrumentations and
// calls. The other providers than OpenAI export over HTTP only: the exporter
// does not depend on the provider, and the OpenAI cells cover gRPC.
var matrix = []providerCells{
	{"openai", []string{"openinference", "openai-v2"}, []string{"chat", "chat-stream", "responses", "responses-stream"}, []string{"http", "grpc"}},
	// Through the frameworks: app.py calls litellm.completion, or a
	// prompt | ChatOpenAI chain (the Responses API with use_responses_api).
	{"openai", []string{"litellm-openinference", "litellm-openllmetry"}, []string{"chat", "chat-stream"}, []string{"http"}},
	{"openai", []string{langChainOpenInference}, []string{"chat", "chat-stream", "responses", "responses-stream"}, []string{"http"}},
	{"anthropic", []string{"openinference", "openllmetry", "sdk"}, []string{"chat", "chat-stream"}, []string{"http"}},
	{"google", []string{"openinference"}, []string{"chat", "chat-stream"}, []string{"http"}},
	// The TypeScript app (e2e/apps/ts): the Vercel AI SDK's own spans,
	// exported over HTTP by the OpenTelemetry JS SDK.
	{"openai", []string{vercelAISDK}, []string{"chat", "chat-stream", "responses", "responses-stream"}, []string{"http"}},
}

// matrixCells lists the cells in the order of the table. OpenAI's leave
// Provider empty, so that the app runs with the command line it had before
// other providers came.
func matrixCells() []appOptions {
	var cells []appOptions
	for _, m := range matrix {
		provider := m.provider
		if provider == "openai" {
			provider = ""
		}
		for _, inst := range m.instrumentations {
			for _, call := range m.calls {
				for _, exp := range m.exporters {
					cells = append(cells, appOptions{Provider: provider, Instrumentation: inst, Call: call, Exporter: exp})
				}
			}
		}
	}
	return cells
}

// pairOf is the cell's provider/instrumentation/call, without the exporter.
func pairOf(o appOptions) string {
	return o.provider() + "/" + o.Instrumentation + "/" + o.Call
}

// unsupported names the provider/instrumentation/call triples whose trace
// has no span to annotate, and why. Their cells assert the limitation (what
// the instrumentation exports), so that the day it is lifted they fail and
// say to move the cell out of here.
var unsupported = map[string]limitation{
	"openai/openai-v2/responses":                        {reason: openaiV2Responses},
	"openai/openai-v2/responses-stream":                 {reason: openaiV2Responses},
	"openai/litellm-openinference/chat":                 {reason: litellmOpenInference, llmSpan: "completion"},
	"openai/litellm-openinference/chat-stream":          {reason: litellmOpenInference, llmSpan: "completion"},
	"openai/" + langChainOpenInference + "/chat-stream": {reason: langChainChatStream, llmSpan: langChainLLMSpan, appHasNoID: true},
}

// limitation is why a cell has no span to annotate, and what it shows
// instead.
type limitation struct {
	reason string
	// llmSpan names the LLM span the instrumentation makes without the
	// response id; "" when it makes no LLM span at all.
	llmSpan string
	// appHasNoID is set when the framework hands the app no provider id:
	// the app prints the id it has instead (LangChain's run id), and the
	// cell looks for the id the server issued.
	appHasNoID bool
}

// httpSibling names the cells whose HTTP client span is not the LLM span's
// child but its sibling, under the handler, and why. The feedback must still
// land on the LLM span alone; the cell fails when the HTTP span becomes a
// child, and says to move it out of here.
var httpSibling = map[string]string{
	"anthropic/openllmetry/chat":        openllmetryNotCurrent,
	"anthropic/openllmetry/chat-stream": openllmetryNotCurrent,
	"openai/litellm-openllmetry/chat": "opentelemetry-instrumentation-litellm (OpenLLMetry) starts its `litellm.chat` span " +
		"without making it the current span, so LiteLLM's HTTP request is traced beside it",
	"openai/litellm-openllmetry/chat-stream": "opentelemetry-instrumentation-litellm (OpenLLMetry) starts its `litellm.chat` span " +
		"without making it the current span, so LiteLLM's HTTP request is traced beside it",
	"google/openinference/chat-stream": "openinference-instrumentation-google-genai makes its `GenerateContentStream` span " +
		"the current span only until generate_content_stream has returned its generator; google-genai sends the request " +
		"at the first iteration, outside it",
}

const openllmetryNotCurrent = "opentelemetry-instrumentation-anthropic (OpenLLMetry) starts its `anthropic.chat` span " +
	"without making it the current span, so the SDK's HTTP request is traced beside it"

const openaiV2Responses = "opentelemetry-instrumentation-openai-v2 instruments chat completions and embeddings only, " +
	"not the Responses API: the call makes no LLM span, only the HTTP client span, and no span carries the response id"

const litellmOpenInference = "openinference-instrumentation-litellm records the answer's text as `output.value` " +
	"(the ModelResponse's JSON only when there is no text, e.g. tool calls) and the id nowhere else: its LLM span " +
	"`completion` does not carry the response id, nor does any other span"

const langChainChatStream = "langchain-openai builds the streamed message from the chunks without their id, so LangChain " +
	"hands the app no provider id (the app prints the message's own id, LangChain's run id `lc_run--...`) and the " +
	"LLM run `ChatOpenAI` records none: no span carries the id the server issued"

// unsupportedMaxAge is how long the proxy of an unsupported cell keeps the
// feedback waiting for a span that never comes.
const unsupportedMaxAge = 3 * time.Second

// matrixDoc is the committed table the matrix checks itself against.
const matrixDoc = "../docs/e2e-matrix.md"

// cellResult is what one cell observed; it becomes a row of the table, so
// it holds nothing that changes from run to run.
type cellResult struct {
	opts      appOptions
	supported bool
	trace     string // the span tree as Phoenix shows it
	idIn      string // the attribute of the LLM span that carries the response id
	feedback  string // what became of the feedback
	reason    string // why the cell is unsupported
}

// TestMatrix runs the real app for each cell against its own proxy, sends
// feedback by the response id the app printed, and checks in Phoenix that
// exactly one annotation is on the LLM span and none on its parent or child.
// It then checks docs/e2e-matrix.md against what it observed, or writes it
// with E2E_WRITE_MATRIX=1.
func TestMatrix(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		results = map[string]cellResult{}
	)
	runCases(t, matrixCells(), appOptions.String, func(t *testing.T, opts appOptions) {
		r := runCell(t, opts)
		mu.Lock()
		results[opts.String()] = r
		mu.Unlock()
	})
	checkMatrixDoc(t, results)
}

func runCell(t *testing.T, opts appOptions) cellResult {
	lim, limited := unsupported[pairOf(opts)]
	p := startProxy(t, func(cfg *proxy.Config) {
		if limited {
			cfg.Feedback.MaxAge = unsupportedMaxAge
		}
	})
	llm, _ := startLLM(t)
	res := runApp(t, p, llm.BaseURL(opts.llmProvider()), opts)
	issued := llm.LastIDOf(opts.llmProvider())
	switch {
	case lim.appHasNoID && issued == res.ResponseID:
		t.Fatalf("%s was listed as handing the app no provider id (%s), but the app printed the id the LLM server issued, %q. "+
			"Move the cell out of `unsupported` in e2e/matrix_test.go and regenerate the table: "+
			"E2E_WRITE_MATRIX=1 scripts/e2e.sh -run TestMatrix ./e2e/", opts, lim.reason, issued)
	case !lim.appHasNoID && issued != res.ResponseID:
		t.Fatalf("the app printed response id %q, the LLM server issued %q", res.ResponseID, issued)
	}
	if limited {
		return unsupportedCell(t, p, opts, issued, res.TraceID, lim)
	}

	// The app flushed its spans before exiting; the proxy answered them once
	// on disk, and indexes them once Phoenix took their batch.
	st := waitIndexed(t, p, res.ResponseID)
	if st.Span.TraceID != res.TraceID {
		t.Fatalf("after the app exported, GET /feedback/%s = %+v, want indexed in trace %s", res.ResponseID, st, res.TraceID)
	}
	v := vote{identifier: "user-" + strings.ReplaceAll(opts.String(), "/", "-"), up: opts.Exporter == "http"}
	fst := sendVote(t, p, res.ResponseID, v)
	if fst.SpanID != st.Span.SpanID {
		t.Errorf("POST /feedback resolved to span %q, GET said %q", fst.SpanID, st.Span.SpanID)
	}

	c := phoenixClient(t)
	tr := shapeOf(waitTrace(t, c, "default", res.TraceID, minSpans(opts)), st.Span.SpanID)
	on, idIn, others := "the LLM span", "", ""
	switch {
	case opts.typeScript():
		idIn = checkVercelShape(t, tr, opts.Call, res.ResponseID)
		on, others = "`"+tr.llm.Name+"`", "`"+tr.llmParent().Name+"` and `"+rootSpanName+"`"
	case opts.Instrumentation == langChainOpenInference:
		idIn = checkLangChainShape(t, tr, res.ResponseID)
		on, others = "`"+langChainLLMSpan+"`", "the other 4 spans, `"+langChainChainSpan+"` (which carries the id too) included"
	case httpSibling[pairOf(opts)] != "":
		idIn, others = checkLLMShapeSibling(t, tr, res.ResponseID), "its parent and the HTTP span beside it"
	default:
		idIn, others = checkLLMShape(t, tr, res.ResponseID), "its parent and child"
	}
	waitVotes(t, c, "default", tr, []vote{v})
	waitState(t, p, res.ResponseID, string(feedback.Annotated), 10*time.Second)
	return cellResult{
		opts: opts, supported: true, trace: treeOf(tr.spans), idIn: "`" + idIn + "`",
		feedback: "`annotated`: 1 annotation on " + on + ", 0 on " + others,
	}
}

// unsupportedCell asserts what makes the cell unsupported: no span with the
// response id the server issued (responseID) and no LLM span but the one
// the limitation names, so that the proxy cannot index the id and the
// feedback expires, reported as such.
func unsupportedCell(t *testing.T, p *proxy.Proxy, opts appOptions, responseID, traceID string, lim limitation) cellResult {
	c := phoenixClient(t)
	code, st := getFeedbackCode(t, p, responseID)
	spans := waitTrace(t, c, "default", traceID, minSpans(opts))
	var lifted []string
	if st.Indexed || code != http.StatusNotFound {
		lifted = append(lifted, fmt.Sprintf("GET /feedback/%s answers %d %+v", responseID, code, st))
	}
	if llms := llmKind(spans); (lim.llmSpan == "" && len(llms) > 0) || (lim.llmSpan != "" && (len(llms) != 1 || llms[0].Name != lim.llmSpan)) {
		lifted = append(lifted, fmt.Sprintf("Phoenix shows LLM spans %s (the cell expects %q)", describeSpans(llms), lim.llmSpan))
	}
	if where := carriesID(spans, responseID); len(where) > 0 {
		lifted = append(lifted, "the response id is in "+strings.Join(where, ", "))
	}
	if len(lifted) > 0 {
		t.Fatalf("%s was listed as unsupported (%s), but now %s. Move the cell out of `unsupported` in e2e/matrix_test.go "+
			"and regenerate the table: E2E_WRITE_MATRIX=1 scripts/e2e.sh -run TestMatrix ./e2e/", opts, lim.reason, strings.Join(lifted, "; "))
	}

	fst := sendVote(t, p, responseID, vote{identifier: "user-unsupported", up: true})
	if fst.State != feedback.Pending || fst.SpanID != "" {
		t.Errorf("POST /feedback = %+v, want pending without a span", fst)
	}
	end := waitState(t, p, responseID, string(feedback.Expired), unsupportedMaxAge+10*time.Second)
	t.Logf("feedback ended expired: %s", end.Feedback[0].Reason)
	if got := metric(t, p, `feedbackproxy_feedback_total{outcome="expired"}`); got != "1" {
		t.Errorf(`feedbackproxy_feedback_total{outcome="expired"} = %q, want 1`, got)
	}
	if anns := annotationsOfTrace(t, c, "default", traceShape{spans: spans}); len(anns) != 0 {
		t.Errorf("the trace has annotations: %s", describeAnnotations(anns))
	}
	return cellResult{
		opts: opts, trace: treeOf(spans), idIn: "nowhere", reason: lim.reason,
		feedback: "not indexed (`GET /feedback` 404); `expired` after `Feedback.MaxAge`",
	}
}

// The LangChain cells: app.py's prompt | ChatOpenAI chain, traced by
// openinference-instrumentation-langchain.
const (
	langChainOpenInference = "langchain-openinference"
	langChainChainSpan     = "RunnableSequence" // the chain run
	langChainLLMSpan       = "ChatOpenAI"       // the chat model run
	langChainPromptSpan    = "ChatPromptTemplate"
	// langChainIDPath is where the LLM run's output.value (LangChain's
	// LLMResult) holds the provider's response id.
	langChainIDPath = "generations[0][0].message.kwargs.response_metadata.id"
)

// minSpans is how many spans the cell's trace has at least.
func minSpans(opts appOptions) int {
	if opts.Instrumentation == langChainOpenInference {
		return 5
	}
	return 2
}

// checkLangChainShape checks the trace of the LangChain app: handle_request >
// RunnableSequence > ChatPromptTemplate, ChatOpenAI (the LLM run, indexed),
// and the HTTP client span beside the chain, under handle_request:
// openinference-instrumentation-langchain starts its spans from LangChain's
// callbacks without making them current, so the openai SDK's request is
// traced under the handler. The chain's output (the AIMessage) carries the
// response id too, but only the LLM run may be indexed and voted on; the
// check fails if the chain stops carrying it, so that the table stays true.
// It returns where the LLM run carries the id.
func checkLangChainShape(t *testing.T, tr traceShape, responseID string) string {
	t.Helper()
	if tr.root == nil || tr.llm == nil {
		t.Fatalf("want %s > %s > %s in Phoenix, got %s", rootSpanName, langChainChainSpan, langChainLLMSpan, describeSpans(tr.spans))
	}
	chain := tr.llmParent()
	if tr.llm.Name != langChainLLMSpan || chain.Name != langChainChainSpan || chain.ParentID != tr.root.Context.SpanID {
		t.Fatalf("want %s > %s > %s (indexed) in Phoenix, got %s with %s indexed",
			rootSpanName, langChainChainSpan, langChainLLMSpan, describeSpans(tr.spans), tr.llm.Name)
	}
	var prompt, httpSpan bool
	for _, s := range tr.spans {
		_, isHTTP := s.Attributes["http.method"]
		switch {
		case s.Name == langChainPromptSpan && s.ParentID == chain.Context.SpanID:
			prompt = true
		case isHTTP && s.ParentID == tr.root.Context.SpanID:
			httpSpan = true
		}
	}
	if !prompt || !httpSpan || len(tr.spans) != 5 || tr.child != nil {
		t.Errorf("want %s > %s > %s, %s and an HTTP client span beside the chain (5 spans), got %s",
			rootSpanName, langChainChainSpan, langChainPromptSpan, langChainLLMSpan, describeSpans(tr.spans))
	}
	if llms := llmKind(tr.spans); len(llms) != 1 || llms[0].Context.SpanID != tr.llm.Context.SpanID {
		t.Errorf("Phoenix's LLM spans are %s, want only the indexed %s", describeSpans(llms), tr.llm.Context.SpanID)
	}
	if got := langChainResponseID(*tr.llm); got != responseID {
		t.Errorf("%s's output.value holds %q at %s, want %s", tr.llm.Name, got, langChainIDPath, responseID)
	}
	if out, _ := chain.Attributes["output.value"].(string); !strings.Contains(out, responseID) {
		t.Errorf("%s's output.value does not carry the response id any more (it did with the installed packages): "+
			"say so in the table's text, e2e/matrix_test.go", chain.Name)
	}
	return "output.value (" + langChainIDPath + ")"
}

// langChainResponseID decodes the id at langChainIDPath from the span's
// output.value; "" when there is none.
func langChainResponseID(s phoenix.Span) string {
	out, _ := s.Attributes["output.value"].(string)
	var result struct {
		Generations [][]struct {
			Message struct {
				Kwargs struct {
					ResponseMetadata struct {
						ID string `json:"id"`
					} `json:"response_metadata"`
				} `json:"kwargs"`
			} `json:"message"`
		} `json:"generations"`
	}
	if json.Unmarshal([]byte(out), &result) != nil || len(result.Generations) == 0 || len(result.Generations[0]) == 0 {
		return ""
	}
	return result.Generations[0][0].Message.Kwargs.ResponseMetadata.ID
}

// checkMatrixDoc renders the table from a complete, passing run and writes
// it (E2E_WRITE_MATRIX=1) or fails when the committed one differs.
func checkMatrixDoc(t *testing.T, results map[string]cellResult) {
	want := len(matrixCells())
	switch {
	case t.Failed():
		t.Logf("%s not checked: the matrix failed", matrixDoc)
		return
	case len(results) != want:
		t.Logf("%s not checked: %d of %d cells ran (-run filter?)", matrixDoc, len(results), want)
		return
	}
	versions, err := pythonVersions()
	if err != nil {
		t.Errorf("reading the venv's package versions: %v", err)
		return
	}
	tsVersions, err := npmVersions()
	if err != nil {
		t.Errorf("reading the TypeScript app's package versions: %v", err)
		return
	}
	doc := renderMatrix(results, versions+tsVersions)
	if os.Getenv("E2E_WRITE_MATRIX") == "1" {
		err := os.MkdirAll(filepath.Dir(matrixDoc), 0o755)
		if err == nil {
			err = os.WriteFile(matrixDoc, []byte(doc), 0o644)
		}
		if err != nil {
			t.Errorf("writing %s: %v", matrixDoc, err)
			return
		}
		t.Logf("wrote %s", matrixDoc)
		return
	}
	old, err := os.ReadFile(matrixDoc)
	if err != nil {
		t.Errorf("%v; write it with E2E_WRITE_MATRIX=1 scripts/e2e.sh -run TestMatrix ./e2e/", err)
		return
	}
	if string(old) != doc {
		t.Errorf("%s differs from what this run observed (first difference: %s). If the change is expected, "+
			"regenerate it with E2E_WRITE_MATRIX=1 scripts/e2e.sh -run TestMatrix ./e2e/ and commit it. This run observed:\n%s",
			matrixDoc, firstDiff(string(old), doc), doc)
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: committed %q, observed %q", i+1, x, y)
		}
	}
	return "none"
}

// pythonPackages are the versions the table is valid for.
var pythonPackages = []string{
	"openai", "openinference-instrumentation-openai", "opentelemetry-instrumentation-openai-v2",
	"anthropic", "openinference-instrumentation-anthropic", "opentelemetry-instrumentation-anthropic",
	"google-genai", "openinference-instrumentation-google-genai",
	"litellm", "openinference-instrumentation-litellm", "opentelemetry-instrumentation-litellm",
	"langchain-core", "langchain-openai", "openinference-instrumentation-langchain",
	"opentelemetry-instrumentation-httpx", "opentelemetry-sdk",
	"opentelemetry-exporter-otlp-proto-http", "opentelemetry-exporter-otlp-proto-grpc", "arize-phoenix",
}

// pythonVersions returns "| package | version |" rows from the venv.
func pythonVersions() (string, error) {
	_, pkgs, err := versions.Python(context.Background(), os.Getenv("E2E_PYTHON"), pythonPackages)
	if err != nil {
		return "", err
	}
	var rows strings.Builder
	for _, p := range pkgs {
		v := p.Version
		if v == "" {
			v = "not installed"
		}
		fmt.Fprintf(&rows, "| %s | %s |\n", p.Name, v)
	}
	return rows.String(), nil
}

// npmPackages are the TypeScript app's packages the table is valid for.
var npmPackages = []string{
	"ai", "@ai-sdk/openai", "@opentelemetry/api", "@opentelemetry/sdk-trace-base",
	"@opentelemetry/exporter-trace-otlp-proto", "@opentelemetry/resources", "@opentelemetry/context-async-hooks",
}

// npmVersions returns "| package (npm) | version |" rows from the TypeScript
// app's lockfile, which npm ci installs exactly.
func npmVersions() (string, error) {
	pkgs, err := versions.NPM(tsAppDir, npmPackages)
	if err != nil {
		return "", err
	}
	var rows strings.Builder
	for _, p := range pkgs {
		v := p.Version
		if v == "" {
			v = "not in the lockfile"
		}
		fmt.Fprintf(&rows, "| %s (npm) | %s |\n", p.Name, v)
	}
	return rows.String(), nil
}

func renderMatrix(results map[string]cellResult, versions string) string {
	var b strings.Builder
	b.WriteString(`# End-to-end matrix

Generated by ` + "`TestMatrix`" + ` (e2e/matrix_test.go) from what the suite observed; do not edit by hand.
The suite fails when this file differs from what a run observes, so it cannot drift. After an intended
change (a new cell, an instrumentation upgrade), regenerate it:

    E2E_WRITE_MATRIX=1 scripts/e2e.sh -run TestMatrix ./e2e/

Each cell runs the real app ` + "`e2e/apps/app.py`" + ` (the provider's official SDK, ` + "`openai`" + `,
` + "`anthropic`" + ` or ` + "`google-genai`" + `; the instrumentation; ` + "`HTTPX2ClientInstrumentor`" + `, or
` + "`HTTPXClientInstrumentor`" + ` for google-genai; the OpenTelemetry SDK's BatchSpanProcessor and OTLP
exporter) against ` + "`internal/llmserver`" + `'s endpoint for that provider, exporting to a proxy of its own in
front of a real Phoenix. The app's request handler span ` + "`handle_request`" + ` wraps the SDK call. The
anthropic SDK traces its own calls (span ` + "`anthropic.messages.create`" + `): that is the ` + "`sdk`" + `
instrumentation; beside the others the app turns it off (` + "`open_telemetry=False`" + `), as it would make a
second span with the id. The OpenAI cells run with both OTLP exporters, the others over HTTP. The test
checks that the app printed the id the server issued, then sends ` + "`POST /feedback`" + ` with that
response id and an identifier, and reads back through Phoenix's REST API: the trace
(` + "`GET /v1/projects/default/spans?trace_id=`" + `) and the annotations of all its spans, which must be
exactly one, ` + "`user feedback`" + `, HUMAN, with the label, score and identifier sent, on the LLM span.

The ` + "`litellm-*`" + ` and ` + "`langchain-*`" + ` cells run the same app through a framework, against OpenAI's
endpoint. LiteLLM: ` + "`litellm.completion(model=\"openai/gpt-4o-mini\")`" + `, traced by OpenInference's
LiteLLM instrumentation (` + "`litellm-openinference`" + `) or OpenLLMetry's (` + "`litellm-openllmetry`" + `); LiteLLM hands
the openai SDK an httpx client of its own, so the HTTP client span comes from ` + "`HTTPXClientInstrumentor`" + `,
and the app sets ` + "`LITELLM_LOCAL_MODEL_COST_MAP=True`" + ` (else LiteLLM fetches its price list from GitHub
when imported). LangChain: a ` + "`prompt | ChatOpenAI`" + ` chain from langchain-openai (the Responses API with
` + "`use_responses_api=True`" + `), traced by OpenInference's LangChain instrumentation, which records the
run's outputs, LangChain's ` + "`LLMResult`" + `, as ` + "`output.value`" + `: the provider's id is nested in it, at
` + "`" + langChainIDPath + "`" + ` (the message's own ` + "`id`" + ` is LangChain's run id for chat
completions). The LLM run ` + "`ChatOpenAI`" + ` is a child of the chain run ` + "`RunnableSequence`" + `, whose output,
the AIMessage, carries the id too (not as an LLM span); the test asserts that the vote lands on
` + "`ChatOpenAI`" + ` alone. The instrumentation does not make its spans current, so the HTTP client span is
beside the chain, under ` + "`handle_request`" + `.

The ` + "`vercel-ai-sdk`" + ` cells run the TypeScript app ` + "`e2e/apps/ts/app.ts`" + ` instead (Node, run by
` + "`tsx`" + `; installed by ` + "`scripts/ts-app.sh`" + `, ` + "`npm ci`" + ` from its lockfile): the Vercel AI SDK
(` + "`ai`" + `) with ` + "`@ai-sdk/openai`" + ` (` + "`openai.chat(model)`" + ` for chat completions,
` + "`openai.responses(model)`" + ` for the Responses API), ` + "`generateText`" + ` or ` + "`streamText`" + ` with
` + "`experimental_telemetry: { isEnabled: true }`" + `, so that the SDK makes its own spans, exported by the
OpenTelemetry JS SDK (` + "`BasicTracerProvider`" + `, ` + "`BatchSpanProcessor`" + `, OTLP/HTTP protobuf). Only the
inner span of the provider call (` + "`ai.generateText.doGenerate`" + `, ` + "`ai.streamText.doStream`" + `) carries
the response id, as ` + "`gen_ai.response.id`" + ` and ` + "`ai.response.id`" + `; the outer ` + "`ai.generateText`" + ` /
` + "`ai.streamText`" + ` carries neither (with the Responses API its ` + "`ai.response.providerMetadata`" + ` JSON holds the
id as ` + "`responseId`" + `, which the proxy does not read), and the test asserts it. Node's ` + "`fetch`" + ` is not
instrumented, so there is no HTTP client span.

Versions (from the venv and e2e/apps/ts/package-lock.json):

| package | version |
|---|---|
`)
	b.WriteString(versions)
	b.WriteString(`
| provider | instrumentation | call | exporter | trace in Phoenix | response id in | feedback | cell |
|---|---|---|---|---|---|---|---|
`)
	var reasons, siblings []string
	for _, o := range matrixCells() {
		r := results[o.String()]
		status := "supported"
		if !r.supported {
			status = "**unsupported**, see below"
			if reason := fmt.Sprintf("- `%s` × `%s`: %s.", o.Instrumentation, o.Call, r.reason); !slices.Contains(reasons, reason) {
				reasons = append(reasons, reason)
			}
		}
		if why := httpSibling[pairOf(o)]; why != "" {
			status += ", HTTP span beside the LLM span (see below)"
			if line := fmt.Sprintf("- `%s` × `%s` × `%s`: %s.", o.provider(), o.Instrumentation, o.Call, why); !slices.Contains(siblings, line) {
				siblings = append(siblings, line)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", o.provider(), o.Instrumentation, o.Call, o.Exporter, r.trace, r.idIn, r.feedback, status)
	}
	b.WriteString(`
## Unsupported cells

The test of an unsupported cell asserts the limitation: no span of the trace Phoenix shows carries the
response id the server issued, Phoenix shows no LLM span but the one named below (the
instrumentation's, without the id), ` + "`GET /feedback/{id}`" + ` says it is not indexed, and the feedback ends
` + "`expired`" + ` (counted in ` + "`feedbackproxy_feedback_total{outcome=\"expired\"}`" + `). Where the framework
hands the app no provider id, the cell also asserts that the app printed another id. The day the
instrumentation records the id (or the framework hands it over), the cell fails and says to move it
to the supported ones.

`)
	b.WriteString(strings.Join(reasons, "\n"))
	b.WriteString(`

## HTTP client span beside the LLM span

In these cells the HTTP client span is a sibling of the LLM span (both children of ` + "`handle_request`" + `),
not its child; the test asserts that shape, and that the annotation is on the LLM span and on no other
span of the trace.

`)
	b.WriteString(strings.Join(siblings, "\n"))
	b.WriteString(`

## Also covered

- ` + "`TestFeedbackBeforeExport`" + `: feedback sent the moment the response returns, while the span waits in
  the app's BatchSpanProcessor (` + fmt.Sprint(heldScheduleDelayMS) + ` ms schedule delay); it lands when the span does. The latencies are in the
  test log (` + "`grep E2E_LATENCY`" + `), not here.
- ` + "`TestFeedbackExpires`" + `: feedback for a response id that never arrives ends ` + "`expired`" + `, in
  ` + "`GET /feedback`" + ` and the metric.
- ` + "`TestVotes`" + `: two users on one response give two annotations; one user voting twice gives one,
  updated; each before and after the span reached the proxy.
- ` + "`TestProjectRouting`" + `: an app with ` + "`openinference.project.name=chatbot`" + ` gets its span and
  annotation in project ` + "`chatbot`" + `, none in ` + "`default`" + `.
`)
	return b.String()
}

// getFeedbackCode is getFeedback with the status code: 404 says the proxy
// knows neither the response id nor any feedback for it.
func getFeedbackCode(t *testing.T, p *proxy.Proxy, responseID string) (int, feedback.ResponseState) {
	t.Helper()
	resp, err := http.Get("http://" + p.Addrs().Feedback + "/feedback/" + responseID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st feedback.ResponseState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /feedback/%s answered %d: %v", responseID, resp.StatusCode, err)
	}
	return resp.StatusCode, st
}
