package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/envflag"
)

// envPrefix is the prefix of the environment variable each flag falls back
// to, as cmd/proxy does with FEEDBACK_PROXY_.
const envPrefix = "DEMO_"

// Defaults: the ports the proxy and scripts/phoenix.sh listen on.
const (
	defaultFeedbackURL = "http://localhost:8080"
	defaultPhoenixURL  = "http://localhost:6006"
	defaultModel       = "gpt-4o-mini"
	// question is the seed exercise's question; llmserver answers any
	// question about Bouvet Island with llmserver.BouvetAnswer.
	question = "Answer in up to 3 words: Which ocean contains Bouvet Island?"
)

type options struct {
	// feedback runs the seed's --feedback flow after the answer.
	feedback bool
	// answer is "y", "n", or "" to ask on stdin.
	answer        string
	feedbackURL   string
	feedbackToken string
	// phoenixURL is where the demo reaches Phoenix; phoenixUIURL is the base
	// of the links it prints, for when the two differ (a container network).
	phoenixURL   string
	phoenixUIURL string
	model        string
	question     string
	// wait bounds the polling of GET /feedback/{id} for the annotation.
	wait time.Duration
	// startupWait is how long the proxy and Phoenix may take to answer
	// before the demo gives up (0: one try), for compose, where the demo may
	// start before them.
	startupWait time.Duration
}

func envName(flagName string) string { return envflag.Name(envPrefix, flagName) }

// parseOptions reads flags, then the environment for the flags not given.
func parseOptions(args []string, getenv func(string) string, out io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.BoolVar(&o.feedback, "feedback", false, "after the answer, ask \"Are you satisfied? (y/n)\" and send the feedback to the proxy by response id")
	fs.StringVar(&o.answer, "answer", "", "y or n: answer the satisfaction question without asking (for scripts; implies --feedback)")
	fs.StringVar(&o.feedbackURL, "feedback-url", defaultFeedbackURL, "the proxy's feedback API")
	fs.StringVar(&o.feedbackToken, "feedback-token", "", "bearer token the proxy requires (default: FEEDBACK_PROXY_FEEDBACK_TOKEN)")
	fs.StringVar(&o.phoenixURL, "phoenix-url", "", "Phoenix, to check it is up and to find the project (default: PHOENIX_ENDPOINT, else "+defaultPhoenixURL+")")
	fs.StringVar(&o.phoenixUIURL, "phoenix-ui-url", "", "base of the Phoenix links printed (default: --phoenix-url)")
	fs.StringVar(&o.model, "model", defaultModel, "model to ask")
	fs.StringVar(&o.question, "question", question, "question to ask")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the proxy to report the annotation")
	fs.DurationVar(&o.startupWait, "startup-wait", 0, "how long to retry reaching the proxy and Phoenix before giving up")
	fs.Usage = func() {
		fmt.Fprintf(out, `demo asks an LLM
  %q
through the official OpenAI Go SDK, traces the call with OpenTelemetry (GenAI and OpenInference
attributes) and exports the spans to the feedback proxy. With --feedback it
then asks whether you are satisfied and sends the answer to the proxy by the
response id alone; the proxy writes it on the LLM span in Phoenix.

LLM: without OPENAI_API_KEY or OPENAI_BASE_URL the demo starts a built-in
OpenAI-compatible server (no key, no network); with them it calls that service.
Spans: OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318, the proxy),
OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf (default) or grpc (then the default
endpoint is http://localhost:4317); the _TRACES_ variants and
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES work as in every OTel SDK.

Every flag can also be set by the environment variable %s<FLAG>,
e.g. %s=y.

Run everything at once with: make demo
A chat page in the browser, with the thumbs of the feedback widget: demo web --help

Flags:
`, question, envPrefix, envName("answer"))
		fs.PrintDefaults()
	}
	if err := envflag.Parse(fs, args, envPrefix, getenv); err != nil {
		return nil, err
	}

	switch strings.ToLower(o.answer) {
	case "":
	case "y", "yes":
		o.answer, o.feedback = "y", true
	case "n", "no":
		o.answer, o.feedback = "n", true
	default:
		return nil, fmt.Errorf("--answer %q: expected y or n", o.answer)
	}
	if o.feedbackToken == "" {
		o.feedbackToken = getenv("FEEDBACK_PROXY_FEEDBACK_TOKEN")
	}
	if o.phoenixURL == "" {
		o.phoenixURL = getenv("PHOENIX_ENDPOINT")
	}
	if o.phoenixURL == "" {
		o.phoenixURL = defaultPhoenixURL
	}
	if o.phoenixUIURL == "" {
		o.phoenixUIURL = o.phoenixURL
	}
	for _, u := range []struct{ flag, val string }{
		{"--feedback-url", o.feedbackURL}, {"--phoenix-url", o.phoenixURL}, {"--phoenix-ui-url", o.phoenixUIURL},
	} {
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("%s %q: expected an http:// or https:// URL", u.flag, u.val)
		}
	}
	o.feedbackURL = strings.TrimRight(o.feedbackURL, "/")
	o.phoenixURL = strings.TrimRight(o.phoenixURL, "/")
	o.phoenixUIURL = strings.TrimRight(o.phoenixUIURL, "/")
	if strings.TrimSpace(o.model) == "" {
		return nil, errors.New("--model: expected a model name, e.g. " + defaultModel)
	}
	if strings.TrimSpace(o.question) == "" {
		return nil, errors.New("--question: expected a question")
	}
	if o.wait < 0 || o.startupWait < 0 {
		return nil, errors.New("--wait and --startup-wait: expected a duration of zero or more")
	}
	return o, nil
}
