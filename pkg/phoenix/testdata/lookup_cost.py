"""Loads spans into a Phoenix and measures what a response-id lookup costs it.

Used for docs/phoenix-lookup.md; not part of `go test`. With the repo's venv:

    .venv/bin/python pkg/phoenix/testdata/lookup_cost.py load --url http://127.0.0.1:26006 \
        --project lookup-cost --spans 20000
    .venv/bin/python pkg/phoenix/testdata/lookup_cost.py measure --url http://127.0.0.1:26006 \
        --project lookup-cost --pid "$(cat "$PHOENIX_WORKING_DIR/phoenix.pid")" --runs 20

`load` exports half the spans as OpenTelemetry GenAI chat spans (gen_ai.response.id
"chatcmpl-gen-<i>") and half as OpenInference ChatCompletion spans (the id only in the JSON of
output.value, "chatcmpl-oi-<i>"), one trace per span, as OTLP/HTTP protobuf to /v1/traces.
`measure` times each lookup (wall clock, p50/p90 over --runs) and reads Phoenix's CPU time
(utime+stime of the server process and its children, /proc/<pid>/stat) around each one.
"""

import argparse
import json
import os
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as svc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

T0 = 1767225600 * 10**9  # 2026-01-01T00:00:00Z


def attr(k, v):
    kv = common_pb2.KeyValue(key=k)
    if isinstance(v, int):
        kv.value.int_value = v
    else:
        kv.value.string_value = v
    return kv


def span(i, half):
    s = trace_pb2.Span(
        trace_id=(i + 1).to_bytes(16, "big"),
        span_id=(i + 1).to_bytes(8, "big"),
        start_time_unix_nano=T0 + i * 10**6,
        end_time_unix_nano=T0 + i * 10**6 + 5 * 10**8,
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
    )
    question = f"Question {i}: which ocean contains Bouvet Island?"
    if i < half:
        s.name = "chat gpt-4o-mini"
        s.attributes.extend([
            attr("gen_ai.operation.name", "chat"),
            attr("gen_ai.provider.name", "openai"),
            attr("gen_ai.request.model", "gpt-4o-mini"),
            attr("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            attr("gen_ai.response.id", f"chatcmpl-gen-{i}"),
            attr("gen_ai.response.finish_reasons", "stop"),
            attr("gen_ai.usage.input_tokens", 20),
            attr("gen_ai.usage.output_tokens", 4),
        ])
    else:
        out = {
            "id": f"chatcmpl-oi-{i}",
            "object": "chat.completion",
            "created": 1767225600 + i,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "The Southern Ocean.",
                                     "refusal": None}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
            "system_fingerprint": "fp_0000000000",
        }
        s.name = "ChatCompletion"
        s.attributes.extend([
            attr("openinference.span.kind", "LLM"),
            attr("llm.system", "openai"),
            attr("llm.provider", "openai"),
            attr("llm.model_name", "gpt-4o-mini-2024-07-18"),
            attr("input.mime_type", "application/json"),
            attr("input.value", json.dumps({"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": question}]})),
            attr("llm.input_messages.0.message.role", "user"),
            attr("llm.input_messages.0.message.content", question),
            attr("llm.output_messages.0.message.role", "assistant"),
            attr("llm.output_messages.0.message.content", "The Southern Ocean."),
            attr("output.mime_type", "application/json"),
            attr("output.value", json.dumps(out)),
            attr("llm.token_count.prompt", 20),
            attr("llm.token_count.completion", 4),
            attr("llm.token_count.total", 24),
        ])
    return s


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def load(a):
    half = a.spans // 2
    for lo in range(0, a.spans, a.batch):
        req = svc.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(attr("service.name", "lookup-cost"))
        ss = rs.scope_spans.add()
        ss.scope.name = "lookup-cost"
        ss.spans.extend(span(i, half) for i in range(lo, min(lo + a.batch, a.spans)))
        while True:
            try:
                post(a.url + "/v1/traces", req.SerializeToString(),
                     {"Content-Type": "application/x-protobuf", "x-project-name": a.project})
                break
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise
                time.sleep(1)
    # Ingest is asynchronous: wait for the last span of each half.
    for sid in (half, a.spans):
        q = urllib.parse.urlencode({"span_id": f"{sid:016x}"})
        while True:
            try:
                if json.loads(get(f"{a.url}/v1/projects/{a.project}/spans?{q}"))["data"]:
                    break
            except urllib.error.HTTPError as e:
                if e.code != 404:  # the project appears with its first span
                    raise
            time.sleep(0.5)
    print(f"loaded {a.spans} spans into {a.project}")


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def cpu_seconds(pid):
    """utime+stime+cutime+cstime of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_tree(pid):
    """pid and its descendants (Phoenix may run workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return out


def tree_cpu(pid):
    return sum(cpu_seconds(p) for p in proc_tree(pid))


GRAPHQL = """query ($project: String!, $filter: String!, $first: Int!) {
  getProjectByName(name: $project) {
    spans(first: $first, filterCondition: $filter) {
      edges { node { spanId name startTime parentId trace { traceId } output { value } } }
    }
  }
}"""


def lookups(a, half):
    hit_gen, hit_oi = f"chatcmpl-gen-{half // 2}", f"chatcmpl-oi-{half + half // 2}"
    miss = "chatcmpl-nosuchid0000"
    base = f"{a.url}/v1/projects/{a.project}/spans?"

    def rest(key, rid):
        v = json.dumps(rid)
        return lambda: json.loads(get(base + urllib.parse.urlencode({"attribute": f"{key}:{v}", "limit": 10})))["data"]

    def gql(rid):
        body = json.dumps({"query": GRAPHQL, "variables": {
            "project": a.project, "filter": f"'{json.dumps(rid)}' in output.value", "first": 10}}).encode()
        def f():
            _, b = post(a.url + "/graphql", body, {"Content-Type": "application/json"})
            d = json.loads(b)
            if "errors" in d:
                raise RuntimeError(d["errors"])
            return d["data"]["getProjectByName"]["spans"]["edges"]
        return f

    return [
        ("REST attribute gen_ai.response.id, hit", rest("gen_ai.response.id", hit_gen), 1),
        ("REST attribute gen_ai.response.id, miss", rest("gen_ai.response.id", miss), 0),
        ("GraphQL filterCondition contains on output.value, OpenInference hit", gql(hit_oi), 1),
        ("GraphQL filterCondition contains on output.value, GenAI hit", gql(hit_gen), 1),
        ("GraphQL filterCondition contains on output.value, miss", gql(miss), 0),
    ]


def measure(a):
    half = a.spans // 2
    print(f"| lookup | rows | p50 ms | p90 ms | Phoenix CPU ms/lookup (mean) |")
    print(f"|---|---|---|---|---|")
    for name, f, want in lookups(a, half):
        f()  # warm up
        walls, cpus = [], []
        for _ in range(a.runs):
            c0, t0 = tree_cpu(a.pid), time.perf_counter()
            got = f()
            walls.append((time.perf_counter() - t0) * 1000)
            cpus.append((tree_cpu(a.pid) - c0) * 1000)
            if len(got) != want:
                raise RuntimeError(f"{name}: got {len(got)} rows, want {want}")
        walls.sort()
        p90 = walls[int(0.9 * (len(walls) - 1))]
        print(f"| {name} | {want} | {statistics.median(walls):.1f} | {p90:.1f} | {statistics.mean(cpus):.1f} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["load", "measure"])
    p.add_argument("--url", default="http://127.0.0.1:26006")
    p.add_argument("--project", default="lookup-cost")
    p.add_argument("--spans", type=int, default=20000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--pid", type=int)
    a = p.parse_args()
    load(a) if a.cmd == "load" else measure(a)


if __name__ == "__main__":
    main()
