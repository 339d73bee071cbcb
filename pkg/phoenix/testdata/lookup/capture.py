"""Captures the Phoenix answers that lookup_test.go serves from httptest servers.

Against a fresh Phoenix that holds the seed of vcr_test.go (project phoenix-client-vcr), e.g.
right after recording the cassettes by hand as testdata/README.md says:

    PHOENIX_PORT=26006 PHOENIX_GRPC_PORT=26007 PHOENIX_WORKING_DIR=$(mktemp -d) scripts/phoenix.sh start
    PHOENIX_RECORD=1 PHOENIX_URL=http://127.0.0.1:26006 go test ./pkg/phoenix/ -run TestVCR -count=1
    .venv/bin/python pkg/phoenix/testdata/lookup/capture.py http://127.0.0.1:26006

It writes each answer body, unchanged, to <name>.json next to this file. The GraphQL query is
the client's (lookup.go: spansByOutputQuery); keep them the same.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:26006"
HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = "phoenix-client-vcr"
QUERY = """query SpansByOutputID($project: String!, $filter: String!, $first: Int!, $after: String) {
  getProjectByName(name: $project) {
    spans(first: $first, after: $after, filterCondition: $filter) {
      edges { node { spanId name spanKind startTime parentId trace { traceId } output { value } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""


def fetch(path, body=None):
    req = urllib.request.Request(BASE + path, data=body, method="POST" if body else "GET")
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        return e.read()


def save(name, data):
    with open(os.path.join(HERE, name + ".json"), "wb") as f:
        f.write(data)


def graphql(flt, first):
    body = {"query": QUERY, "variables": {"project": PROJECT, "filter": flt, "first": first, "after": None}}
    return fetch("/graphql", json.dumps(body).encode())


page1 = fetch("/v1/projects?limit=1")
save("projects_page1", page1)
cursor = json.loads(page1)["next_cursor"]
save("projects_page2", fetch("/v1/projects?" + urllib.parse.urlencode({"limit": 1, "cursor": cursor})))

spans = f"/v1/projects/{PROJECT}/spans?"
save("rest_hit", fetch(spans + urllib.parse.urlencode({"attribute": 'gen_ai.response.id:"chatcmpl-vcr0001"', "limit": 10})))
save("rest_miss", fetch(spans + urllib.parse.urlencode({"attribute": 'gen_ai.response.id:"chatcmpl-vcr0002"', "limit": 10})))
# Found by the substring match, but call_vcr0006 is nested: the client must drop it.
save("graphql_nested_only", graphql("""'"call_vcr0006"' in output.value""", 10))
save("graphql_hit", graphql("""'"chatcmpl-vcr0002"' in output.value""", 10))
# Two of several candidates, with a next page.
save("graphql_page_has_next", graphql("""'"LLM"' in output.value or 'chatcmpl-vcr' in output.value""", 2))
# What Phoenix answers to a filter it cannot parse: status 200 with errors.
save("graphql_filter_error", graphql("""'a\\' in output.value""", 10))
print("captured into", HERE)
