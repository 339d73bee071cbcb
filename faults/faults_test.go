//go:build e2e

package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// durations of the scenarios: short in `make test`, long with FAULTS_LONG=1.
// FAULTS_OUTAGE_SECONDS sets the outage for a longer trial (e.g. 300).
func outage() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("FAULTS_OUTAGE_SECONDS")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	if long {
		return 60 * time.Second
	}
	return 8 * time.Second
}

// Phoenix is stopped under steady load, then started again: every span the
// app sent is in Phoenix afterwards. The proxy queues on disk meanwhile, so
// the app's exporter never even sees the outage.
func TestPhoenixStopped(t *testing.T) {
	p := newProxy(t, phoenixURL)
	t.Logf("the proxy runs with no flags but its addresses: its state is in its default data directory %s", p.dataDir)
	run := "stop" + runTag()
	project := "faults-" + run
	loadSeconds := outage().Seconds() + 8
	l := startLoad(t, "http", "http://"+p.httpAddr, project, run, 20, loadSeconds)

	time.Sleep(3 * time.Second)
	phoenixCtl(t, "stop")
	stopped := time.Now()
	time.Sleep(outage())
	queued := p.metric("feedbackproxy_queue_exports", "")
	phoenixCtl(t, "start")
	t.Logf("Phoenix was down %s; %v exports were waiting in the proxy's queue", time.Since(stopped).Round(time.Second), queued)
	if queued <= 0 {
		t.Errorf("nothing was queued while Phoenix was down")
	}

	sum := l.wait(t)
	// Phoenix takes its time to store the backlog: about a hundred spans
	// a second on this 2-core machine, while the app keeps sending.
	got := waitSpans(t, project, sum.Spans, 90*time.Second+3*outage())
	report(t, "phoenix-stopped", sum.Spans, got)
}

// Phoenix answers 503 for a while (here through a fault-injecting reverse
// proxy in front of it): the proxy retries with backoff, nothing is lost.
func TestPhoenixUnavailable(t *testing.T) {
	target, _ := url.Parse(phoenixURL)
	var failing atomic.Bool
	var refused atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	inject := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() && r.URL.Path == "/v1/traces" {
			refused.Add(1)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "span queue full", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer inject.Close()

	p := newProxy(t, inject.URL)
	run := "503" + runTag()
	project := "faults-" + run
	l := startLoad(t, "grpc", p.grpcAddr, project, run, 20, outage().Seconds()+6)
	time.Sleep(2 * time.Second)
	failing.Store(true)
	time.Sleep(outage())
	failing.Store(false)
	t.Logf("the injector answered 503 to %d exports", refused.Load())
	if refused.Load() == 0 {
		t.Error("no export met the 503s")
	}
	sum := l.wait(t)
	got := waitSpans(t, project, sum.Spans, 90*time.Second)
	report(t, "phoenix-503", sum.Spans, got)
}

// The proxy is SIGKILLed under load with feedback pending, and restarted
// on the same data directory: every feedback is annotated, every span is
// in Phoenix.
func TestProxyKilled(t *testing.T) {
	p := newProxy(t, phoenixURL)
	t.Logf("the proxy runs with no flags but its addresses: its state is in its default data directory %s", p.dataDir)
	run := "kill" + runTag()
	project := "faults-" + run
	const rate, seconds = 20.0, 14.0
	l := startLoad(t, "http", "http://"+p.httpAddr, project, run, rate, seconds)

	// Feedback for responses already sent and for ones not made yet.
	var ids []string
	for _, n := range []int{5, 20, 60, 120, 200, 260} {
		ids = append(ids, fmt.Sprintf("chatcmpl-%s-%d", run, n))
	}
	time.Sleep(2 * time.Second)
	for i, id := range ids {
		body, _ := json.Marshal(map[string]any{"response_id": id, "thumbs": "up", "identifier": fmt.Sprintf("user-%d", i)})
		resp, err := http.Post("http://"+p.feedback+"/feedback", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /feedback %s: %d", id, resp.StatusCode)
		}
	}
	time.Sleep(2 * time.Second)
	pending := p.metric("feedbackproxy_feedback_pending", "")
	p.kill()
	t.Logf("proxy SIGKILLed with %v feedback pending", pending)
	p.start()

	sum := l.wait(t)
	// The truth is in Phoenix: each feedback's annotation on its LLM span.
	// (The proxy keeps the state of ended feedback in memory only, so for
	// those annotated before the kill GET no longer shows it.)
	annotated := 0
	deadline := time.Now().Add(60 * time.Second)
	for i, id := range ids {
		for {
			st := lookup(t, p, id)
			if st.Span.SpanID != "" && hasAnnotation(t, project, st.Span.SpanID, fmt.Sprintf("user-%d", i)) {
				annotated++
				break
			}
			if len(st.Feedback) > 0 && (st.Feedback[0].State == "failed" || st.Feedback[0].State == "expired") {
				t.Errorf("feedback for %s ended %q: %s", id, st.Feedback[0].State, st.Feedback[0].Reason)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("feedback for %s not in Phoenix within 60s; last seen %+v", id, st)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	report(t, "proxy-killed feedback", len(ids), annotated)
	got := waitSpans(t, project, sum.Spans, 90*time.Second)
	report(t, "proxy-killed spans", sum.Spans, got)
}

func lookup(t *testing.T, p *proxyProc, id string) feedback.ResponseState {
	t.Helper()
	var st feedback.ResponseState
	resp, err := http.Get("http://" + p.feedback + "/feedback/" + id)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// hasAnnotation asks Phoenix whether spanID carries a "user feedback"
// annotation from identifier.
func hasAnnotation(t *testing.T, project, spanID, identifier string) bool {
	t.Helper()
	resp, err := http.Get(phoenixURL + "/v1/projects/" + url.PathEscape(project) + "/span_annotations?span_ids=" + spanID)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var page struct {
		Data []struct {
			Name       string `json:"name"`
			Identifier string `json:"identifier"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
		return false
	}
	for _, a := range page.Data {
		if a.Name == "user feedback" && a.Identifier == identifier {
			return true
		}
	}
	return false
}
