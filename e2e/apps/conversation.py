#!/usr/bin/env python3
"""A chat app with sessions, for the end-to-end tests of feedback on traces and sessions.

It stands for a real chat backend traced with OpenInference: every turn of a conversation is
one trace (a request handler span, ``handle_turn``), and every trace of the conversation carries
the same ``session.id``, set with OpenInference's ``using_session`` as its docs show. The first
turn asks the LLM once; the second builds its answer from two calls (a draft, then the answer),
so that the answer is one trace holding two LLM spans. The OpenAI SDK calls an OpenAI-compatible
server (``--base-url``), ``openinference-instrumentation-openai`` makes the LLM spans, and the
real OTLP/HTTP exporter sends them to ``--endpoint`` (flushed before exit). The app prints one
JSON line::

    {"session_id": "...", "turns": [{"trace_id": "...", "response_ids": ["chatcmpl-..."]},
                                   {"trace_id": "...", "response_ids": ["chatcmpl-...", "chatcmpl-..."]}]}

Run it with the project's venv, e.g.::

    .venv/bin/python e2e/apps/conversation.py --base-url http://127.0.0.1:8080/v1 \\
        --endpoint http://127.0.0.1:4318 --session-id conv-1
"""

from __future__ import annotations

import argparse
import json

from openinference.instrumentation import using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="the OpenAI SDK's base URL, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--endpoint", required=True, help="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318")
    p.add_argument("--session-id", required=True, help="the conversation's id, set as session.id")
    p.add_argument("--project", default=None, help="Phoenix project (resource attribute openinference.project.name)")
    p.add_argument("--question", default="In which ocean is Bouvet Island?")
    args = p.parse_args()

    attributes = {"service.name": "feedback-e2e-conversation"}
    if args.project:
        attributes["openinference.project.name"] = args.project
    provider = TracerProvider(resource=Resource.create(attributes))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=args.endpoint.rstrip("/") + "/v1/traces"), schedule_delay_millis=100))
    tracer = provider.get_tracer("feedback-e2e-conversation")

    import openai

    client = openai.OpenAI(api_key="sk-e2e", base_url=args.base_url, max_retries=0)

    def ask(messages: list[dict]) -> tuple[str, str]:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return completion.id, completion.choices[0].message.content or ""

    turns = []
    history: list[dict] = []
    with using_session(args.session_id):
        # Turn 1: one call.
        with tracer.start_as_current_span("handle_turn") as span:
            history.append({"role": "user", "content": args.question})
            rid, answer = ask(history)
            history.append({"role": "assistant", "content": answer})
            turns.append({"trace_id": format(span.get_span_context().trace_id, "032x"), "response_ids": [rid]})
        # Turn 2: a draft, then the answer built from it: two LLM spans, one trace.
        with tracer.start_as_current_span("handle_turn") as span:
            history.append({"role": "user", "content": "Are you sure? " + args.question})
            draft_id, draft = ask(history)
            final_id, answer = ask(history + [{"role": "assistant", "content": draft},
                                              {"role": "user", "content": "Answer again, briefly."}])
            turns.append({"trace_id": format(span.get_span_context().trace_id, "032x"),
                          "response_ids": [draft_id, final_id]})

    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"session_id": args.session_id, "turns": turns}), flush=True)


if __name__ == "__main__":
    main()
