package feedback_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/crashtest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
)

// crashSpan is the span of the i-th response of the crash test.
func crashSpan(i int) index.Span {
	var tid pcommon.TraceID
	binary.BigEndian.PutUint64(tid[8:], uint64(i)+1)
	var sid pcommon.SpanID
	binary.BigEndian.PutUint64(sid[:], uint64(i)+1)
	return index.Span{TraceID: tid, SpanID: sid, Project: "support", Name: "ChatCompletion"}
}

// crashThumbs is the vote for the i-th response.
func crashThumbs(i int) string {
	if i%3 == 0 {
		return "down"
	}
	return "up"
}

// stalledPhoenix never answers: every attempt is in flight when the child
// is killed.
type stalledPhoenix struct{}

func (stalledPhoenix) AnnotateSpans(ctx context.Context, _ []phoenix.SpanAnnotation) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// crashChild is the proxy TestCrash kills: a service and an index over the
// data directory args[0], the feedback API on loopback. It indexes the span
// of every even response, then posts feedback for responses 0, 1, 2, ...
// and prints "acked <response id>" after each 202, until it is killed.
func crashChild(args []string) {
	dir := args[0]
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		crashtest.Fatalf("%v", err)
	}
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		crashtest.Fatalf("%v", err)
	}
	if _, err := ix.Restore(st); err != nil {
		crashtest.Fatalf("%v", err)
	}
	svc, err := feedback.New(feedback.Config{MaxAge: time.Hour, SyncWait: -1}, ix, stalledPhoenix{}, nil, nil)
	if err != nil {
		crashtest.Fatalf("%v", err)
	}
	if _, err := svc.Restore(st); err != nil {
		crashtest.Fatalf("%v", err)
	}
	srv := httptest.NewServer(svc.Handler())
	for i := 0; ; i++ {
		id := fmt.Sprintf("chatcmpl-crash-%d", i)
		if i%2 == 0 {
			svc.Indexed(ix.Add([]index.Entry{{ResponseID: id, Span: crashSpan(i)}}))
		}
		body := fmt.Sprintf(`{"response_id":%q,"thumbs":%q,"identifier":"user-%d"}`, id, crashThumbs(i), i%7)
		resp, err := srv.Client().Post(srv.URL+"/feedback", "application/json", strings.NewReader(body))
		if err != nil {
			crashtest.Fatalf("%v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			crashtest.Fatalf("POST %s: %d", id, resp.StatusCode)
		}
		fmt.Printf("acked %s\n", id)
	}
}

// TestCrash kills a proxy (the child process above) with SIGKILL while it
// takes feedback, then resumes its data directory: every feedback it
// acknowledged is pending on disk, and is annotated, on the span indexed
// before the crash or on one indexed after.
func TestCrash(t *testing.T) {
	const wantAcks = 200
	dir := t.TempDir()
	acked := map[string]int{} // response id -> i
	// What the child printed after the 200th ack, before it died, was
	// acknowledged too.
	crashtest.Run(t, 60*time.Second, "feedback", []string{dir}, func(line string) bool {
		id, ok := strings.CutPrefix(line, "acked ")
		if !ok {
			return false // not an ack
		}
		i, err := strconv.Atoi(strings.TrimPrefix(id, "chatcmpl-crash-"))
		if err != nil {
			t.Fatalf("child printed %q", line)
		}
		acked[id] = i
		return len(acked) >= wantAcks // SIGKILL, mid-request
	})

	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	saved, err := st.LoadFeedback()
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]bool{}
	for _, sv := range saved {
		onDisk[sv.Feedback.ResponseID] = true
	}
	for id := range acked {
		if !onDisk[id] {
			t.Errorf("%s was acknowledged, and is not on disk after SIGKILL", id)
		}
	}
	t.Logf("killed after %d acknowledged feedbacks; %d on disk (the rest were in flight)", len(acked), len(saved))

	// The restart, with a Phoenix that accepts.
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Restore(st); err != nil {
		t.Fatal(err)
	}
	ann := &fakeAnnotator{answers: []answer{accept}}
	svc, err := feedback.New(feedback.Config{MaxAge: time.Hour, SyncWait: -1}, ix, ann, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Restore(st); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	for id, i := range acked {
		st := svc.Lookup(id)
		if len(st) != 1 {
			t.Fatalf("%s: %d feedbacks after the restart, want 1", id, len(st))
		}
		if i%2 == 1 && st[0].State != feedback.Pending {
			t.Errorf("%s, whose span was never exported, is %s", id, st[0].State)
		}
	}
	// The spans of the odd responses come in after the restart, those of
	// the feedbacks in flight at the kill (on disk, not acknowledged) too.
	for _, sv := range saved {
		id := sv.Feedback.ResponseID
		i, err := strconv.Atoi(strings.TrimPrefix(id, "chatcmpl-crash-"))
		if err != nil {
			t.Fatalf("on disk: %q", id)
		}
		if i%2 == 1 {
			svc.Indexed(ix.Add([]index.Entry{{ResponseID: id, Span: crashSpan(i)}}))
		}
	}
	for deadline := time.Now().Add(10 * time.Second); svc.Pending() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d feedbacks still pending 10s after the restart", svc.Pending())
		}
	}
	written := map[string]phoenix.SpanAnnotation{}
	for _, c := range ann.Calls() {
		written[c.ann.Metadata["response_id"].(string)] = c.ann
	}
	for id, i := range acked {
		st := svc.Lookup(id)
		a := written[id]
		want := "thumbs-" + crashThumbs(i)
		if len(st) != 1 || st[0].State != feedback.Annotated || a.SpanID != crashSpan(i).SpanID.String() ||
			labelOf(a) != want || a.Identifier != fmt.Sprintf("user-%d", i%7) {
			t.Errorf("%s: status %+v, written %+v; want annotated with %s on span %s", id, st, a, want, crashSpan(i).SpanID)
		}
	}
	if c, err := st.Count(); err != nil || c.Feedback != 0 {
		t.Errorf("after every feedback was annotated: %+v on disk, %v", c, err)
	}
}
