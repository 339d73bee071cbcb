package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The proxy's default OTLP endpoints. The exporters' own defaults are the
// same host and ports but with TLS, which the proxy does not serve locally.
// Unlike OTEL_EXPORTER_OTLP_ENDPOINT, WithEndpointURL takes the path as is.
const (
	defaultOTLPHTTPEndpoint = "http://localhost:4318/v1/traces"
	defaultOTLPGRPCEndpoint = "http://localhost:4317"
)

const defaultServiceName = "phoenix-feedback-demo"

// exportTarget is the OTLP protocol and endpoint the spans go to, as the
// OTEL_EXPORTER_OTLP_* variables select them
// (https://opentelemetry.io/docs/specs/otel/protocol/exporter/).
type exportTarget struct {
	// protocol is "http/protobuf" or "grpc".
	protocol string
	// endpoint is what the environment names, for messages; "" when it names
	// none and the exporter is given defaultEndpoint.
	endpoint        string
	defaultEndpoint string
}

func (t exportTarget) String() string {
	e := t.endpoint
	if e == "" {
		e = t.defaultEndpoint
	}
	return e + " (" + t.protocol + ")"
}

// otlpTarget reads the protocol and endpoint variables. The exporters read
// the endpoint, headers, timeout and TLS variables themselves; the protocol
// is the caller's choice of exporter.
func otlpTarget(getenv func(string) string) (exportTarget, error) {
	t := exportTarget{protocol: firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")}
	switch t.protocol {
	case "http/protobuf":
		t.defaultEndpoint = defaultOTLPHTTPEndpoint
	case "grpc":
		t.defaultEndpoint = defaultOTLPGRPCEndpoint
	case "http/json":
		return t, fmt.Errorf("OTLP protocol %q: the Go exporter has no JSON encoding; use http/protobuf or grpc", t.protocol)
	default:
		return t, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: expected http/protobuf or grpc", t.protocol)
	}
	t.endpoint = firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	return t, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// newExporter builds the exporter for t. Options given here override the
// environment, so the default endpoint is only given when the environment
// names none.
func newExporter(ctx context.Context, t exportTarget) (sdktrace.SpanExporter, error) {
	if t.protocol == "grpc" {
		var opts []otlptracegrpc.Option
		if t.endpoint == "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(t.defaultEndpoint))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	var opts []otlptracehttp.Option
	if t.endpoint == "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(t.defaultEndpoint))
	}
	return otlptracehttp.New(ctx, opts...)
}

// newResource names the service; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override it. PHOENIX_PROJECT_NAME picks the
// Phoenix project, as the Phoenix SDKs do.
func newResource(ctx context.Context, getenv func(string) string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", defaultServiceName)}
	if p := getenv("PHOENIX_PROJECT_NAME"); p != "" {
		attrs = append(attrs, attribute.String("openinference.project.name", p))
	}
	// Later options win: the environment overrides the defaults.
	return resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(),
	)
}

// newTracerProvider exports with a BatchSpanProcessor at its defaults (spans
// leave up to 5 s after they end), as an app in production would: the demo
// does not flush before it sends the feedback, so the proxy really gets the
// feedback before the span, the case it exists for.
func newTracerProvider(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, exportTarget, error) {
	t, err := otlpTarget(getenv)
	if err != nil {
		return nil, t, err
	}
	exp, err := newExporter(ctx, t)
	if err != nil {
		return nil, t, fmt.Errorf("OTLP exporter for %s: %w", t, err)
	}
	res, err := newResource(ctx, getenv)
	if err != nil {
		return nil, t, fmt.Errorf("resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), t, nil
}
