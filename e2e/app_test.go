//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// appTimeout bounds one run of the Python app, lingering included.
const appTimeout = 90 * time.Second

// appSlots bounds the Python apps starting at once. An app's start-up (the
// imports of openai and OpenTelemetry) is what costs CPU, so it holds a slot
// until it has printed its result; its lingering and the test's waiting for
// Phoenix do not.
var appSlots = make(chan struct{}, max(2, runtime.NumCPU()))

// runCases runs each case as a subtest, all at once, and waits for them.
// The cases spend most of their time waiting (for the app's batch processor,
// Phoenix's ingest, an expiry) and appSlots bounds what costs CPU; subtests
// started this way, without t.Parallel, are not held back by -parallel.
func runCases[C any](t *testing.T, cases []C, name func(C) string, run func(*testing.T, C)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Go(func() { t.Run(name(c), func(t *testing.T) { run(t, c) }) })
	}
	wg.Wait()
}

// startLLM serves internal/llmserver on a loopback port for the test and returns
// it with the base URL for the OpenAI SDK.
func startLLM(t *testing.T) (*llmserver.Server, string) {
	t.Helper()
	srv, baseURL, stop, err := llmserver.Start("127.0.0.1:0", llmserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stop(ctx); err != nil {
			t.Errorf("llmserver stop: %v", err)
		}
	})
	return srv, baseURL
}

// python is the venv interpreter scripts/e2e.sh sets up. Like Phoenix, it is
// required: the suite fails without it rather than skip the real apps.
func python(t *testing.T) string {
	t.Helper()
	py := os.Getenv("E2E_PYTHON")
	if py == "" {
		t.Fatal("E2E_PYTHON is not set; run scripts/e2e.sh (or make e2e), which creates the venv and sets it")
	}
	return py
}

// appOptions are the flags of e2e/apps/app.py.
type appOptions struct {
	// Provider is the SDK the app asks with: "" (openai, the app's
	// default), "anthropic" or "google".
	Provider string
	// Instrumentation makes the LLM span: openinference (any provider),
	// openai-v2 (openai), openllmetry or sdk (anthropic); through a
	// framework (openai): litellm-openinference, litellm-openllmetry,
	// langchain-openinference; vercel-ai-sdk (openai) runs the TypeScript
	// app e2e/apps/ts instead of app.py.
	Instrumentation string
	Call            string // chat, chat-stream (any provider), responses or responses-stream (openai)
	Exporter        string // http or grpc
	Project         string // resource attribute openinference.project.name; "" for none
	// ScheduleDelayMS is the BatchSpanProcessor's delay; 0 means the app's
	// default (100 ms).
	ScheduleDelayMS int
	// PrintEarly makes the app print its response id as soon as the
	// response is in, while its spans still wait in the batch processor;
	// LingerMS keeps it running that long after the call.
	PrintEarly bool
	LingerMS   int
}

// String names the cell: instrumentation/call/exporter for OpenAI, as
// before other providers came, provider/instrumentation/call/exporter for
// the others.
func (o appOptions) String() string {
	s := o.Instrumentation + "/" + o.Call + "/" + o.Exporter
	if p := o.provider(); p != "openai" {
		s = p + "/" + s
	}
	return s
}

// provider is Provider with the app's default filled in.
func (o appOptions) provider() string {
	if o.Provider == "" {
		return "openai"
	}
	return o.Provider
}

// llmProvider is the API of internal/llmserver that the app's SDK calls.
func (o appOptions) llmProvider() llmserver.Provider {
	switch o.provider() {
	case "anthropic":
		return llmserver.ProviderAnthropic
	case "google":
		return llmserver.ProviderGemini
	}
	return llmserver.ProviderOpenAI
}

// appResult is the JSON line app.py prints.
type appResult struct {
	ResponseID string `json:"response_id"`
	Answer     string `json:"answer"`
	TraceID    string `json:"trace_id"`
}

// app is one running app.py process.
type app struct {
	opts   appOptions
	cmd    *exec.Cmd
	stdout *firstLine
	stderr bytes.Buffer
	done   chan struct{}
	err    error // of cmd.Wait, once done is closed
	waited bool
}

// startApp runs app.py against the LLM server at llmURL (the base URL for
// the provider's SDK), exporting to the proxy over opts.Exporter. The process is killed when the test ends, if it
// is still running.
func startApp(t *testing.T, p *proxy.Proxy, llmURL string, opts appOptions) *app {
	t.Helper()
	if opts.typeScript() {
		return startTSApp(t, p, llmURL, opts)
	}
	script, err := filepath.Abs(filepath.Join("apps", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script}
	if opts.Provider != "" {
		args = append(args, "--provider", opts.Provider)
	}
	args = append(args,
		"--instrumentation", opts.Instrumentation, "--call", opts.Call,
		"--exporter", opts.Exporter, "--base-url", llmURL,
		"--question", llmserver.BouvetQuestion,
	)
	switch opts.Exporter {
	case "http":
		args = append(args, "--endpoint", "http://"+p.Addrs().OTLPHTTP)
	case "grpc":
		args = append(args, "--endpoint", p.Addrs().OTLPGRPC)
	default:
		t.Fatalf("unknown exporter %q", opts.Exporter)
	}
	if opts.Project != "" {
		args = append(args, "--project", opts.Project)
	}
	if opts.ScheduleDelayMS > 0 {
		args = append(args, "--schedule-delay-ms", strconv.Itoa(opts.ScheduleDelayMS))
	}
	if opts.PrintEarly {
		args = append(args, "--print-early")
	}
	if opts.LingerMS > 0 {
		args = append(args, "--linger-ms", strconv.Itoa(opts.LingerMS))
	}
	return launch(t, opts, python(t), "", args)
}

// launch runs the app's command (name and args, in dir when not "") and
// hands its stdout and exit over as an app.
func launch(t *testing.T, opts appOptions, name, dir string, args []string) *app {
	t.Helper()
	appSlots <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), appTimeout)
	a := &app{opts: opts, stdout: newFirstLine(), done: make(chan struct{})}
	a.cmd = exec.CommandContext(ctx, name, args...)
	a.cmd.Dir = dir
	a.cmd.Env = appEnv()
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, &a.stderr
	if err := a.cmd.Start(); err != nil {
		<-appSlots
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		a.err = a.cmd.Wait()
		cancel()
		close(a.done)
	}()
	go func() {
		select {
		case <-a.stdout.printed:
		case <-a.done:
		}
		<-appSlots
	}()
	t.Cleanup(func() {
		cancel()
		<-a.done
	})
	return a
}

// appEnv is the caller's environment without OTEL_* and the settings of the
// SDKs and instrumentations (OPENAI_*, ANTHROPIC_*, GOOGLE_*, GEMINI_*,
// TRACELOOP_*), so that the flags alone configure the app.
func appEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if slices.ContainsFunc([]string{"OTEL_", "OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_", "TRACELOOP_"},
			func(p string) bool { return strings.HasPrefix(kv, p) }) {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OPENAI_API_KEY=sk-e2e", "ANTHROPIC_API_KEY=sk-ant-e2e", "GEMINI_API_KEY=e2e")
}

// result waits for the app's JSON line: at once with PrintEarly, else once
// the app has flushed its spans and exited.
func (a *app) result(t *testing.T) appResult {
	t.Helper()
	var line string
	select {
	case line = <-a.stdout.line:
	case <-a.done:
		select {
		case line = <-a.stdout.line:
		default:
			t.Fatalf("app %s exited without printing its result: %v\nstderr:\n%s", a.opts, a.err, a.stderr.String())
		}
	}
	var res appResult
	if err := json.Unmarshal([]byte(line), &res); err != nil || res.ResponseID == "" || res.TraceID == "" {
		t.Fatalf("app %s printed %q, want a JSON line with response_id and trace_id (%v)", a.opts, line, err)
	}
	return res
}

// wait waits for the app to exit and fails the test when it did not exit
// cleanly or its exporter gave up on spans.
func (a *app) wait(t *testing.T) {
	t.Helper()
	<-a.done
	if a.waited {
		return
	}
	a.waited = true
	stderr := a.stderr.String()
	if a.err != nil {
		var ee *exec.ExitError
		if errors.As(a.err, &ee) && ee.ExitCode() == -1 {
			t.Fatalf("app %s was killed after %s (timeout)\nstderr:\n%s", a.opts, appTimeout, stderr)
		}
		t.Fatalf("app %s: %v\nstderr:\n%s", a.opts, a.err, stderr)
	}
	// The OpenTelemetry SDK logs, and carries on, when an export fails.
	if strings.Contains(stderr, "Failed to export") {
		t.Errorf("app %s could not export all its spans to the proxy:\n%s", a.opts, stderr)
	} else if stderr != "" {
		t.Logf("app %s stderr:\n%s", a.opts, stderr)
	}
}

// runApp runs the app to its end and returns what it printed.
func runApp(t *testing.T, p *proxy.Proxy, llmURL string, opts appOptions) appResult {
	t.Helper()
	a := startApp(t, p, llmURL, opts)
	a.wait(t)
	return a.result(t)
}

// firstLine is a stdout that hands its first complete line over as soon as
// it is written.
type firstLine struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	sent    bool
	line    chan string
	printed chan struct{} // closed with the first line
}

func newFirstLine() *firstLine {
	return &firstLine{line: make(chan string, 1), printed: make(chan struct{})}
}

func (w *firstLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent {
		if l, _, ok := strings.Cut(w.buf.String(), "\n"); ok {
			w.sent = true
			w.line <- l
			close(w.printed)
		}
	}
	return len(p), nil
}
