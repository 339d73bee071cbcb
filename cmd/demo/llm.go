package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attributes of the LLM span. The demo writes both conventions by hand, as
// an instrumentation library would, so that the span reads the same to any
// backend: the OpenTelemetry GenAI conventions
// (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/), where
// gen_ai.response.id is the key the proxy indexes, and the OpenInference
// ones Phoenix renders an LLM span from
// (https://github.com/Arize-ai/openinference/blob/main/spec/semantic_conventions.md).
const (
	attrGenAIOperation     = "gen_ai.operation.name"
	attrGenAIProvider      = "gen_ai.provider.name"
	attrGenAISystem        = "gen_ai.system" // the older name of gen_ai.provider.name
	attrGenAIRequestModel  = "gen_ai.request.model"
	attrGenAIResponseID    = "gen_ai.response.id"
	attrGenAIResponseModel = "gen_ai.response.model"
	attrGenAIFinishReasons = "gen_ai.response.finish_reasons"
	attrGenAIInputTokens   = "gen_ai.usage.input_tokens"
	attrGenAIOutputTokens  = "gen_ai.usage.output_tokens"
	attrServerAddress      = "server.address"
	attrServerPort         = "server.port"

	attrSpanKind             = "openinference.span.kind"
	attrLLMModelName         = "llm.model_name"
	attrLLMSystem            = "llm.system"
	attrLLMProvider          = "llm.provider"
	attrLLMInvocationParams  = "llm.invocation_parameters"
	attrInputValue           = "input.value"
	attrInputMimeType        = "input.mime_type"
	attrOutputValue          = "output.value"
	attrOutputMimeType       = "output.mime_type"
	attrInputMessageRole     = "llm.input_messages.0.message.role"
	attrInputMessageContent  = "llm.input_messages.0.message.content"
	attrOutputMessageRole    = "llm.output_messages.0.message.role"
	attrOutputMessageContent = "llm.output_messages.0.message.content"
	attrTokensPrompt         = "llm.token_count.prompt"
	attrTokensCompletion     = "llm.token_count.completion"
	attrTokensTotal          = "llm.token_count.total"

	mimeJSON = "application/json"
	mimeText = "text/plain"
	provider = "openai"
)

// llm asks questions through the official OpenAI SDK and traces each call.
type llm struct {
	client openai.Client
	tracer trace.Tracer
	// baseURL is the API's base, for server.address and server.port.
	baseURL string
}

// newLLM returns a client for baseURL with opts (the key), whose HTTP
// requests are traced as children of the LLM span.
func newLLM(tracer trace.Tracer, baseURL string, opts ...option.RequestOption) *llm {
	opts = append(opts, option.WithBaseURL(baseURL), option.WithMiddleware(httpSpan(tracer)))
	return &llm{client: openai.NewClient(opts...), tracer: tracer, baseURL: baseURL}
}

// reply is what the demo keeps of an answer.
type reply struct {
	Answer     string
	ResponseID string
	Model      string
	TraceID    string
	SpanID     string
}

// ask sends one chat completion inside an LLM span. The span is a child of
// the span in ctx, and the parent of the HTTP request's span: the proxy must
// annotate this one, not its parent nor its child.
func (l *llm) ask(ctx context.Context, model, question string) (reply, error) {
	params := openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)},
	}
	input, err := json.Marshal(params)
	if err != nil {
		return reply{}, fmt.Errorf("encode the request: %w", err)
	}
	invocation, _ := json.Marshal(map[string]string{"model": model})
	attrs := []attribute.KeyValue{
		attribute.String(attrGenAIOperation, "chat"),
		attribute.String(attrGenAIProvider, provider),
		attribute.String(attrGenAISystem, provider),
		attribute.String(attrGenAIRequestModel, model),
		attribute.String(attrSpanKind, "LLM"),
		attribute.String(attrLLMSystem, provider),
		attribute.String(attrLLMProvider, provider),
		attribute.String(attrLLMModelName, model),
		attribute.String(attrLLMInvocationParams, string(invocation)),
		attribute.String(attrInputValue, string(input)),
		attribute.String(attrInputMimeType, mimeJSON),
		attribute.String(attrInputMessageRole, "user"),
		attribute.String(attrInputMessageContent, question),
	}
	attrs = append(attrs, serverAttrs(l.baseURL)...)
	// The GenAI span name: "{gen_ai.operation.name} {gen_ai.request.model}".
	ctx, span := l.tracer.Start(ctx, "chat "+model, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()

	resp, err := l.client.Chat.Completions.New(ctx, params)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attribute.String("error.type", errorType(err)))
		return reply{}, err
	}
	if len(resp.Choices) == 0 {
		err := fmt.Errorf("response %s has no choices", resp.ID)
		span.SetStatus(codes.Error, err.Error())
		return reply{}, err
	}
	msg := resp.Choices[0].Message
	span.SetAttributes(
		attribute.String(attrGenAIResponseID, resp.ID),
		attribute.String(attrGenAIResponseModel, resp.Model),
		attribute.StringSlice(attrGenAIFinishReasons, []string{resp.Choices[0].FinishReason}),
		attribute.Int64(attrGenAIInputTokens, resp.Usage.PromptTokens),
		attribute.Int64(attrGenAIOutputTokens, resp.Usage.CompletionTokens),
		// OpenInference records the provider's JSON as the output, where the
		// response id is the top-level "id".
		attribute.String(attrOutputValue, resp.RawJSON()),
		attribute.String(attrOutputMimeType, mimeJSON),
		attribute.String(attrOutputMessageRole, "assistant"),
		attribute.String(attrOutputMessageContent, msg.Content),
		attribute.Int64(attrTokensPrompt, resp.Usage.PromptTokens),
		attribute.Int64(attrTokensCompletion, resp.Usage.CompletionTokens),
		attribute.Int64(attrTokensTotal, resp.Usage.TotalTokens),
	)
	sc := span.SpanContext()
	return reply{
		Answer:     msg.Content,
		ResponseID: resp.ID,
		Model:      resp.Model,
		TraceID:    sc.TraceID().String(),
		SpanID:     sc.SpanID().String(),
	}, nil
}

// serverAttrs are server.address and server.port of the API.
func serverAttrs(baseURL string) []attribute.KeyValue {
	u, err := url.Parse(baseURL)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	attrs := []attribute.KeyValue{attribute.String(attrServerAddress, u.Hostname())}
	port := u.Port()
	if port == "" && u.Scheme == "https" {
		port = "443"
	} else if port == "" {
		port = "80"
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, attribute.Int(attrServerPort, p))
	}
	return attrs
}

// errorType is the error.type of a failed call: the HTTP status, else the
// Go type.
func errorType(err error) string {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return strconv.Itoa(apiErr.StatusCode)
	}
	return fmt.Sprintf("%T", err)
}

// httpSpan traces each HTTP request of the SDK (retries included) as a
// client span, as an HTTP instrumentation would: the child under the LLM
// span that the seed exercise had to tell apart from it.
func httpSpan(tracer trace.Tracer) option.Middleware {
	return func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		attrs := []attribute.KeyValue{
			attribute.String("http.request.method", req.Method),
			attribute.String("url.full", req.URL.Redacted()),
			attribute.String(attrServerAddress, req.URL.Hostname()),
		}
		if p, err := strconv.Atoi(req.URL.Port()); err == nil {
			attrs = append(attrs, attribute.Int(attrServerPort, p))
		}
		ctx, span := tracer.Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
		defer span.End()
		resp, err := next(req.WithContext(ctx))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attribute.String("error.type", fmt.Sprintf("%T", err)))
			return resp, err
		}
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetStatus(codes.Error, resp.Status)
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
		}
		return resp, nil
	}
}
