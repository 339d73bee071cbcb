// Command loadgen sends LLM-shaped OTLP traces to an OTLP endpoint (our
// proxy, a Collector, or a sink) and reports what it sent and the export
// latency. Run it with -h.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/load"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cfg load.Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&cfg.Protocol, "protocol", "http", "http (OTLP/HTTP protobuf) or grpc (OTLP/gRPC)")
	fs.StringVar(&cfg.Endpoint, "endpoint", "", "http: the traces URL (default http://127.0.0.1:4318/v1/traces); grpc: host:port (default 127.0.0.1:4317)")
	fs.StringVar(&cfg.Compression, "compression", "gzip", "gzip or none")
	fs.Float64Var(&cfg.Rate, "rate", 10000, "spans per second to send; 0 sends as fast as the endpoint answers")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send (0: until -count)")
	fs.Int64Var(&cfg.MaxExports, "count", 0, "the most exports to send (0: until -duration)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 4, "exports in flight at most")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "timeout of one export")
	fs.StringVar(&cfg.Project, "project", "", "x-project-name header (Phoenix project), none if empty")
	shape := fs.String("shape", "openinference", "the LLM span's attributes: openinference (response id in output.value) or genai (gen_ai.response.id)")
	fs.IntVar(&cfg.Workload.TracesPerExport, "traces", workload.DefaultTracesPerExport, "traces per export")
	fs.IntVar(&cfg.Workload.ChildSpans, "children", workload.DefaultChildSpans, "spans per trace besides the request and the LLM span (-1: none)")
	fs.IntVar(&cfg.Workload.OutputBytes, "output-bytes", workload.DefaultOutputBytes, "size of the LLM span's output.value JSON (-1: a few words)")
	fs.IntVar(&cfg.Workload.InputBytes, "input-bytes", workload.DefaultInputBytes, "size of the prompt on the LLM span (-1: one line)")
	fs.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the ids, so that runs differ")
	fs.Uint64Var(&cfg.SeqStart, "seq", 0, "sequence number of the first export (its ids derive from it)")
	fs.Float64Var(&cfg.Feedback.Rate, "feedback-rate", 0, "feedbacks per second, each for a response just exported (0: none)")
	fs.DurationVar(&cfg.Feedback.Delay, "feedback-delay", 0, "time from an export's answer to the feedback for its response")
	fs.StringVar(&cfg.Feedback.URL, "feedback-url", "http://127.0.0.1:8080/feedback", "the proxy's POST /feedback")
	fs.StringVar(&cfg.Feedback.Token, "feedback-token", "", "bearer token of POST /feedback")
	fs.StringVar(&cfg.Feedback.AnnotationsURL, "annotations-url", "http://127.0.0.1:4328/annotations", "where the sink standing in for Phoenix tells when each annotation came")
	fs.DurationVar(&cfg.Feedback.Wait, "feedback-wait", 30*time.Second, "how long to wait, after the load, for the annotations still to come")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `loadgen sends OTLP trace exports shaped like an LLM app's: per trace a request
span, an LLM span (OpenInference or GenAI attributes, prompt and completion,
token counts) and a few ordinary child spans, with fresh ids in every export.
It stops after -duration or -count, whichever comes first, and reports the
exports and spans sent, failures, bytes and the export latency p50/p99.

  loadgen -protocol http -endpoint http://127.0.0.1:4318/v1/traces -rate 10000 -duration 30s
  loadgen -protocol grpc -endpoint 127.0.0.1:4317 -compression none -rate 0 -count 1000

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg.Workload.Shape = workload.Shape(*shape)
	if cfg.Endpoint == "" {
		cfg.Endpoint = "http://127.0.0.1:4318/v1/traces"
		if cfg.Protocol == "grpc" {
			cfg.Endpoint = "127.0.0.1:4317"
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(rep)
	} else {
		fmt.Printf("sent %d exports (%d spans/export, %d B each), %d spans, %d failed, in %.1fs: %.0f spans/s (target %s)\n",
			rep.Exports, rep.SpansPerExport, rep.ExportBytes, rep.Spans, rep.Failed, rep.Seconds, rep.SpansPerS, target(rep.RateTarget))
		fmt.Printf("bytes: %d protobuf, %d on the wire (%s, %s); late starts: %d\n", rep.RawBytes, rep.WireBytes, rep.Protocol, rep.Compression, rep.Late)
		fmt.Printf("export latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", rep.P50ms, rep.P99ms, rep.Maxms)
		if len(rep.Errors) > 0 {
			fmt.Printf("errors:\n  %s\n", strings.Join(rep.Errors, "\n  "))
		}
		if fb := rep.Feedback; fb != nil {
			fmt.Printf("feedback: %d sent, %d refused, %d annotated; feedback to annotation p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
				fb.Sent, fb.Refused, fb.Annotated, fb.P50ms, fb.P99ms, fb.Maxms)
			if len(fb.Errors) > 0 {
				fmt.Printf("feedback errors:\n  %s\n", strings.Join(fb.Errors, "\n  "))
			}
		}
	}
	if rep.Failed > 0 {
		return 1
	}
	return 0
}

func target(rate float64) string {
	if rate == 0 {
		return "as fast as possible"
	}
	return fmt.Sprintf("%.0f spans/s", rate)
}
