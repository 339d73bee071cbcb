// Command capture records the OTLP/HTTP export requests that real LLM apps
// (OpenAI, Anthropic, Google GenAI; LiteLLM and LangChain on OpenAI) send, for
// the tests of pkg/extract.
//
// Run it from the repository root, with the Python venv of
// scripts/requirements.txt in .venv:
//
//	go run ./e2e/capture
//
// It starts internal/llmserver and a minimal OTLP/HTTP sink on loopback ports, runs
// e2e/apps/app.py once per provider, instrumentation and call (exporter http),
// and writes each run's request bodies, unchanged, to <out>/<name>.binpb (see
// cell.name), plus <out>/README.md with the versions, the date and a summary of
// the spans.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/e2e/internal/versions"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
)

// cell is one app run: a provider's SDK, the instrumentation making the LLM
// span and the call.
type cell struct {
	Provider, Instrumentation, Call string
}

// name is the capture's file name without .binpb: <instrumentation>-<call>
// for OpenAI (the first captures), <provider>-<instrumentation>-<call> for
// the others.
func (c cell) name() string {
	if c.Provider == "openai" {
		return c.Instrumentation + "-" + c.Call
	}
	return c.Provider + "-" + c.Instrumentation + "-" + c.Call
}

// llmProvider is the llmserver API the provider's SDK calls.
func (c cell) llmProvider() llmserver.Provider {
	switch c.Provider {
	case "anthropic":
		return llmserver.ProviderAnthropic
	case "google":
		return llmserver.ProviderGemini
	}
	return llmserver.ProviderOpenAI
}

// providers lists, per provider of app.py, its instrumentations and calls.
var providers = []struct {
	name                    string
	instrumentations, calls []string
}{
	{"openai", []string{"openinference", "openai-v2"}, []string{"chat", "chat-stream", "responses", "responses-stream"}},
	// Through the frameworks: litellm.completion, and a prompt | ChatOpenAI
	// chain (chat completions or, with use_responses_api, Responses).
	{"openai", []string{"litellm-openinference", "litellm-openllmetry"}, []string{"chat", "chat-stream"}},
	{"openai", []string{"langchain-openinference"}, []string{"chat", "chat-stream", "responses", "responses-stream"}},
	{"anthropic", []string{"openinference", "openllmetry", "sdk"}, []string{"chat", "chat-stream"}},
	{"google", []string{"openinference"}, []string{"chat", "chat-stream"}},
	// The TypeScript app e2e/apps/ts (Vercel AI SDK, OpenTelemetry JS SDK).
	{"openai", []string{vercelAISDK}, []string{"chat", "chat-stream", "responses", "responses-stream"}},
}

// appHasNoID names the cells whose app gets no provider id to print: LangChain's
// streamed chat completions (langchain-openai drops the chunks' id), where
// the app prints the message's own id (lc_run--...). Their captures are
// described by the id the server issued.
var appHasNoID = map[string]bool{"langchain-openinference-chat-stream": true}

// vercelAISDK is the instrumentation of the TypeScript app e2e/apps/ts: the
// Vercel AI SDK's own spans (experimental_telemetry).
const vercelAISDK = "vercel-ai-sdk"

// npmPackages are the TypeScript app's packages whose versions (from its
// lockfile) the README records.
var npmPackages = []string{
	"ai", "@ai-sdk/openai", "@ai-sdk/provider-utils", "@opentelemetry/api", "@opentelemetry/sdk-trace-base",
	"@opentelemetry/exporter-trace-otlp-proto", "@opentelemetry/otlp-transformer", "@opentelemetry/resources",
	"@opentelemetry/context-async-hooks",
}

func cells() []cell {
	var out []cell
	for _, p := range providers {
		for _, inst := range p.instrumentations {
			for _, call := range p.calls {
				out = append(out, cell{p.name, inst, call})
			}
		}
	}
	return out
}

// pythonPackages are the distributions whose versions the README records.
var pythonPackages = []string{
	"openai", "httpx2", "httpx",
	"anthropic", "google-genai",
	"openinference-instrumentation-openai", "openinference-instrumentation-anthropic",
	"openinference-instrumentation-google-genai", "openinference-instrumentation", "openinference-semantic-conventions",
	"litellm", "openinference-instrumentation-litellm", "opentelemetry-instrumentation-litellm",
	"langchain-core", "langchain-openai", "openinference-instrumentation-langchain",
	"opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai",
	"opentelemetry-instrumentation-anthropic", "opentelemetry-semantic-conventions-ai",
	"opentelemetry-instrumentation-httpx", "opentelemetry-instrumentation",
	"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
}

type config struct {
	python          string
	app             string
	tsApp           string
	out             string
	scheduleDelayMS int
	timeout         time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.python, "python", ".venv/bin/python", "Python interpreter of the venv with scripts/requirements.txt")
	flag.StringVar(&cfg.app, "app", "e2e/apps/app.py", "the instrumented app to run")
	flag.StringVar(&cfg.tsApp, "ts-app", "e2e/apps/ts", "the TypeScript app (installed by scripts/ts-app.sh)")
	flag.StringVar(&cfg.out, "out", "pkg/extract/testdata/capture", "directory for the .binpb files and README.md")
	flag.IntVar(&cfg.scheduleDelayMS, "schedule-delay-ms", 5000,
		"the app's BatchSpanProcessor delay; the default (the SDK's) leaves every span to the final flush, so one run usually sends one request")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "limit for one app run")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./e2e/capture [flags]\n\n"+
			"Runs e2e/apps/app.py for every provider, instrumentation and call against internal/llmserver and\n"+
			"records the OTLP/HTTP requests it exports. Run from the repository root.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(context.Background(), cfg); err != nil {
		slog.Error("capture failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) (err error) {
	llm, _, stopLLM, err := llmserver.Start("127.0.0.1:0", llmserver.Config{})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopLLM(context.Background())) }()
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sink.stop(context.Background())) }()

	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	var captures []*capture
	for _, cl := range cells() {
		c := &capture{cell: cl, File: cl.name() + ".binpb"}
		c.App, err = runApp(ctx, cfg, cl, llm.BaseURL(cl.llmProvider()), sink.url)
		if err != nil {
			return fmt.Errorf("%s: %w", cl.name(), err)
		}
		c.IssuedID = llm.LastIDOf(cl.llmProvider())
		switch noID := appHasNoID[cl.name()]; {
		case !noID && c.IssuedID != c.App.ResponseID:
			return fmt.Errorf("%s: the app printed response id %q, llmserver issued %q", cl.name(), c.App.ResponseID, c.IssuedID)
		case noID && c.IssuedID == c.App.ResponseID:
			return fmt.Errorf("%s: the app printed the id llmserver issued, %q, which it had no way to get before: "+
				"remove the cell from appHasNoID", cl.name(), c.IssuedID)
		}
		// The app shuts its tracer provider down before printing, so
		// its exports have all been answered by now.
		c.Exports = sink.take()
		if len(c.Exports) == 0 {
			return fmt.Errorf("%s: the app exported nothing", cl.name())
		}
		if err := c.decode(); err != nil {
			return fmt.Errorf("%s: %w", cl.name(), err)
		}
		if err := writeCapture(filepath.Join(cfg.out, c.File), c.Exports); err != nil {
			return err
		}
		slog.Info("captured", "file", c.File, "requests", len(c.Exports), "spans", len(c.spans), "response_id", c.App.ResponseID)
		captures = append(captures, c)
	}
	versions, err := pythonVersions(ctx, cfg.python)
	if err != nil {
		return err
	}
	tsVersions, err := npmVersions(cfg.tsApp)
	if err != nil {
		return err
	}
	versions += tsVersions
	return os.WriteFile(filepath.Join(cfg.out, "README.md"), []byte(readme(cfg, versions, captures)), 0o644)
}

// appResult is the JSON line app.py prints last.
type appResult struct {
	ResponseID string `json:"response_id"`
	Answer     string `json:"answer"`
	TraceID    string `json:"trace_id"`
}

func runApp(ctx context.Context, cfg config, cl cell, llmURL, sinkURL string) (appResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	var cmd *exec.Cmd
	if cl.Instrumentation == vercelAISDK {
		// Its own flags are app.py's, without provider and instrumentation.
		cmd = exec.CommandContext(ctx, filepath.Join("node_modules", ".bin", "tsx"), "app.ts",
			"--call", cl.Call, "--exporter", "http", "--endpoint", sinkURL, "--base-url", llmURL,
			"--schedule-delay-ms", fmt.Sprint(cfg.scheduleDelayMS), "--question", llmserver.BouvetQuestion)
		cmd.Dir = cfg.tsApp
	} else {
		cmd = exec.CommandContext(ctx, cfg.python, cfg.app,
			"--provider", cl.Provider, "--instrumentation", cl.Instrumentation, "--call", cl.Call,
			"--exporter", "http", "--endpoint", sinkURL,
			"--base-url", llmURL,
			"--schedule-delay-ms", fmt.Sprint(cfg.scheduleDelayMS),
			"--question", llmserver.BouvetQuestion)
	}
	cmd.Env = appEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return appResult{}, fmt.Errorf("%w\nstderr:\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		slog.Warn("app wrote to stderr", "cell", cl.name(), "stderr", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res appResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return appResult{}, fmt.Errorf("app output %q: %w", stdout.String(), err)
	}
	return res, nil
}

// appEnv is the environment without the caller's OTEL_* settings nor those
// of the SDKs and instrumentations (OPENAI_*, ANTHROPIC_*, GOOGLE_*,
// GEMINI_*, TRACELOOP_*), so that the captures depend on the flags only.
// Compression stays off so that the files are plain protobuf.
func appEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if hasAnyPrefix(kv, "OTEL_", "OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_", "TRACELOOP_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OPENAI_API_KEY=sk-capture", "ANTHROPIC_API_KEY=sk-ant-capture", "GEMINI_API_KEY=capture",
		"OTEL_EXPORTER_OTLP_COMPRESSION=none")
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// writeCapture writes the bodies one after the other. Protobuf parsers merge
// concatenated messages of one type, appending repeated fields, so a file
// made of several ExportTraceServiceRequest bodies still decodes as one
// request holding all their resource spans.
func writeCapture(path string, exports []export) error {
	var buf bytes.Buffer
	for _, e := range exports {
		buf.Write(e.Body)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func pythonVersions(ctx context.Context, python string) (string, error) {
	interpreter, pkgs, err := versions.Python(ctx, python, pythonPackages)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "python %s\n", interpreter)
	for _, p := range pkgs {
		v := p.Version
		if v == "" {
			v = "(not installed)"
		}
		fmt.Fprintf(&b, "%s %s\n", p.Name, v)
	}
	return b.String(), nil
}

// npmVersions returns "name version" lines from the TypeScript app's
// lockfile, which npm ci installs exactly.
func npmVersions(dir string) (string, error) {
	pkgs, err := versions.NPM(dir, npmPackages)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range pkgs {
		v := p.Version
		if v == "" {
			v = "(not in the lockfile)"
		}
		fmt.Fprintf(&b, "%s %s (npm)\n", p.Name, v)
	}
	return b.String(), nil
}

func readme(cfg config, versions string, captures []*capture) string {
	var b strings.Builder
	b.WriteString(`# Captured OTLP exports of real LLM apps

Generated by ` + "`go run ./e2e/capture`" + `; do not edit by hand, re-capture instead.

Each ` + "`<instrumentation>-<call>.binpb`" + ` (OpenAI, also through LiteLLM and LangChain) or
` + "`<provider>-<instrumentation>-<call>.binpb`" + ` (Anthropic, Google) holds the OTLP/HTTP ` + "`POST /v1/traces`" + ` bodies
(` + "`application/x-protobuf`" + `, uncompressed) that one run of ` + "`e2e/apps/app.py`" + ` (or ` + "`e2e/apps/ts/app.ts`" + `) sent, byte for
byte, in arrival order. When a run sends more than one request the bodies are concatenated:
protobuf merges concatenated messages of one type, so every file decodes as one
` + "`ExportTraceServiceRequest`" + ` (e.g. ` + "`ptraceotlp.NewExportRequest().UnmarshalProto`" + `) holding all
the run's spans. The count of requests per file is given below.

## How they were made

- ` + "`go run ./e2e/capture`" + ` from the repository root starts ` + "`internal/llmserver`" + ` (a deterministic
  server speaking OpenAI's chat completions and Responses, Anthropic's Messages and Gemini's
  generateContent) and a minimal OTLP/HTTP sink that answers 200 with an empty body, both
  on loopback, then runs, for each provider, instrumentation and call:

      .venv/bin/python e2e/apps/app.py --provider <openai|anthropic|google> \
          --instrumentation <openinference|openai-v2|openllmetry|sdk|litellm-...|langchain-...> \
          --call <chat|chat-stream|responses|responses-stream> --exporter http \
          --endpoint <sink> --base-url <llmserver's base URL for the provider> \
          --schedule-delay-ms ` + fmt.Sprint(cfg.scheduleDelayMS) + ` --question "` + llmserver.BouvetQuestion + `"

  (openai: openinference and openai-v2, all four calls; through LiteLLM, ` + "`litellm.completion`" + `:
  litellm-openinference and litellm-openllmetry, i.e. OpenInference's and OpenLLMetry's LiteLLM
  instrumentations, chat and chat-stream; through LangChain, a ` + "`prompt | ChatOpenAI`" + ` chain:
  langchain-openinference, all four calls, the Responses API with ` + "`use_responses_api=True`" + `;
  anthropic: openinference, openllmetry,
  i.e. OpenLLMetry's opentelemetry-instrumentation-anthropic, and sdk, the anthropic SDK's own
  tracing, which the app turns off for the other two, chat and chat-stream; google:
  openinference, chat and chat-stream), and the TypeScript app for the ` + "`vercel-ai-sdk-<call>`" + ` captures
  (all four OpenAI calls):

      cd e2e/apps/ts && node_modules/.bin/tsx app.ts --call <call> --exporter http \
          --endpoint <sink> --base-url <llmserver's OpenAI base URL> --schedule-delay-ms ` + fmt.Sprint(cfg.scheduleDelayMS) + ` ...

  (the Vercel AI SDK with ` + "`experimental_telemetry`" + `, exported by the OpenTelemetry JS SDK; installed
  from its lockfile by ` + "`scripts/ts-app.sh`" + `), with OTEL_*, OPENAI_*, ANTHROPIC_*, GOOGLE_*, GEMINI_* and
  TRACELOOP_* cleared from the environment, OPENAI_API_KEY=sk-capture,
  ANTHROPIC_API_KEY=sk-ant-capture, GEMINI_API_KEY=capture and OTEL_EXPORTER_OTLP_COMPRESSION=none.
- The app's ` + "`handle_request`" + ` span (SERVER) wraps the SDK call; the instrumentation makes the
  LLM span, and ` + "`HTTPX2ClientInstrumentor`" + ` (openai 3.x, anthropic 1.x and LangChain's ChatOpenAI send
  through httpx2) or ` + "`HTTPXClientInstrumentor`" + ` (google-genai and LiteLLM send through httpx) the HTTP
  client span. The LiteLLM app sets ` + "`LITELLM_LOCAL_MODEL_COST_MAP=True`" + ` (LiteLLM would fetch its price
  list from GitHub when imported). Where LangChain hands the app no provider id (streamed chat
  completions), the app prints the message's own id and the capture names the id the server issued. In the
  TypeScript app the Vercel AI SDK makes two spans, the call and, inside it, the provider call;
  Node's ` + "`fetch`" + ` is not instrumented (no HTTP client span).
- Ids and timestamps differ on every capture; the structure does not.
- To re-capture: create the venv from ` + "`scripts/requirements.txt`" + ` and run ` + "`scripts/ts-app.sh`" + `, then ` + "`go run ./e2e/capture`" + `
  (` + "`-h`" + ` for flags). Commit the .binpb files and this README together.

`)
	fmt.Fprintf(&b, "Captured on %s with %s (%s/%s).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	b.WriteString("## Versions\n\n```\n" + versions + "```\n\n")
	b.WriteString("## Where the response id is\n\n")
	b.WriteString("The LLM span is the span holding the id the app got back (else the one marked as an LLM call).\n\n")
	b.WriteString("| provider | instrumentation | call | LLM span | response id in | HTTP client child |\n|---|---|---|---|---|---|\n")
	for _, c := range captures {
		b.WriteString(c.matrixRow() + "\n")
	}
	b.WriteString("\n## Spans per capture\n\n")
	b.WriteString("Span tree (children indented), the attributes that identify the call with their values\n" +
		"(`output.value` cut after 200 characters, others after 80), then the other attribute keys.\n\n")
	for _, c := range captures {
		c.describe(&b)
	}
	return b.String()
}
