#!/usr/bin/env python3
"""Steady OTLP load from the real Python OpenTelemetry SDK, for the fault suite.

Each trace is what an LLM app exports: a request span, an LLM span carrying the
GenAI conventions (gen_ai.response.id = "chatcmpl-<run>-<n>") and an HTTP client
span below it. Spans go through the SDK's BatchSpanProcessor and the real OTLP
exporter (HTTP/protobuf or gRPC), exactly as an app's would. At the end the
provider is flushed and the script prints one JSON line:
{"traces": N, "spans": 3N, "run": RUN}.

    .venv/bin/python faults/load.py --endpoint http://127.0.0.1:4318 --rate 50 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="http: base URL (…:4318); grpc: host:port")
    p.add_argument("--exporter", choices=("http", "grpc"), default="http")
    p.add_argument("--project", default="faults", help="openinference.project.name")
    p.add_argument("--run", default="run", help="tag in every response id")
    p.add_argument("--rate", type=float, default=20, help="traces per second")
    p.add_argument("--seconds", type=float, default=10, help="how long to send")
    p.add_argument("--max-traces", type=int, default=100000, help="bound on traces sent")
    args = p.parse_args()

    if args.exporter == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=args.endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = args.endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=url)

    provider = TracerProvider(resource=Resource.create({
        "service.name": "fault-load", "openinference.project.name": args.project}))
    # A queue large enough that the SDK itself never drops: the suite measures the proxy.
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=200000, schedule_delay_millis=500, max_export_batch_size=256))
    tracer = provider.get_tracer("fault-load")

    n = 0
    start = time.monotonic()
    interval = 1.0 / args.rate
    while n < args.max_traces and time.monotonic() - start < args.seconds:
        with tracer.start_as_current_span("handle_request", kind=SpanKind.SERVER):
            with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as llm:
                llm.set_attribute("gen_ai.operation.name", "chat")
                llm.set_attribute("gen_ai.provider.name", "openai")
                llm.set_attribute("gen_ai.request.model", "gpt-4o-mini")
                llm.set_attribute("gen_ai.response.id", f"chatcmpl-{args.run}-{n}")
                llm.set_attribute("gen_ai.usage.input_tokens", 12)
                llm.set_attribute("gen_ai.usage.output_tokens", 3)
                with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as http:
                    http.set_attribute("http.request.method", "POST")
        n += 1
        next_at = start + n * interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    # The exporter retries on its own; give it time to get everything out.
    provider.force_flush(timeout_millis=120000)
    provider.shutdown()
    print(json.dumps({"traces": n, "spans": 3 * n, "run": args.run}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
