package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/redistest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// newLab starts what the replica tests share: a real redis-server and a
// fake Phoenix, both stopped when the test ends, after its replicas.
func newLab(t *testing.T) (*redistest.Server, *fakePhoenix, string) {
	t.Helper()
	redis := redistest.Start(t)
	fp := &fakePhoenix{t: t, spans: map[string]bool{}}
	phx := httptest.NewServer(fp)
	t.Cleanup(phx.Close)
	return redis, fp, phx.URL
}

// replica is one proxy of several sharing a Redis.
type replica struct {
	*Proxy
	t      *testing.T
	client *http.Client
}

func startReplica(t *testing.T, phoenixURL, redisURL string) *replica {
	t.Helper()
	cfg := localConfig(phoenixURL)
	cfg.Shared.URL = redisURL
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r := &replica{Proxy: p, t: t, client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.client.CloseIdleConnections()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return r
}

func (r *replica) do(method, url, contentType string, body []byte) (int, string) {
	r.t.Helper()
	return doRequest(r.t, context.Background(), r.client, method, url, contentType, body)
}

func (r *replica) export(responseID string) {
	r.t.Helper()
	pb, err := ptraceotlp.NewExportRequestFromTraces(chatTraces(responseID)).MarshalProto()
	if err != nil {
		r.t.Fatal(err)
	}
	if code, body := r.do("POST", "http://"+r.Addrs().OTLPHTTP+"/v1/traces", "application/x-protobuf", pb); code != http.StatusOK {
		r.t.Fatalf("OTLP export: %d %s", code, body)
	}
}

func (r *replica) feedback(responseID string) feedback.Status {
	r.t.Helper()
	code, body := r.do("POST", "http://"+r.Addrs().Feedback+"/feedback", "application/json",
		[]byte(`{"response_id":"`+responseID+`","thumbs":"down","identifier":"u1"}`))
	if code != http.StatusOK && code != http.StatusAccepted {
		r.t.Fatalf("POST /feedback: %d %s", code, body)
	}
	var st feedback.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		r.t.Fatalf("%v: %s", err, body)
	}
	return st
}

func (r *replica) waitEnded(responseID string) feedback.Status {
	r.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body := r.do("GET", "http://"+r.Addrs().Feedback+"/feedback/"+responseID, "", nil)
		var got struct {
			Feedback []feedback.Status `json:"feedback"`
		}
		_ = json.Unmarshal([]byte(body), &got)
		if len(got.Feedback) == 1 && got.Feedback[0].State != feedback.Pending {
			return got.Feedback[0]
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("feedback on %s still pending after 10 s: %s", responseID, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitShared waits until the replica wrote what it indexed to Redis.
func (r *replica) waitShared() {
	r.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); r.shared.Backlog() > 0 || r.shared.Degraded() != ""; {
		if time.Now().After(deadline) {
			r.t.Fatalf("not written to the shared index: %d waiting, %s", r.shared.Backlog(), r.shared.Degraded())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the pipeline's answer
}

// TestReplicasShareTheIndex: the span goes through replica A, the feedback
// through B; with a shared Redis, B writes the annotation on A's span, at
// once when A indexed it first, and as soon as A does otherwise.
func TestReplicasShareTheIndex(t *testing.T) {
	redis, fp, phoenixURL := newLab(t)
	a := startReplica(t, phoenixURL, redis.URL())
	b := startReplica(t, phoenixURL, redis.URL())

	// Span first: B finds it in Redis before it answers, and answers
	// "annotated" as A would have.
	a.export("chatcmpl-span-first")
	a.waitShared()
	st := b.feedback("chatcmpl-span-first")
	if st.State != feedback.Annotated || st.SpanID != testSpanID.String() || st.TraceID != testTraceID.String() {
		t.Fatalf("feedback through B = %+v, want annotated on A's span", st)
	}

	// Feedback first: B keeps it; A's announcement wakes it up.
	st = b.feedback("chatcmpl-feedback-first")
	if st.State != feedback.Pending || st.SpanID != "" {
		t.Fatalf("feedback before the span = %+v, want pending", st)
	}
	a.export("chatcmpl-feedback-first")
	if st := b.waitEnded("chatcmpl-feedback-first"); st.State != feedback.Annotated || st.SpanID != testSpanID.String() {
		t.Fatalf("feedback through B = %+v, want annotated on A's span", st)
	}

	fp.mu.Lock()
	n := len(fp.annotations)
	fp.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d annotations written, want 2", n)
	}
	_, metrics := b.do("GET", "http://"+b.Addrs().Admin+"/metrics", "", nil)
	for _, want := range []string{
		`feedbackproxy_seek_found_total{via="shared"} 1`,
		`feedbackproxy_seek_found_total{via="announcement"} 1`,
		`feedbackproxy_shared_index_up 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("B's /metrics lacks %s", want)
		}
	}
}

// TestSharedIndexDown: with Redis gone, spans still flow and feedback that
// the replica can resolve itself still is; /readyz says the shared index
// is degraded; once Redis is back, what was indexed meanwhile is shared.
func TestSharedIndexDown(t *testing.T) {
	redis, _, phoenixURL := newLab(t)
	a := startReplica(t, phoenixURL, redis.URL())
	b := startReplica(t, phoenixURL, redis.URL())

	redis.Stop()
	start := time.Now()
	a.export("chatcmpl-down")
	if d := time.Since(start); d > time.Second {
		t.Errorf("an export took %s with Redis down", d)
	}
	if st := a.feedback("chatcmpl-down"); st.State != feedback.Annotated {
		t.Fatalf("feedback through A with Redis down = %+v, want annotated (A saw the span)", st)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, body := a.do("GET", "http://"+a.Addrs().Admin+"/readyz", "", nil)
		if strings.Contains(body, "warning: shared index at redis://") && strings.Contains(body, "degraded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz with Redis down: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	redis.Restart()
	a.waitShared()
	if st := b.feedback("chatcmpl-down"); st.State != feedback.Annotated || st.SpanID != testSpanID.String() {
		t.Fatalf("feedback through B after Redis came back = %+v, want annotated", st)
	}
}

// TestReplicasKeepTheLatestVote: a user votes up through B, then down
// through C, before the span came through A; both wake up when A indexes
// it, and Phoenix ends with the latest vote: B's is either superseded (not
// written) or written first and overwritten (Phoenix upserts on name, span
// and identifier), never written after C's.
func TestReplicasKeepTheLatestVote(t *testing.T) {
	redis, fp, phoenixURL := newLab(t)
	a := startReplica(t, phoenixURL, redis.URL())
	b := startReplica(t, phoenixURL, redis.URL())
	c := startReplica(t, phoenixURL, redis.URL())

	for round := range 5 {
		id := fmt.Sprintf("chatcmpl-revote-%d", round)
		post := func(r *replica, thumbs string) {
			t.Helper()
			code, body := r.do("POST", "http://"+r.Addrs().Feedback+"/feedback", "application/json",
				[]byte(`{"response_id":"`+id+`","thumbs":"`+thumbs+`","identifier":"u1"}`))
			if code != http.StatusAccepted {
				t.Fatalf("POST /feedback: %d %s", code, body)
			}
		}
		post(b, "up")
		post(c, "down")
		a.export(id)
		stB, stC := b.waitEnded(id), c.waitEnded(id)
		if stC.State != feedback.Annotated || (stB.State != feedback.Annotated && stB.State != feedback.Superseded) {
			t.Fatalf("B's older vote %s, C's newer %s; want C annotated, B annotated or superseded", stB.State, stC.State)
		}
		fp.mu.Lock()
		last := fp.annotations[len(fp.annotations)-1]
		n := len(fp.annotations)
		fp.mu.Unlock()
		if *last.Result.Label != "thumbs-down" {
			t.Fatalf("round %d: the last annotation written is %s (of %d), want thumbs-down", round, *last.Result.Label, n)
		}
	}
}

// TestShutdownWithRedisDown: entries waiting for a Redis that is down do
// not hold a shutdown: one attempt, then they are logged and left to the
// replica's own index.
func TestShutdownWithRedisDown(t *testing.T) {
	redis, _, phoenixURL := newLab(t)
	cfg := localConfig(phoenixURL)
	cfg.Shared.URL = redis.URL()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := &replica{Proxy: p, t: t, client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	defer r.client.CloseIdleConnections()
	redis.Stop()
	r.export("chatcmpl-at-shutdown")
	if p.shared.Backlog() == 0 {
		t.Fatal("nothing waiting for Redis")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with Redis down: %v (it should not wait for Redis)", err)
	}
}
