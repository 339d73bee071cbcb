// Command demo is the seed exercise's `main.py --feedback` in Go: it asks an
// LLM one question through the official OpenAI SDK, traces the call with
// OpenTelemetry, exports the spans to the feedback proxy, and sends the
// user's thumbs up or down to the proxy by the response id alone. Run it
// with --help, or everything at once with `make demo`. `demo web` serves a
// chat page whose answers carry the proxy's feedback widget (web.go).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

const tracerName = "github.com/feedbackproxy/phoenix-feedback-proxy/cmd/demo"

// feedbackName is the annotation name the proxy writes by default, the seed's.
const feedbackName = "user feedback"

// flushTimeout bounds the export of the spans at exit; the exporter retries
// an unreachable endpoint for a minute otherwise.
const flushTimeout = 15 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "web" {
		return runWeb(ctx, args[1:], getenv, stdout, stderr)
	}
	o, err := parseOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 2
	}
	d := &demo{o: o, getenv: getenv, in: bufio.NewReader(stdin), out: stdout, errOut: stderr}
	if err := d.run(ctx); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	return 0
}

type demo struct {
	o      *options
	getenv func(string) string
	in     *bufio.Reader
	out    io.Writer
	errOut io.Writer
}

func (d *demo) run(ctx context.Context) error {
	proxy := newProxyClient(d.o.feedbackURL, d.o.feedbackToken)
	phoenix := newPhoenixClient(d.o.phoenixURL, d.o.phoenixUIURL, d.getenv("PHOENIX_API_KEY"))
	if d.o.feedback {
		// Fail before the question rather than after the answer.
		if err := retryUnreachable(ctx, d.o.startupWait, proxy.check); err != nil {
			return err
		}
		if err := retryUnreachable(ctx, d.o.startupWait, phoenix.check); err != nil {
			return err
		}
	}

	tp, target, err := newTracerProvider(ctx, d.getenv)
	if err != nil {
		return err
	}
	var once sync.Once
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		fmt.Fprintf(d.errOut, "demo: exporting spans to %s: %v\n", target, err)
		once.Do(func() {
			fmt.Fprintln(d.errOut, "demo: is the proxy running? Run `make demo`, or start it with `go run ./cmd/proxy`; OTEL_EXPORTER_OTLP_ENDPOINT moves the endpoint")
		})
	}))
	defer func() {
		// Spans were flushed, and failures reported, by d.flush.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()

	llmBase, llmOpts, llmDesc, stopLLM, err := d.chooseLLM()
	if err != nil {
		return err
	}
	defer stopLLM()

	tracer := tp.Tracer(tracerName)
	r, err := d.ask(ctx, tracer, newLLM(tracer, llmBase, llmOpts...))
	if err != nil {
		_ = d.flush(ctx, tp, target) // the error to report is the LLM's
		return fmt.Errorf("asking %s: %w", llmDesc, err)
	}
	fmt.Fprintf(d.out, "Question: %s\nAnswer:   %s\n          (response id %s, model %s, from %s)\n", d.o.question, r.Answer, r.ResponseID, r.Model, llmDesc)

	if !d.o.feedback {
		if err := d.flush(ctx, tp, target); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "Spans exported to %s.\nSend feedback by response id: curl -X POST %s/feedback -d '{\"response_id\":\"%s\",\"thumbs\":\"up\"}'\n",
			target, d.o.feedbackURL, r.ResponseID)
		return nil
	}

	satisfied, err := d.askSatisfied(ctx)
	if err != nil {
		return err
	}
	// Sent before the spans leave (the batch exporter holds them up to 5 s),
	// as in a real app: the proxy keeps the feedback until the span arrives.
	st, err := proxy.send(ctx, r.ResponseID, satisfied)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "Proxy:    feedback on %s is %s%s\n", r.ResponseID, st.State, stateNote(st))

	// What every OTel app does at exit: flush the spans still batched.
	if err := d.flush(ctx, tp, target); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "Spans exported to %s.\n", target)

	if st.State == statePending {
		st, err = proxy.waitDone(ctx, r.ResponseID, feedbackName, d.o.wait)
		if err != nil {
			return fmt.Errorf("the annotation did not happen in %s: %w; see the proxy's log, and GET %s/feedback/%s", d.o.wait, err, d.o.feedbackURL, r.ResponseID)
		}
		fmt.Fprintf(d.out, "Proxy:    feedback on %s is %s%s\n", r.ResponseID, st.State, stateNote(st))
	}
	if st.State != stateAnnotated {
		return fmt.Errorf("feedback %s: %s", st.State, orUnknown(st.Reason))
	}
	if st.SpanID != r.SpanID {
		// The proxy must pick the LLM span, not its parent or its child.
		return fmt.Errorf("the proxy annotated span %s, but the LLM span is %s", st.SpanID, r.SpanID)
	}
	fmt.Fprintf(d.out, "Phoenix:  %s\n", spanURL(d.o.phoenixUIURL, st.SpanID))
	if id, err := phoenix.projectID(ctx, st.Project); err == nil {
		fmt.Fprintf(d.out, "          (trace: %s)\n", traceURL(d.o.phoenixUIURL, id, st.TraceID))
	}
	return nil
}

// stateNote explains a state in a few words.
func stateNote(st feedback.Status) string {
	switch {
	case st.State == stateAnnotated:
		return fmt.Sprintf(": %q is on span %q (span id %s, trace id %s, project %s)", st.Name, st.SpanName, st.SpanID, st.TraceID, st.Project)
	case st.State == statePending && st.SpanID == "":
		return ": the span has not reached the proxy yet; it holds the feedback until it does"
	case st.State == statePending:
		return fmt.Sprintf(": span %s is known, waiting for Phoenix to have it (%d attempts)", st.SpanID, st.Attempts)
	case st.Reason != "":
		return ": " + st.Reason
	}
	return ""
}

// chooseLLM picks the OpenAI-compatible service: the one OPENAI_API_KEY and
// OPENAI_BASE_URL name (read by the SDK), else llmserver in-process.
func (d *demo) chooseLLM() (base string, opts []option.RequestOption, desc string, stop func(), err error) {
	if d.getenv("OPENAI_API_KEY") != "" || d.getenv("OPENAI_BASE_URL") != "" {
		base = strings.TrimRight(firstNonEmpty(d.getenv("OPENAI_BASE_URL"), "https://api.openai.com/v1"), "/")
		return base, nil, base, func() {}, nil
	}
	_, base, stopServer, err := llmserver.Start("", llmserver.Config{})
	if err != nil {
		return "", nil, "", nil, err
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = stopServer(ctx)
	}
	// llmserver takes any key; the SDK wants one.
	return base, []option.RequestOption{option.WithAPIKey("built-in")}, "the built-in OpenAI-compatible server (set OPENAI_API_KEY for OpenAI)", stop, nil
}

// ask runs the question inside a span of the app's own, the parent of the
// LLM span, as a request handler or a chain would be.
func (d *demo) ask(ctx context.Context, tracer trace.Tracer, l *llm) (reply, error) {
	return askInChain(ctx, tracer, l, d.o.model, d.o.question)
}

// askInChain asks question inside an "answer question" CHAIN span, with
// attrs (the user, for `demo web`) on it.
func askInChain(ctx context.Context, tracer trace.Tracer, l *llm, model, question string, attrs ...attribute.KeyValue) (reply, error) {
	ctx, span := tracer.Start(ctx, "answer question")
	defer span.End()
	span.SetAttributes(
		attribute.String(attrSpanKind, "CHAIN"),
		attribute.String(attrInputValue, question),
		attribute.String(attrInputMimeType, mimeText),
	)
	span.SetAttributes(attrs...)
	r, err := l.ask(ctx, model, question)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return r, err
	}
	span.SetAttributes(attribute.String(attrOutputValue, r.Answer), attribute.String(attrOutputMimeType, mimeText))
	return r, nil
}

// askSatisfied asks the seed's question, or takes --answer.
func (d *demo) askSatisfied(ctx context.Context) (bool, error) {
	const prompt = "Are you satisfied? (y/n) "
	if d.o.answer != "" {
		fmt.Fprintf(d.out, "%s%s\n", prompt, d.o.answer)
		return d.o.answer == "y", nil
	}
	for {
		fmt.Fprint(d.out, prompt)
		line, err := d.readLine(ctx)
		if ctx.Err() != nil {
			fmt.Fprintln(d.out)
			return false, errors.New("interrupted")
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return true, nil
		case "n", "no":
			return false, nil
		}
		if err != nil {
			fmt.Fprintln(d.out)
			return false, errors.New("no answer on stdin: answer y or n, or pass --answer y|n")
		}
		fmt.Fprintln(d.out, "Please answer y or n.")
	}
}

// readLine reads a line from stdin, or gives up when ctx ends (Ctrl-C):
// a read from a terminal cannot be cancelled, so it is left behind.
func (d *demo) readLine(ctx context.Context) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := d.in.ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case r := <-ch:
		return r.line, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// flush exports the spans still batched, bounded by flushTimeout.
func (d *demo) flush(ctx context.Context, tp *sdktrace.TracerProvider, target exportTarget) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	if err := tp.ForceFlush(ctx); err != nil {
		return fmt.Errorf("exporting spans to %s: %w; is the proxy running? Run `make demo`, or start it with `go run ./cmd/proxy`", target, err)
	}
	return nil
}
