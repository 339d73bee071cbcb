#!/usr/bin/env python3
"""A small OpenAI app traced with OpenTelemetry, for the end-to-end tests and captures.

It stands for a real user's app: a request handler (span ``handle_request``) asks an
OpenAI-compatible server one question with the official ``openai`` SDK. Instrumentors
add the LLM span (OpenInference or opentelemetry-instrumentation-openai-v2) and the
HTTP client span below it. Spans leave through the real OTLP exporter (HTTP/protobuf
or gRPC) and are flushed before exit. The app prints one stdout line, a JSON object
``{"response_id": ..., "answer": ..., "trace_id": ...}``: after the flush by default, or, with
``--print-early``, the moment the response is in, while the spans still sit in the batch
processor (``--linger-ms`` then keeps the process, and so the processor, alive a while longer,
as a long-running app would be).

Run it with the project's venv, e.g.::

    .venv/bin/python e2e/apps/app.py --instrumentation openinference --call chat \
        --base-url http://127.0.0.1:8080/v1 --endpoint http://127.0.0.1:4318
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

INSTRUMENTATIONS = ("openinference", "openai-v2")
CALLS = ("chat", "chat-stream", "responses", "responses-stream")
DEFAULT_QUESTION = "In which ocean is Bouvet Island?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instrumentation", choices=INSTRUMENTATIONS, required=True,
                   help="which OpenAI instrumentation makes the LLM span")
    p.add_argument("--call", choices=CALLS, required=True,
                   help="which API to call: chat completions or Responses, streamed or not")
    p.add_argument("--exporter", choices=("http", "grpc"), default="http",
                   help="OTLP transport (default http, i.e. HTTP/protobuf)")
    p.add_argument("--endpoint", default=None,
                   help="OTLP endpoint: for http a base URL such as http://127.0.0.1:4318 "
                        "(/v1/traces is appended unless already there); for grpc host:port "
                        "such as 127.0.0.1:4317. Default: the exporter's own default")
    p.add_argument("--project", default=None,
                   help="Phoenix project, sent as resource attribute openinference.project.name")
    p.add_argument("--schedule-delay-ms", type=int, default=100,
                   help="BatchSpanProcessor schedule delay in ms (default 100; the SDK's own is 5000)")
    p.add_argument("--print-early", action="store_true",
                   help="print the JSON line as soon as the response is in, before the spans "
                        "are exported (default: after the final flush)")
    p.add_argument("--linger-ms", type=int, default=0,
                   help="wait this long after the call before flushing and shutting the tracer "
                        "provider down (default 0); the batch processor exports on its own "
                        "schedule meanwhile")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                   help="OpenAI base URL, e.g. http://127.0.0.1:8080/v1 (default $OPENAI_BASE_URL)")
    p.add_argument("--model", default="gpt-4o-mini", help="model name (default gpt-4o-mini)")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the user's question")
    return p.parse_args(argv)


def new_exporter(kind: str, endpoint: str | None):
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if endpoint is None:
            return OTLPSpanExporter(insecure=True)
        # The gRPC exporter takes host:port; a scheme is accepted too.
        return OTLPSpanExporter(endpoint=endpoint, insecure=True)

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint is None:
        return OTLPSpanExporter()
    endpoint = endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)


def setup_tracing(args: argparse.Namespace) -> TracerProvider:
    attributes = {"service.name": "feedback-e2e-app"}
    if args.project:
        attributes["openinference.project.name"] = args.project
    provider = TracerProvider(resource=Resource.create(attributes))
    trace.set_tracer_provider(provider)

    # openai 3.x sends its requests with httpx2, a fork of httpx with its own
    # classes: HTTPXClientInstrumentor patches httpx and would see nothing.
    # HTTPX2ClientInstrumentor patches httpx2's transports, so the HTTP client
    # span becomes a child of the LLM span.
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor

    HTTPX2ClientInstrumentor().instrument(tracer_provider=provider)

    if args.instrumentation == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    OpenAIInstrumentor().instrument(tracer_provider=provider)

    # The batch processor goes in last (instrumenting imports openai, which is
    # slow): its timer starts with it, so its first export comes about one
    # schedule delay after the call however long the imports took.
    provider.add_span_processor(
        BatchSpanProcessor(new_exporter(args.exporter, args.endpoint),
                           schedule_delay_millis=args.schedule_delay_ms))
    return provider


def ask(client, call: str, model: str, question: str) -> tuple[str | None, str]:
    """Makes one call and returns (response id, answer text)."""
    messages = [{"role": "user", "content": question}]
    if call == "chat":
        completion = client.chat.completions.create(model=model, messages=messages)
        return completion.id, completion.choices[0].message.content or ""
    if call == "chat-stream":
        response_id, parts = None, []
        with client.chat.completions.create(model=model, messages=messages, stream=True,
                                            stream_options={"include_usage": True}) as stream:
            for chunk in stream:
                response_id = response_id or chunk.id
                for choice in chunk.choices:
                    parts.append(choice.delta.content or "")
        return response_id, "".join(parts)
    if call == "responses":
        response = client.responses.create(model=model, input=question)
        return response.id, response.output_text
    if call == "responses-stream":
        response_id, parts = None, []
        with client.responses.create(model=model, input=question, stream=True) as stream:
            for event in stream:
                if event.type == "response.created":
                    response_id = event.response.id
                elif event.type == "response.output_text.delta":
                    parts.append(event.delta)
        return response_id, "".join(parts)
    raise ValueError(f"unknown call {call!r}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    provider = setup_tracing(args)

    # Imported after instrumenting, as an app that follows the instrumentors'
    # docs would; the instrumentors patch classes, so the order is not critical.
    import openai

    client = openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "sk-dummy",
                           base_url=args.base_url, max_retries=0)
    tracer = trace.get_tracer("feedback-e2e-app")
    try:
        with tracer.start_as_current_span("handle_request", kind=trace.SpanKind.SERVER) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            response_id, answer = ask(client, args.call, args.model, args.question)
        result = json.dumps({"response_id": response_id, "answer": answer, "trace_id": trace_id})
        if args.print_early:
            # Like an app that shows the answer (and its thumbs buttons) at
            # once: the user may vote before the spans leave the process.
            print(result, flush=True)
        if args.linger_ms > 0:
            time.sleep(args.linger_ms / 1000)
    finally:
        # Export everything before exiting: shutdown flushes the batch processor.
        provider.force_flush()
        provider.shutdown()
    if not args.print_early:
        print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
