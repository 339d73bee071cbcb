//go:build e2e

package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The replicas scenarios: several proxy processes, one per app replica,
// sharing the Redis scripts/e2e.sh started (E2E_REDIS_URL), in front of the
// real Phoenix. Spans go through one replica, feedback through the others,
// as a load balancer spreads an app's requests.

func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("E2E_REDIS_URL")
	if u == "" || os.Getenv("E2E_REDIS_SCRIPT") == "" {
		t.Fatal("E2E_REDIS_URL and E2E_REDIS_SCRIPT are not set; run `make test` or scripts/e2e.sh ./faults/")
	}
	return u
}

// redisCtl runs scripts/redis.sh on the suite's Redis (e2e.sh exported its
// port and working directory).
func redisCtl(t *testing.T, verb string) {
	t.Helper()
	out, err := exec.Command(os.Getenv("E2E_REDIS_SCRIPT"), verb).CombinedOutput()
	if err != nil {
		t.Fatalf("redis.sh %s: %v\n%s", verb, err, out)
	}
}

// replicas starts n proxies sharing the suite's Redis. The Phoenix lookup
// is off, so that what they resolve they resolve through Redis:
// TestReplicasWithoutRedis tests the lookup.
func replicas(t *testing.T, n int) []*proxyProc {
	t.Helper()
	u := redisURL(t)
	// Whatever a scenario did to Redis, the next one finds it running.
	t.Cleanup(func() { _ = exec.Command(os.Getenv("E2E_REDIS_SCRIPT"), "start").Run() })
	ps := make([]*proxyProc, n)
	for i := range ps {
		ps[i] = newProxy(t, phoenixURL, "-redis-url", u, "-no-phoenix-lookup")
	}
	return ps
}

// vote posts a thumbs-up for id, by identifier, through p.
func vote(t *testing.T, p *proxyProc, id, identifier string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"response_id": id, "thumbs": "up", "identifier": identifier})
	resp, err := http.Post("http://"+p.feedback+"/feedback", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /feedback %s: %d %s", id, resp.StatusCode, b)
	}
}

// llmSpanID asks Phoenix which span carries gen_ai.response.id = id: the
// LLM span of load.py's trace.
func llmSpanID(t *testing.T, project, id string) string {
	t.Helper()
	q := url.Values{"attribute": {`gen_ai.response.id:"` + id + `"`}}
	resp, err := http.Get(phoenixURL + "/v1/projects/" + url.PathEscape(project) + "/spans?" + q.Encode())
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var page struct {
		Data []struct {
			Name    string `json:"name"`
			Context struct {
				SpanID string `json:"span_id"`
			} `json:"context"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil || len(page.Data) != 1 {
		return ""
	}
	return page.Data[0].Context.SpanID
}

// expectAnnotated waits until the feedback on each id, taken by the replica
// given for it, is annotated in Phoenix on the LLM span that carries the id
// (found in Phoenix itself, not in what the proxy says), and returns how
// many were.
func expectAnnotated(t *testing.T, project string, taken map[string]*proxyProc, timeout time.Duration) int {
	t.Helper()
	var mu sync.Mutex
	annotated := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(timeout)
	for id, p := range taken {
		wg.Go(func() {
			for {
				st := lookup(t, p, id)
				want := llmSpanID(t, project, id)
				if st.Span != nil && st.Span.SpanID != "" && want != "" {
					if st.Span.SpanID != want {
						t.Errorf("feedback on %s resolved to span %s, Phoenix has the id on %s", id, st.Span.SpanID, want)
						return
					}
					if hasAnnotation(t, project, want, "user-"+id) {
						mu.Lock()
						annotated++
						mu.Unlock()
						return
					}
				}
				if len(st.Feedback) > 0 && (st.Feedback[0].State == "failed" || st.Feedback[0].State == "expired") {
					t.Errorf("feedback on %s ended %q: %s", id, st.Feedback[0].State, st.Feedback[0].Reason)
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("feedback on %s not annotated within %s; last seen %+v", id, timeout, st)
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return annotated
}

// sharedAll waits until p has written everything it indexed to Redis.
func sharedAll(t *testing.T, p *proxyProc, indexed int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		written := p.metric("feedbackproxy_shared_index_writes_total", "")
		if written >= float64(indexed) && p.metric("feedbackproxy_shared_index_backlog", "") == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d entries written to the shared index after 30 s", written, indexed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReplicas: spans through A, feedback through B and C, each annotated
// on its own LLM span: feedback after the span (found in Redis before B
// answers), feedback before it (woken by A's announcement), and feedback
// after A was SIGKILLed (its entries outlive it in Redis).
func TestReplicas(t *testing.T) {
	ps := replicas(t, 3)
	a, b, c := ps[0], ps[1], ps[2]
	run := "replicas" + runTag()
	project := "faults-" + run
	through := func(i int) *proxyProc { return []*proxyProc{b, c}[i%2] }

	// After: 60 traces through A, then feedback on 20 of them through B and C.
	sum := startLoad(t, "http", "http://"+a.httpAddr, project, run+"a", 20, 3).wait(t)
	sharedAll(t, a, sum.Traces)
	taken := map[string]*proxyProc{}
	for n := 0; n < sum.Traces; n += 3 {
		id := fmt.Sprintf("chatcmpl-%sa-%d", run, n)
		taken[id] = through(n)
		vote(t, taken[id], id, "user-"+id)
	}
	report(t, "replicas feedback after the span", len(taken), expectAnnotated(t, project, taken, 60*time.Second))

	// Before: feedback through B and C first, the spans through A after.
	taken = map[string]*proxyProc{}
	for n := range 10 {
		id := fmt.Sprintf("chatcmpl-%sb-%d", run, n)
		taken[id] = through(n)
		vote(t, taken[id], id, "user-"+id)
	}
	startLoad(t, "http", "http://"+a.httpAddr, project, run+"b", 10, 1.5).wait(t)
	report(t, "replicas feedback before the span", len(taken), expectAnnotated(t, project, taken, 60*time.Second))
	if n := b.metric("feedbackproxy_seek_found_total", `via="announcement"`) + c.metric("feedbackproxy_seek_found_total", `via="announcement"`); n < 1 {
		t.Errorf("no feedback was woken by an announcement (B and C found %v that way)", n)
	}

	// A SIGKILLed after indexing: B still resolves A's spans.
	sum = startLoad(t, "http", "http://"+a.httpAddr, project, run+"c", 10, 1).wait(t)
	sharedAll(t, a, 60+10+sum.Traces)
	a.kill()
	taken = map[string]*proxyProc{}
	for n := range sum.Traces {
		id := fmt.Sprintf("chatcmpl-%sc-%d", run, n)
		taken[id] = b
		vote(t, b, id, "user-"+id)
	}
	report(t, "replicas feedback after A was killed", len(taken), expectAnnotated(t, project, taken, 60*time.Second))
}

// TestReplicasRedisRestarted: Redis restarts in the middle of a load
// through A; every entry A indexed meanwhile still reaches it, and feedback
// through B on any of them resolves.
func TestReplicasRedisRestarted(t *testing.T) {
	ps := replicas(t, 2)
	a, b := ps[0], ps[1]
	run := "redisrestart" + runTag()
	project := "faults-" + run
	l := startLoad(t, "http", "http://"+a.httpAddr, project, run, 20, 6)
	time.Sleep(2 * time.Second)
	redisCtl(t, "restart")
	sum := l.wait(t)
	sharedAll(t, a, sum.Traces)
	if d := a.metric("feedbackproxy_shared_index_backlog_dropped_total", ""); d != 0 {
		t.Errorf("%v entries dropped from the backlog", d)
	}
	taken := map[string]*proxyProc{}
	for n := 0; n < sum.Traces; n += 3 {
		id := fmt.Sprintf("chatcmpl-%s-%d", run, n)
		taken[id] = b
		vote(t, b, id, "user-"+id)
	}
	report(t, "redis restarted: feedback through B", len(taken), expectAnnotated(t, project, taken, 60*time.Second))
	report(t, "redis restarted: spans", sum.Spans, waitSpans(t, project, sum.Spans, 60*time.Second))
}

// TestReplicasRedisDown: Redis is stopped for 30 s under load through A.
// The app never notices: every span reaches Phoenix; A still resolves the
// feedback it can itself and says on /readyz that the shared index is
// degraded; when Redis is back, A writes what it indexed meanwhile and B
// resolves it.
func TestReplicasRedisDown(t *testing.T) {
	ps := replicas(t, 2)
	a, b := ps[0], ps[1]
	run := "redisdown" + runTag()
	project := "faults-" + run
	down := 30 * time.Second
	redisCtl(t, "stop")
	stopped := time.Now()
	l := startLoad(t, "http", "http://"+a.httpAddr, project, run, 10, down.Seconds()-2)

	// Feedback through A, which saw the spans, resolves as ever.
	time.Sleep(3 * time.Second)
	local := fmt.Sprintf("chatcmpl-%s-%d", run, 5)
	vote(t, a, local, "user-"+local)
	degraded := false
	for time.Since(stopped) < down {
		resp, err := http.Get("http://" + a.admin + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			degraded = degraded || (resp.StatusCode == http.StatusOK && strings.Contains(string(body), "shared index at redis://") && strings.Contains(string(body), "degraded"))
		}
		time.Sleep(time.Second)
	}
	sum := l.wait(t)
	peak := a.metric("feedbackproxy_shared_index_backlog", "")
	redisCtl(t, "start")
	restarted := time.Now()
	sharedAll(t, a, sum.Traces)
	drained := time.Since(restarted)
	if !degraded {
		t.Error("/readyz never said the shared index was degraded while Redis was down")
	}
	report(t, "redis down 30 s: feedback through A", 1, expectAnnotated(t, project, map[string]*proxyProc{local: a}, 30*time.Second))
	taken := map[string]*proxyProc{}
	for n := 0; n < sum.Traces; n += 25 {
		id := fmt.Sprintf("chatcmpl-%s-%d", run, n)
		taken[id] = b
		vote(t, b, id, "user-"+id)
	}
	report(t, "redis down 30 s: feedback through B afterwards", len(taken), expectAnnotated(t, project, taken, 60*time.Second))
	got := waitSpans(t, project, sum.Spans, 90*time.Second)
	report(t, "redis down 30 s: spans", sum.Spans, got)
	t.Logf("FAULTS redis down %s: backlog %v entries at the end of the outage, written %s after Redis was back; dropped %v",
		down, peak, drained.Round(time.Millisecond), a.metric("feedbackproxy_shared_index_backlog_dropped_total", ""))
}

// TestReplicasWithoutRedis: no shared index at all; B finds the span A saw
// by asking Phoenix.
func TestReplicasWithoutRedis(t *testing.T) {
	a, b := newProxy(t, phoenixURL), newProxy(t, phoenixURL)
	run := "noredis" + runTag()
	project := "faults-" + run
	sum := startLoad(t, "http", "http://"+a.httpAddr, project, run, 10, 1).wait(t)
	taken := map[string]*proxyProc{}
	for n := range min(sum.Traces, 3) {
		id := fmt.Sprintf("chatcmpl-%s-%d", run, n)
		taken[id] = b
		vote(t, b, id, "user-"+id)
	}
	report(t, "no redis: feedback through B via Phoenix", len(taken), expectAnnotated(t, project, taken, 60*time.Second))
	if n := b.metric("feedbackproxy_seek_found_total", `via="phoenix"`); n != float64(len(taken)) {
		t.Errorf("B found %v spans in Phoenix, want %d", n, len(taken))
	}
}
