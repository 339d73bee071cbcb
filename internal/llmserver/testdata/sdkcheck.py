"""Check llmserver's Anthropic and Gemini answers against the official SDKs.

Runs the Go server (testdata/serve.go) and calls it with the Anthropic SDK
(messages.create, plain and stream=True, and the messages.stream helper) and
google-genai (models.generate_content and generate_content_stream), asserting
that the SDKs parse every field (ids, text, finish reasons, usage), that the
ids they report are the ones the server issued, and that error answers become
the SDKs' typed errors. Raw bodies are also validated strictly with the SDKs'
pydantic types, and unknown fields are refused, so nothing the server sends is
silently dropped.

Run it in a throwaway venv, not the repo's .venv, from the repository root:

    python3 -m venv /tmp/llmsdk && /tmp/llmsdk/bin/pip install anthropic google-genai
    /tmp/llmsdk/bin/python internal/llmserver/testdata/sdkcheck.py

It needs go on PATH; it prints the SDK versions and "sdkcheck: OK" at the end.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from importlib.metadata import version

import anthropic
import pydantic
from anthropic.types import Message, RawMessageStreamEvent
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

QUESTION = "In which ocean is Bouvet Island?"
ANSWER = "South Atlantic Ocean"
KEY = "sk-sdkcheck"
HERE = os.path.dirname(os.path.abspath(__file__))


def start_server():
    exe = os.path.join(tempfile.mkdtemp(prefix="llmserver-"), "serve")
    subprocess.run(["go", "build", "-o", exe, os.path.join(HERE, "serve.go")], check=True, cwd=HERE)
    proc = subprocess.Popen(
        [exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "LLMSERVER_API_KEY": KEY},
    )
    root = proc.stdout.readline().strip()
    assert root.startswith("http://127.0.0.1:"), root
    return proc, root


def server_state(root):
    with urllib.request.urlopen(root + "/_calls") as r:
        return json.load(r)


def post_raw(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(req) as r:
        return r.headers, r.read().decode()


def sse_data(text, eol):
    """The (event, data) pairs of an SSE body whose lines end with eol."""
    assert text.endswith(eol + eol), repr(text[-10:])
    out = []
    for block in text.split(eol + eol):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split(eol))
        out.append((fields.get("event"), fields["data"]))
    return out


def no_extras(obj, path="$"):
    """Fail on any field the SDK's model does not declare (anthropic keeps them as extras)."""
    if isinstance(obj, pydantic.BaseModel):
        extra = getattr(obj, "__pydantic_extra__", None) or {}
        assert not extra, f"{path}: fields unknown to the SDK: {sorted(extra)}"
        for name in type(obj).model_fields:
            no_extras(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            no_extras(v, f"{path}[{i}]")


def check_anthropic(root):
    client = anthropic.Anthropic(api_key=KEY, base_url=root, max_retries=0)
    ids = []

    # Plain create.
    m = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, system="Be brief.",
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert isinstance(m, Message)
    no_extras(m)
    assert re.fullmatch(r"msg_01[0-9A-Za-z]{22}", m.id), m.id
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-sonnet-4-5"
    assert [(b.type, b.text) for b in m.content] == [("text", ANSWER)], m.content
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 3, m.usage
    assert m.usage.cache_read_input_tokens == 0 and m.usage.service_tier == "standard", m.usage
    assert m._request_id and m._request_id.startswith("req_"), m._request_id
    assert server_state(root)["last"]["anthropic"] == m.id
    ids.append(m.id)
    print("anthropic create:", m.id, repr(m.content[0].text), m.usage.input_tokens, m.usage.output_tokens)

    # The same body, validated strictly (types, literals, required fields).
    _, raw = post_raw(root + "/v1/messages",
                      {"model": "claude-haiku-4-5", "max_tokens": 2, "messages": [{"role": "user", "content": "one two three"}]},
                      {"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    strict = Message.model_validate_json(raw, strict=True)
    assert strict.stop_reason == "max_tokens" and strict.usage.output_tokens == 2, strict
    ids.append(strict.id)

    # stream=True: the raw events, in order, each a valid RawMessageStreamEvent.
    stream = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, stream=True,
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"], kinds
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"], kinds
    assert set(kinds[2:-3]) == {"content_block_delta"}, kinds
    for e in events:
        no_extras(e)
    sid = events[0].message.id
    assert re.fullmatch(r"msg_01[0-9A-Za-z]{22}", sid) and events[0].message.stop_reason is None
    assert events[0].message.usage.input_tokens > 0
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == ANSWER, text
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 3
    assert server_state(root)["last"]["anthropic"] == sid
    ids.append(sid)
    print("anthropic stream:", sid, kinds)

    # The raw stream, strictly, including the ping the SDK skips.
    headers, raw = post_raw(root + "/v1/messages",
                            {"model": "m", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": QUESTION}]},
                            {"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert headers["content-type"].startswith("text/event-stream"), headers["content-type"]
    adapter = pydantic.TypeAdapter(RawMessageStreamEvent)
    names = []
    for name, data in sse_data(raw, "\n"):
        names.append(name)
        assert json.loads(data)["type"] == name
        if name != "ping":
            adapter.validate_json(data, strict=True)
    assert names[:3] == ["message_start", "content_block_start", "ping"], names
    ids.append(json.loads(sse_data(raw, "\n")[0][1])["message"]["id"])

    # The messages.stream helper accumulates the final message.
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256,
                                messages=[{"role": "user", "content": QUESTION}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == ANSWER and final.content[0].text == ANSWER
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0 and final.stop_reason == "end_turn"
    assert server_state(root)["last"]["anthropic"] == final.id
    ids.append(final.id)
    print("anthropic stream helper:", final.id, final.usage.output_tokens)

    assert len(set(ids)) == len(ids), ids

    # Errors become the SDK's typed errors.
    try:
        client.messages.create(model="m", max_tokens=10, messages=[])
        raise AssertionError("empty messages accepted")
    except anthropic.BadRequestError as e:
        assert e.status_code == 400 and e.body["type"] == "error"
        assert e.body["error"]["type"] == "invalid_request_error", e.body
        assert e.request_id and e.request_id.startswith("req_")
    try:
        anthropic.Anthropic(api_key="wrong", base_url=root, max_retries=0).messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("wrong key accepted")
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401 and e.body["error"]["type"] == "authentication_error", e.body
    print("anthropic errors: ok")
    return ids


def check_gemini(root):
    client = genai.Client(api_key=KEY, http_options={"base_url": root})
    ids = []

    r = client.models.generate_content(
        model="gemini-2.5-flash", contents=QUESTION,
        config=gtypes.GenerateContentConfig(system_instruction="Be brief.", temperature=0),
    )
    assert isinstance(r, gtypes.GenerateContentResponse)
    assert r.text == ANSWER, r.text
    assert r.response_id and re.fullmatch(r"[A-Za-z0-9_-]{23}", r.response_id), r.response_id
    assert r.model_version == "gemini-2.5-flash", r.model_version
    c = r.candidates[0]
    assert c.finish_reason == gtypes.FinishReason.STOP and c.index == 0 and c.content.role == "model"
    u = r.usage_metadata
    assert u.prompt_token_count > 0 and u.candidates_token_count == 3
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count
    assert u.prompt_tokens_details[0].modality == gtypes.MediaModality.TEXT
    assert server_state(root)["last"]["gemini"] == r.response_id
    ids.append(r.response_id)
    print("gemini generate_content:", r.response_id, repr(r.text), u.prompt_token_count, u.candidates_token_count)

    # The raw body, validated with extra fields forbidden (the SDK itself
    # drops unknown fields before validating).
    _, raw = post_raw(root + "/v1beta/models/gemini-2.5-flash:generateContent",
                      {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}], "generationConfig": {"maxOutputTokens": 2}},
                      {"x-goog-api-key": KEY})
    strict = gtypes.GenerateContentResponse.model_validate(json.loads(raw))
    assert strict.candidates[0].finish_reason == gtypes.FinishReason.MAX_TOKENS and strict.response_id
    ids.append(strict.response_id)

    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    assert len(chunks) == 3, chunks
    sid = chunks[0].response_id
    assert sid and all(ch.response_id == sid for ch in chunks), [ch.response_id for ch in chunks]
    assert "".join(ch.text for ch in chunks) == ANSWER
    assert all(ch.candidates[0].finish_reason is None for ch in chunks[:-1])
    last = chunks[-1]
    assert last.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count == 3 and last.usage_metadata.prompt_token_count > 0
    assert all(ch.model_version == "gemini-2.5-flash" for ch in chunks)
    assert server_state(root)["last"]["gemini"] == sid
    ids.append(sid)
    print("gemini generate_content_stream:", sid, [ch.text for ch in chunks])

    # The raw SSE: data-only events with CRLF line ends, each strictly valid.
    headers, raw = post_raw(root + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                            {"contents": [{"parts": [{"text": QUESTION}]}]}, {"x-goog-api-key": KEY})
    assert headers["content-type"].startswith("text/event-stream")
    for name, data in sse_data(raw, "\r\n"):
        assert name is None
        gtypes.GenerateContentResponse.model_validate(json.loads(data))

    assert len(set(ids)) == len(ids), ids

    # (Empty contents are refused by the SDK itself, before any request.)
    try:
        client.models.generate_content(
            model="gemini-2.5-flash", contents=[gtypes.Content(role="system", parts=[gtypes.Part(text="hi")])])
        raise AssertionError("role system accepted")
    except genai_errors.ClientError as e:
        assert e.code == 400 and e.status == "INVALID_ARGUMENT" and "valid role" in e.message, (e.code, e.status, e.message)
    # (Keep the client referenced: a collected genai.Client closes its connection.)
    wrong = genai.Client(api_key="wrong", http_options={"base_url": root})
    try:
        wrong.models.generate_content(model="gemini-2.5-flash", contents="hi")
        raise AssertionError("wrong key accepted")
    except genai_errors.ClientError as e:
        assert e.code == 400 and "API key not valid" in e.message, (e.code, e.message)
    print("gemini errors: ok")
    return ids


def main():
    print("anthropic", version("anthropic"), "google-genai", version("google-genai"), "pydantic", version("pydantic"))
    proc, root = start_server()
    try:
        a = check_anthropic(root)
        g = check_gemini(root)
        calls = server_state(root)["calls"]
        issued = [c["ID"] for c in calls]
        assert set(a + g) <= set(issued), (a, g, issued)
        assert len(set(issued)) == len(issued), issued
        print(f"server issued {len(issued)} ids, all distinct:", issued)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    print("sdkcheck: OK")


if __name__ == "__main__":
    sys.exit(main())
