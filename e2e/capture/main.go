// Command capture records the OTLP/HTTP export requests that real OpenAI apps
// send, for the tests of pkg/index.
//
// Run it from the repository root, with the Python venv of
// scripts/requirements.txt in .venv:
//
//	go run ./e2e/capture
//
// It starts pkg/llmserver and a minimal OTLP/HTTP sink on loopback ports, runs
// e2e/apps/app.py once per instrumentation and call (exporter http), and writes
// each run's request bodies, unchanged, to <out>/<instrumentation>-<call>.binpb,
// plus <out>/README.md with the versions, the date and a summary of the spans.
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

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/llmserver"
)

var (
	instrumentations = []string{"openinference", "openai-v2"}
	calls            = []string{"chat", "chat-stream", "responses", "responses-stream"}
)

// pythonPackages are the distributions whose versions the README records.
var pythonPackages = []string{
	"openai", "httpx2", "httpx",
	"openinference-instrumentation-openai", "openinference-instrumentation", "openinference-semantic-conventions",
	"opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai",
	"opentelemetry-instrumentation-httpx", "opentelemetry-instrumentation",
	"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
}

type config struct {
	python          string
	app             string
	out             string
	scheduleDelayMS int
	timeout         time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.python, "python", ".venv/bin/python", "Python interpreter of the venv with scripts/requirements.txt")
	flag.StringVar(&cfg.app, "app", "e2e/apps/app.py", "the instrumented app to run")
	flag.StringVar(&cfg.out, "out", "pkg/index/testdata/capture", "directory for the .binpb files and README.md")
	flag.IntVar(&cfg.scheduleDelayMS, "schedule-delay-ms", 5000,
		"the app's BatchSpanProcessor delay; the default (the SDK's) leaves every span to the final flush, so one run usually sends one request")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "limit for one app run")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./e2e/capture [flags]\n\n"+
			"Runs e2e/apps/app.py for every instrumentation and call against pkg/llmserver and\n"+
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
	llm, llmURL, stopLLM, err := llmserver.Start("127.0.0.1:0", llmserver.Config{})
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
	for _, inst := range instrumentations {
		for _, call := range calls {
			c := &capture{Instrumentation: inst, Call: call, File: inst + "-" + call + ".binpb"}
			c.App, err = runApp(ctx, cfg, inst, call, llmURL, sink.url)
			if err != nil {
				return fmt.Errorf("%s %s: %w", inst, call, err)
			}
			if got := llm.LastID(); got != c.App.ResponseID {
				return fmt.Errorf("%s %s: the app printed response id %q, llmserver issued %q", inst, call, c.App.ResponseID, got)
			}
			// The app shuts its tracer provider down before printing, so
			// its exports have all been answered by now.
			c.Exports = sink.take()
			if len(c.Exports) == 0 {
				return fmt.Errorf("%s %s: the app exported nothing", inst, call)
			}
			if err := c.decode(); err != nil {
				return fmt.Errorf("%s %s: %w", inst, call, err)
			}
			if err := writeCapture(filepath.Join(cfg.out, c.File), c.Exports); err != nil {
				return err
			}
			slog.Info("captured", "file", c.File, "requests", len(c.Exports), "spans", len(c.spans), "response_id", c.App.ResponseID)
			captures = append(captures, c)
		}
	}
	versions, err := pythonVersions(ctx, cfg.python)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.out, "README.md"), []byte(readme(cfg, versions, captures)), 0o644)
}

// appResult is the JSON line app.py prints last.
type appResult struct {
	ResponseID string `json:"response_id"`
	Answer     string `json:"answer"`
	TraceID    string `json:"trace_id"`
}

func runApp(ctx context.Context, cfg config, inst, call, llmURL, sinkURL string) (appResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.python, cfg.app,
		"--instrumentation", inst, "--call", call,
		"--exporter", "http", "--endpoint", sinkURL,
		"--base-url", llmURL,
		"--schedule-delay-ms", fmt.Sprint(cfg.scheduleDelayMS),
		"--question", llmserver.BouvetQuestion)
	cmd.Env = appEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return appResult{}, fmt.Errorf("%w\nstderr:\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		slog.Warn("app wrote to stderr", "instrumentation", inst, "call", call, "stderr", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res appResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return appResult{}, fmt.Errorf("app output %q: %w", stdout.String(), err)
	}
	return res, nil
}

// appEnv is the environment without OTEL_* and OPENAI_* settings of the
// caller, so that the captures depend on the flags only. Compression stays
// off so that the files are plain protobuf.
func appEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "OPENAI_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OPENAI_API_KEY=sk-capture", "OTEL_EXPORTER_OTLP_COMPRESSION=none")
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
	script := `import importlib.metadata as m, sys
print("python " + sys.version.split()[0])
for name in sys.argv[1:]:
    try:
        print(name + " " + m.version(name))
    except m.PackageNotFoundError:
        print(name + " (not installed)")`
	out, err := exec.CommandContext(ctx, python, append([]string{"-c", script}, pythonPackages...)...).Output()
	if err != nil {
		return "", fmt.Errorf("package versions: %w", err)
	}
	return string(out), nil
}

func readme(cfg config, versions string, captures []*capture) string {
	var b strings.Builder
	b.WriteString(`# Captured OTLP exports of real OpenAI apps

Generated by ` + "`go run ./e2e/capture`" + `; do not edit by hand, re-capture instead.

Each ` + "`<instrumentation>-<call>.binpb`" + ` holds the OTLP/HTTP ` + "`POST /v1/traces`" + ` bodies
(` + "`application/x-protobuf`" + `, uncompressed) that one run of ` + "`e2e/apps/app.py`" + ` sent, byte for
byte, in arrival order. When a run sends more than one request the bodies are concatenated:
protobuf merges concatenated messages of one type, so every file decodes as one
` + "`ExportTraceServiceRequest`" + ` (e.g. ` + "`ptraceotlp.NewExportRequest().UnmarshalProto`" + `) holding all
the run's spans. The count of requests per file is given below.

## How they were made

- ` + "`go run ./e2e/capture`" + ` from the repository root starts ` + "`pkg/llmserver`" + ` (a deterministic
  OpenAI-compatible server) and a minimal OTLP/HTTP sink that answers 200 with an empty body, both
  on loopback, then runs, for each instrumentation and call:

      .venv/bin/python e2e/apps/app.py --instrumentation <openinference|openai-v2> \
          --call <chat|chat-stream|responses|responses-stream> --exporter http \
          --endpoint <sink> --base-url <llmserver>/v1 --schedule-delay-ms ` + fmt.Sprint(cfg.scheduleDelayMS) + ` \
          --question "` + llmserver.BouvetQuestion + `"

  with OTEL_* and OPENAI_* cleared from the environment, OPENAI_API_KEY=sk-capture and
  OTEL_EXPORTER_OTLP_COMPRESSION=none.
- The app's ` + "`handle_request`" + ` span (SERVER) wraps the OpenAI call; the OpenAI instrumentation makes the
  LLM span, and ` + "`HTTPX2ClientInstrumentor`" + ` (openai 3.x sends through httpx2) the HTTP client span.
- Ids and timestamps differ on every capture; the structure does not.
- To re-capture: create the venv from ` + "`scripts/requirements.txt`" + `, then ` + "`go run ./e2e/capture`" + `
  (` + "`-h`" + ` for flags). Commit the .binpb files and this README together.

`)
	fmt.Fprintf(&b, "Captured on %s with %s (%s/%s).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	b.WriteString("## Versions\n\n```\n" + versions + "```\n\n")
	b.WriteString("## Where the response id is\n\n")
	b.WriteString("The LLM span is the span holding the id the app got back (else the one marked as an LLM call).\n\n")
	b.WriteString("| instrumentation | call | LLM span | response id in | HTTP client child |\n|---|---|---|---|---|\n")
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
