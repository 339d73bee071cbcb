#!/usr/bin/env python3
"""A small LLM app traced with OpenTelemetry, for the end-to-end tests and captures.

It stands for a real user's app: a request handler (span ``handle_request``) asks an
LLM server one question with the provider's official SDK: ``openai`` (the default),
``anthropic`` (``--provider anthropic``) or ``google-genai`` (``--provider google``), or,
for OpenAI, through a framework: LiteLLM (``litellm.completion`` with model
``openai/<model>``) or LangChain (a ``prompt | ChatOpenAI`` chain from langchain-openai),
chosen by the instrumentation's name (``litellm-...``, ``langchain-...``).
Instrumentors add the LLM span and the HTTP client span. The LLM span comes from
OpenInference (every provider), opentelemetry-instrumentation-openai-v2 (openai),
OpenLLMetry's opentelemetry-instrumentation-anthropic (anthropic) or, with
``--instrumentation sdk``, the anthropic SDK's own OpenTelemetry tracing (on by default in
anthropic 1.x; the app turns it off beside the other anthropic instrumentations, so that
theirs is the only LLM span); for the frameworks from OpenInference's LiteLLM or LangChain
instrumentation, or OpenLLMetry's LiteLLM one. The HTTP client span comes from
``HTTPX2ClientInstrumentor`` (openai, anthropic and LangChain's ChatOpenAI send through
httpx2) or ``HTTPXClientInstrumentor`` (google-genai and LiteLLM send through httpx).
Spans leave through the real OTLP exporter (HTTP/protobuf or gRPC)
and are flushed before exit. The app prints one stdout line, a JSON object
``{"response_id": ..., "answer": ..., "trace_id": ...}``, the response id being the one the
SDK returned (OpenAI's ``id``, Anthropic's message ``id``, google-genai's ``response_id``,
LiteLLM's ``ModelResponse.id``, LangChain's ``response_metadata["id"]``, or, where LangChain
hands the app none, the message's own ``id``, a LangChain run id ``lc_run--...``):
after the flush by default, or, with ``--print-early``, the moment the response is in, while
the spans still sit in the batch processor (``--linger-ms`` then keeps the process, and so the
processor, alive a while longer, as a long-running app would be).

Run it with the project's venv, e.g.::

    .venv/bin/python e2e/apps/app.py --instrumentation openinference --call chat \
        --base-url http://127.0.0.1:8080/v1 --endpoint http://127.0.0.1:4318
    .venv/bin/python e2e/apps/app.py --provider anthropic --instrumentation openllmetry \
        --call chat-stream --base-url http://127.0.0.1:8080 --endpoint http://127.0.0.1:4318
    .venv/bin/python e2e/apps/app.py --instrumentation langchain-openinference --call chat \
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

# What each provider's app can do: its instrumentations and calls.
PROVIDERS = {
    "openai": {
        "instrumentations": ("openinference", "openai-v2", "litellm-openinference", "litellm-openllmetry",
                             "langchain-openinference"),
        "calls": ("chat", "chat-stream", "responses", "responses-stream"),
        "model": "gpt-4o-mini",
        "base_url_env": "OPENAI_BASE_URL",
    },
    "anthropic": {
        "instrumentations": ("openinference", "openllmetry", "sdk"),
        "calls": ("chat", "chat-stream"),
        "model": "claude-haiku-4-5",
        "base_url_env": "ANTHROPIC_BASE_URL",
    },
    "google": {
        "instrumentations": ("openinference",),
        "calls": ("chat", "chat-stream"),
        "model": "gemini-2.5-flash",
        "base_url_env": "GOOGLE_GEMINI_BASE_URL",
    },
}
# The calls of the instrumentations that do not take all of their provider's.
# The app asks LiteLLM through its chat completions (litellm.completion) only.
INSTRUMENTATION_CALLS = {
    "litellm-openinference": ("chat", "chat-stream"),
    "litellm-openllmetry": ("chat", "chat-stream"),
}
INSTRUMENTATIONS = tuple(dict.fromkeys(i for p in PROVIDERS.values() for i in p["instrumentations"]))
CALLS = tuple(dict.fromkeys(c for p in PROVIDERS.values() for c in p["calls"]))
DEFAULT_QUESTION = "In which ocean is Bouvet Island?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--provider", choices=tuple(PROVIDERS), default="openai",
                   help="which SDK asks: openai (default), anthropic or google (google-genai)")
    p.add_argument("--instrumentation", choices=INSTRUMENTATIONS, required=True,
                   help="which instrumentation makes the LLM span: openinference (any provider), "
                        "openai-v2 (openai), openllmetry (anthropic), sdk (anthropic: the SDK's own tracing); "
                        "through a framework (openai): litellm-openinference, litellm-openllmetry (the app "
                        "calls litellm.completion), langchain-openinference (a prompt | ChatOpenAI chain)")
    p.add_argument("--call", choices=CALLS, required=True,
                   help="which API to call, streamed or not: chat completions or Responses (openai), "
                        "Messages (anthropic) and generateContent (google): chat and chat-stream only")
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
    p.add_argument("--base-url", default=None,
                   help="the SDK's base URL: for openai e.g. http://127.0.0.1:8080/v1 (default "
                        "$OPENAI_BASE_URL), for anthropic and google the server's root, e.g. "
                        "http://127.0.0.1:8080 (default $ANTHROPIC_BASE_URL, $GOOGLE_GEMINI_BASE_URL)")
    p.add_argument("--model", default=None,
                   help="model name (default gpt-4o-mini, claude-haiku-4-5 or gemini-2.5-flash)")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the user's question")
    args = p.parse_args(argv)
    spec = PROVIDERS[args.provider]
    if args.instrumentation not in spec["instrumentations"]:
        p.error(f"--instrumentation {args.instrumentation} does not instrument --provider {args.provider} "
                f"(choose from {', '.join(spec['instrumentations'])})")
    if args.call not in spec["calls"]:
        p.error(f"--call {args.call} is not a call of --provider {args.provider} "
                f"(choose from {', '.join(spec['calls'])})")
    calls = INSTRUMENTATION_CALLS.get(args.instrumentation, spec["calls"])
    if args.call not in calls:
        p.error(f"--call {args.call} is not a call of --instrumentation {args.instrumentation} "
                f"(choose from {', '.join(calls)})")
    if args.base_url is None:
        args.base_url = os.environ.get(spec["base_url_env"])
    if args.model is None:
        args.model = spec["model"]
    return args


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

    # openai 3.x and anthropic 1.x send their requests with httpx2, a fork of
    # httpx with its own classes: HTTPXClientInstrumentor patches httpx and
    # would see nothing. HTTPX2ClientInstrumentor patches httpx2's transports,
    # so the HTTP client span becomes a child of the LLM span. google-genai
    # prefers httpx when it is installed (it is: openai-v2 needs it), and
    # LiteLLM hands the openai SDK an httpx.Client of its own.
    if args.provider == "google" or framework_of(args.instrumentation) == "litellm":
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor as HTTPInstrumentor
    else:
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor as HTTPInstrumentor
    HTTPInstrumentor().instrument(tracer_provider=provider)

    instrumentor = instrumentor_of(args.provider, args.instrumentation)
    if instrumentor is not None:
        instrumentor().instrument(tracer_provider=provider)

    # The batch processor goes in last (instrumenting imports openai, which is
    # slow): its timer starts with it, so its first export comes about one
    # schedule delay after the call however long the imports took.
    provider.add_span_processor(
        BatchSpanProcessor(new_exporter(args.exporter, args.endpoint),
                           schedule_delay_millis=args.schedule_delay_ms))
    return provider


def framework_of(instrumentation: str) -> str | None:
    """Returns the framework the app asks through ("litellm", "langchain"); None for the SDK itself."""
    framework, _, _ = instrumentation.partition("-")
    return framework if framework in ("litellm", "langchain") else None


def instrumentor_of(provider: str, instrumentation: str):
    """Returns the instrumentor class that makes the LLM span; None when the SDK traces itself."""
    if instrumentation == "litellm-openinference":
        from openinference.instrumentation.litellm import LiteLLMInstrumentor

        return LiteLLMInstrumentor
    if instrumentation == "litellm-openllmetry":
        # OpenLLMetry's (Traceloop's), published under the opentelemetry name.
        from opentelemetry.instrumentation.litellm import LiteLLMInstrumentor

        return LiteLLMInstrumentor
    if instrumentation == "langchain-openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        return LangChainInstrumentor
    if provider == "openai":
        if instrumentation == "openinference":
            from openinference.instrumentation.openai import OpenAIInstrumentor
        else:
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        return OpenAIInstrumentor
    if provider == "anthropic":
        if instrumentation == "sdk":
            return None
        if instrumentation == "openinference":
            from openinference.instrumentation.anthropic import AnthropicInstrumentor
        else:
            # OpenLLMetry's (Traceloop's), published under the opentelemetry name.
            from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        return AnthropicInstrumentor
    from openinference.instrumentation.google_genai import GoogleGenAIInstrumentor

    return GoogleGenAIInstrumentor


def new_client(args: argparse.Namespace):
    """Returns the provider's SDK client for the server at args.base_url (for
    LiteLLM, the litellm module with the keyword arguments of each call)."""
    framework = framework_of(args.instrumentation)
    if framework == "litellm":
        import litellm

        # Called as litellm.completion, looked up at each call: OpenInference
        # instruments LiteLLM by replacing the module's functions.
        return litellm, {"model": "openai/" + args.model, "api_base": args.base_url,
                         "api_key": os.environ.get("OPENAI_API_KEY") or "sk-dummy", "max_retries": 0}
    if framework == "langchain":
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_openai import ChatOpenAI

        # A chain as LangChain's docs build one: the prompt template, then the
        # chat model. use_responses_api picks the Responses API over chat
        # completions.
        model = ChatOpenAI(model=args.model, base_url=args.base_url,
                           api_key=os.environ.get("OPENAI_API_KEY") or "sk-dummy", max_retries=0,
                           use_responses_api=args.call.startswith("responses"))
        return ChatPromptTemplate.from_messages([("user", "{question}")]) | model
    if args.provider == "anthropic":
        import anthropic

        # anthropic 1.x traces its own calls with the global tracer provider
        # (span anthropic.messages.create, GenAI attributes). Beside an
        # instrumentation that makes a second LLM span for the same call, so
        # it is off unless it is the one under test.
        return anthropic.Anthropic(api_key=os.environ.get("ANTHROPIC_API_KEY") or "sk-ant-dummy",
                                   base_url=args.base_url, max_retries=0,
                                   open_telemetry=None if args.instrumentation == "sdk" else False)
    if args.provider == "google":
        from google import genai
        from google.genai import types

        # The Gemini Developer API (not Vertex AI), at the given root; the SDK
        # adds the API version (v1beta) itself. No retries, like the others.
        return genai.Client(
            vertexai=False,
            api_key=os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or "dummy",
            http_options=types.HttpOptions(base_url=args.base_url,
                                           retry_options=types.HttpRetryOptions(attempts=1)))
    import openai

    return openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "sk-dummy",
                         base_url=args.base_url, max_retries=0)


def ask_anthropic(client, call: str, model: str, question: str) -> tuple[str | None, str]:
    """Messages API: the id is the Message's id (msg_...)."""
    messages = [{"role": "user", "content": question}]
    if call == "chat":
        message = client.messages.create(model=model, max_tokens=1024, messages=messages)
        return message.id, "".join(b.text for b in message.content if b.type == "text")
    if call == "chat-stream":
        # Iterated to the end as Anthropic's docs show, not in a with block:
        # OpenLLMetry 0.62.4 wraps the Stream in a proxy whose __enter__
        # returns the bare Stream, and then never ends (nor exports) its span.
        response_id, parts = None, []
        stream = client.messages.create(model=model, max_tokens=1024, messages=messages, stream=True)
        for event in stream:
            if event.type == "message_start":
                response_id = event.message.id
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                parts.append(event.delta.text)
        return response_id, "".join(parts)
    raise ValueError(f"unknown call {call!r}")


def ask_google(client, call: str, model: str, question: str) -> tuple[str | None, str]:
    """generateContent: the id is the GenerateContentResponse's response_id."""
    if call == "chat":
        response = client.models.generate_content(model=model, contents=question)
        return response.response_id, response.text or ""
    if call == "chat-stream":
        response_id, parts = None, []
        for chunk in client.models.generate_content_stream(model=model, contents=question):
            response_id = response_id or chunk.response_id
            parts.append(chunk.text or "")
        return response_id, "".join(parts)
    raise ValueError(f"unknown call {call!r}")


def ask_litellm(client, call: str, model: str, question: str) -> tuple[str | None, str]:
    """litellm.completion: the id is the ModelResponse's (or the chunks') id, OpenAI's."""
    litellm, kwargs = client
    messages = [{"role": "user", "content": question}]
    if call == "chat":
        response = litellm.completion(messages=messages, **kwargs)
        return response.id, response.choices[0].message.content or ""
    if call == "chat-stream":
        response_id, parts = None, []
        for chunk in litellm.completion(messages=messages, stream=True, stream_options={"include_usage": True},
                                        **kwargs):
            response_id = response_id or chunk.id
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
        return response_id, "".join(parts)
    raise ValueError(f"unknown call {call!r}")


def ask_langchain(chain, call: str, model: str, question: str) -> tuple[str | None, str]:
    """The chain's AIMessage: the provider's id is in its response_metadata.

    langchain-openai 1.7.4 puts it there for chat completions and for the
    Responses API (in the first chunk when streaming) but drops it from
    streamed chat completion chunks: then the message's own id, a LangChain
    run id (lc_run--...), is all the app has, and it prints that.
    """
    if call in ("chat", "responses"):
        message = chain.invoke({"question": question})
        return message.response_metadata.get("id") or message.id, message.text
    if call in ("chat-stream", "responses-stream"):
        response_id, message_id, parts = None, None, []
        for chunk in chain.stream({"question": question}):
            response_id = response_id or chunk.response_metadata.get("id")
            message_id = message_id or chunk.id
            parts.append(chunk.text)
        return response_id or message_id, "".join(parts)
    raise ValueError(f"unknown call {call!r}")


def ask(client, call: str, model: str, question: str) -> tuple[str | None, str]:
    """Makes one OpenAI call and returns (response id, answer text)."""
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
    if framework_of(args.instrumentation) == "litellm":
        # LiteLLM fetches its model price list from GitHub when imported,
        # unless told to use the copy it ships (its documented switch): the
        # app runs offline, against a local server.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    provider = setup_tracing(args)

    # The SDK is imported after instrumenting, as an app that follows the
    # instrumentors' docs would; they patch classes, so the order is not critical.
    client = new_client(args)
    ask_fn = {"openai": ask, "anthropic": ask_anthropic, "google": ask_google}[args.provider]
    ask_fn = {"litellm": ask_litellm, "langchain": ask_langchain}.get(framework_of(args.instrumentation), ask_fn)
    tracer = trace.get_tracer("feedback-e2e-app")
    try:
        with tracer.start_as_current_span("handle_request", kind=trace.SpanKind.SERVER) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            response_id, answer = ask_fn(client, args.call, args.model, args.question)
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
