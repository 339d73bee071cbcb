//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// schemathesisConfig is schemathesis.toml for a run: a fixed seed and few
// examples an operation (%d), so that a run is repeatable and short; the
// checks the feedback API must pass; and, where a check cannot hold, why.
// The checks are named here, not with --checks, which would override the
// exceptions.
const schemathesisConfig = `
seed = 20261
workers = 2

[generation]
max-examples = %d
# Each run starts from the seed alone, not from what earlier runs found.
database = "none"

[checks]
enabled = false
# No 5xx.
not_a_server_error.enabled = true
# Only documented statuses, content types and headers; bodies that match
# their schemas.
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_headers_conformance.enabled = true
response_schema_conformance.enabled = true
# Requests outside the schemas refused, requests within them accepted.
negative_data_rejection.enabled = true
positive_data_acceptance.enabled = true
# A route that requires credentials refuses requests without.
ignored_auth.enabled = true
# A method a path does not have: 405.
unsupported_method.enabled = true

# A ttl given as a Go duration ("90m") must lie between 1s and 168h, which no
# pattern can say; the document's pattern admits every duration, so valid
# data may be refused (400) here. Everything else about the operation is
# still checked, negative data included.
[[operations]]
include-operation-id = "mintToken"
checks.positive_data_acceptance.enabled = false
`

// TestOpenAPIConformance runs schemathesis against a whole proxy in front of
// the real Phoenix, with token keys, a CORS policy and the rate limit per
// address on loopback too, so that the answers pkg/feedback/openapi.json
// (served at /openapi.json) describes are reached and compared with it: the
// document and the server cannot drift apart. Any failure fails the test
// with schemathesis's report.
//
// It runs twice: with the server token, as the app's backend calls the API,
// where every request is taken and valid data must be accepted; then with a
// per-response token, as a page calls it, where most requests are refused
// (401, 403, 429 from the limits per token and per address), and the
// refusals must be as documented.
func TestOpenAPIConformance(t *testing.T) {
	bin := os.Getenv("E2E_SCHEMATHESIS")
	if bin == "" {
		t.Fatal("E2E_SCHEMATHESIS is not set; run scripts/e2e.sh (or make e2e), which installs schemathesis (scripts/schemathesis.sh install) and sets it")
	}
	keys, err := token.ParseKeys([]byte("# e2e only\n" + strings.Repeat("5e", 32) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	serverToken := "e2e-openapi-" + randomSuffix()
	p := startProxy(t, func(c *proxy.Config) {
		c.Feedback.Token = serverToken
		c.Feedback.Tokens = keys
		// The origin of the document's examples, so that preflights are
		// answered 204, not only 403.
		c.CORSAllowedOrigins = []string{"https://app.example.com"}
		// No trusted proxy: schemathesis on loopback is a client like any
		// other, limited per address unless it sends the server token; at
		// a rate low enough that the per-response token's run meets the
		// limit however slow the machine.
		c.TrustedProxies = []netip.Prefix{}
		c.RateLimits.PerAddress = 5
	})
	base := "http://" + p.Addrs().Feedback
	// A page's token for the response id of the document's examples.
	pageToken, err := keys.Mint(token.Claims{ResponseID: "chatcmpl-abc", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	// A run that passes because it never reached the server's answers (a
	// header that stopped applying, a phase that stopped running) would
	// prove nothing: each operation must have been tried, and the main
	// answers seen. (schemathesis does not test the operation it loaded the
	// document from, GET /openapi.json; pkg/feedback's TestOpenAPIHandler
	// does.)
	t.Run("server token", func(t *testing.T) {
		runSchemathesis(t, bin, base, serverToken, 25, "", map[string][]int{
			"POST /feedback":                  {202, 400},
			"OPTIONS /feedback":               {204, 403, 405},
			"GET /feedback/{response_id}":     {200, 400, 401, 404},
			"OPTIONS /feedback/{response_id}": {204, 403},
			"POST /feedback/tokens":           {201, 400, 401},
			"GET /widget.js":                  {200},
		})
	})
	t.Run("per-response token", func(t *testing.T) {
		runSchemathesis(t, bin, base, pageToken, 10, `
# In a batch, an item the token does not allow is rejected as an invalid
# one is: a valid batch none of whose items the token allows is answered 400.
[[operations]]
include-operation-id = "postFeedback"
checks.positive_data_acceptance.enabled = false
`, map[string][]int{
			"POST /feedback": {202},
			// Which operation meets the limit first depends on timing.
			"*": {401, 403, 429},
		})
	})
}

// runSchemathesis runs schemathesis against the feedback API at base with
// the bearer credential cred, maxExamples an operation and the configuration
// extra beside schemathesisConfig, fails t on any failure, and checks that
// the answers in want (statuses by operation, "*" for any) were seen.
func runSchemathesis(t *testing.T, bin, base, cred string, maxExamples int, extra string, want map[string][]int) {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(schemathesisConfig, maxExamples) + extra
	configPath := filepath.Join(dir, "schemathesis.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "events.ndjson")
	args := []string{
		"--config-file", configPath, "--no-color",
		"run", base + "/openapi.json",
		// schemathesis hides the header's value in what it prints.
		"--header", "Authorization: Bearer " + cred,
		"--request-timeout", "10",
		"--report", "ndjson", "--report-ndjson-path", report,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir // where it writes anything of its own
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		t.Fatalf("schemathesis (%s, run %s) found the proxy and pkg/feedback/openapi.json at odds: fix the document, unless the server is wrong.\n"+
			"Rerun against a proxy of yours: %s --config-file <the config below> run http://<feedback addr>/openapi.json -H 'Authorization: Bearer <token>'\n%s\n--- config:%s",
			err, took, bin, out, config)
	}
	t.Logf("schemathesis passed in %s:\n%s", took, out)
	seen, err := statusesSeen(report)
	if err != nil {
		t.Fatal(err)
	}
	seen["*"] = map[int]int{}
	for _, codes := range seen {
		for code, n := range codes {
			seen["*"][code] += n
		}
	}
	for op, statuses := range want {
		for _, code := range statuses {
			if seen[op][code] == 0 {
				t.Errorf("schemathesis got no %d from %s (it got %v): the run did not reach that answer", code, op, seen[op])
			}
		}
	}
}

// statusesSeen reads schemathesis's NDJSON events and counts the statuses of
// the answers per operation ("POST /feedback": {202: 40, ...}).
func statusesSeen(path string) (map[string]map[int]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type scenario struct {
		Recorder struct {
			Cases map[string]struct {
				Value struct {
					Method string `json:"method"`
					Path   string `json:"path"`
				} `json:"value"`
			} `json:"cases"`
			Interactions map[string]struct {
				Response *struct {
					StatusCode int `json:"status_code"`
				} `json:"response"`
			} `json:"interactions"`
		} `json:"recorder"`
	}
	seen := map[string]map[int]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var ev struct {
			ScenarioFinished *scenario
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if ev.ScenarioFinished == nil {
			continue
		}
		rec := ev.ScenarioFinished.Recorder
		for id, inter := range rec.Interactions {
			c, ok := rec.Cases[id]
			resp := inter.Response
			if !ok || resp == nil {
				continue
			}
			op := c.Value.Method + " " + c.Value.Path
			if seen[op] == nil {
				seen[op] = map[int]int{}
			}
			seen[op][resp.StatusCode]++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("%s: no answers recorded; has the format of schemathesis's NDJSON events changed?", path)
	}
	return seen, nil
}
