package feedback_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
)

// durableHarness is a harness over a data directory, built as the proxy
// builds it at start: the store opened, the index restored, then the
// feedback. stop shuts it down as the proxy does: the service, then the
// store.
type durableHarness struct {
	*harness
	st *store.Store
}

// startDurable starts a harness over dir; wrap, if set, wraps the store
// the feedback service is given.
func startDurable(t *testing.T, cfg feedback.Config, dir string, wrap func(feedback.Store) feedback.Store, answers ...answer) *durableHarness {
	t.Helper()
	real, err := store.Open(dir, store.Options{LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var st feedback.Store = real
	if wrap != nil {
		st = wrap(real)
	}
	ix, err := index.New(index.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Restore(real); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		ix:   ix,
		ann:  &fakeAnnotator{answers: answers, gate: make(chan struct{})},
		reg:  prometheus.NewRegistry(),
		logs: &syncBuffer{},
	}
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	if h.svc, err = feedback.New(cfg, ix, h.ann, feedback.NewMetrics(h.reg), log); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Restore(st); err != nil {
		t.Fatal(err)
	}
	return &durableHarness{harness: h, st: real}
}

func (d *durableHarness) stop(t *testing.T, ctx context.Context) error {
	t.Helper()
	err := d.svc.Shutdown(ctx)
	if cerr := d.st.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	return err
}

// kept is the number of feedbacks on disk.
func (d *durableHarness) kept(t *testing.T) int {
	t.Helper()
	c, err := d.st.Count()
	if err != nil {
		t.Fatal(err)
	}
	return c.Feedback
}

// TestRestart runs a service over a data directory, stops it, and starts
// another over the same directory: the first life, virtual time passing
// while the proxy is down, the second life.
func TestRestart(t *testing.T) {
	tests := []struct {
		name     string
		first    []answer // Phoenix in each life
		second   []answer
		before   func(t *testing.T, h *durableHarness)
		downtime time.Duration
		after    func(t *testing.T, h *durableHarness)
	}{
		{
			name:  "waiting and resolved feedback resume and are annotated",
			first: []answer{notFound}, // Phoenix has not ingested the span
			before: func(t *testing.T, h *durableHarness) {
				h.indexSpan("resolved", 1)
				h.submit(t, vote("resolved", "up", identifier("user-1")), vote("waiting", "down"))
				if n := h.kept(t); n != 2 {
					t.Fatalf("%d feedbacks on disk after Submit, want 2", n)
				}
			},
			downtime: 10 * time.Second,
			second:   []answer{accept},
			after: func(t *testing.T, h *durableHarness) {
				synctest.Wait()
				// The index came back too: resolved without the span again.
				got := h.one(t, "resolved")
				wantState(t, got, feedback.Annotated)
				if got.SpanID != span(1).SpanID.String() || got.Identifier != "user-1" {
					t.Errorf("resolved: %+v", got)
				}
				if d := time.Since(got.ReceivedAt); d != 10*time.Second {
					t.Errorf("ReceivedAt %s ago, want the original 10s", d)
				}
				wantState(t, h.one(t, "waiting"), feedback.Pending)
				if h.kept(t) != 1 {
					t.Errorf("%d on disk, want the waiting one", h.kept(t))
				}

				h.indexSpan("waiting", 2)
				synctest.Wait()
				wantState(t, h.one(t, "waiting"), feedback.Annotated)
				calls := h.ann.Calls()
				if len(calls) != 2 || labelOf(calls[1].ann) != "thumbs-down" || calls[1].ann.SpanID != span(2).SpanID.String() ||
					calls[1].ann.Metadata["response_id"] != "waiting" {
					t.Errorf("calls = %+v", calls)
				}
				if h.kept(t) != 0 {
					t.Errorf("%d on disk after both were annotated, want 0", h.kept(t))
				}
			},
		},
		{
			name: "a second vote overwrites the stored one",
			before: func(t *testing.T, h *durableHarness) {
				h.submit(t, vote("chatcmpl-1", "up"))
				time.Sleep(time.Second)
				h.submit(t, vote("chatcmpl-1", "down"))
				if n := h.kept(t); n != 1 {
					t.Fatalf("%d on disk, want 1", n)
				}
			},
			second: []answer{accept},
			after: func(t *testing.T, h *durableHarness) {
				h.indexSpan("chatcmpl-1", 1)
				synctest.Wait()
				got := h.one(t, "chatcmpl-1")
				wantState(t, got, feedback.Annotated)
				if d := time.Since(got.ReceivedAt); d != time.Second {
					t.Errorf("received %s ago, want 1s: the first vote's time, and so its deadline", d)
				}
				if calls := h.ann.Calls(); len(calls) != 1 || labelOf(calls[0].ann) != "thumbs-down" {
					t.Errorf("calls = %+v, want one thumbs-down", calls)
				}
			},
		},
		{
			name: "past its deadline at load: expired at once and reported",
			before: func(t *testing.T, h *durableHarness) {
				h.submit(t, vote("chatcmpl-2", "up"))
			},
			downtime: 2 * time.Minute,
			second:   []answer{accept},
			after: func(t *testing.T, h *durableHarness) {
				got := h.one(t, "chatcmpl-2")
				wantState(t, got, feedback.Expired)
				if !strings.Contains(got.Reason, "not running at its deadline, 1m0s after it was received") {
					t.Errorf("reason = %q", got.Reason)
				}
				logs := h.logs.String()
				for _, want := range []string{`level=WARN msg="feedback not annotated" response_id=chatcmpl-2`, "state=expired",
					`msg="feedback restored from the data directory" resolved=0 waiting_for_span=0 expired=1`} {
					if !strings.Contains(logs, want) {
						t.Errorf("log lacks %q:\n%s", want, logs)
					}
				}
				if n := h.metric(t, "feedbackproxy_feedback_total", "outcome", "expired"); n != 1 {
					t.Errorf("expired count = %v, want 1", n)
				}
				if h.kept(t) != 0 || h.svc.Pending() != 0 {
					t.Errorf("%d on disk, %d pending; want 0", h.kept(t), h.svc.Pending())
				}
				h.indexSpan("chatcmpl-2", 2)
				synctest.Wait()
				if n := len(h.ann.Calls()); n != 0 {
					t.Errorf("%d calls for an expired feedback", n)
				}
			},
		},
		{
			name: "the original deadline holds",
			before: func(t *testing.T, h *durableHarness) {
				h.submit(t, vote("chatcmpl-3", "up"))
			},
			downtime: 40 * time.Second,
			after: func(t *testing.T, h *durableHarness) {
				time.Sleep(20*time.Second - time.Nanosecond)
				synctest.Wait()
				wantState(t, h.one(t, "chatcmpl-3"), feedback.Pending)
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				got := h.one(t, "chatcmpl-3")
				wantState(t, got, feedback.Expired)
				if d := got.UpdatedAt.Sub(got.ReceivedAt); d != time.Minute || !strings.Contains(got.Reason, "within 1m0s") {
					t.Errorf("expired %s after it was received (%q), want 1m", d, got.Reason)
				}
			},
		},
		{
			name: "resolved, Phoenix 404 until the original deadline",
			before: func(t *testing.T, h *durableHarness) {
				h.indexSpan("chatcmpl-4", 4)
				h.submit(t, vote("chatcmpl-4", "up"))
			},
			first:    []answer{notFound},
			downtime: 50 * time.Second,
			second:   []answer{notFound},
			after: func(t *testing.T, h *durableHarness) {
				start := time.Now()
				time.Sleep(time.Hour)
				synctest.Wait()
				got := h.one(t, "chatcmpl-4")
				wantState(t, got, feedback.Expired)
				// Attempts at 0, 1, 3, 7 and the last at the deadline, 10s on.
				wantCallTimes(t, h.ann.Calls(), start, 0, time.Second, 3*time.Second, 7*time.Second, 10*time.Second)
			},
		},
		{
			name: "an ended feedback leaves the disk, whatever the end",
			before: func(t *testing.T, h *durableHarness) {
				h.ann.script = func(_ int, a phoenix.SpanAnnotation) answer {
					if a.Identifier == "refused" {
						return status(401)
					}
					return accept
				}
				h.indexSpan("chatcmpl-5", 5)
				h.submit(t, vote("chatcmpl-5", "up", identifier("ok")), vote("chatcmpl-5", "up", identifier("refused")),
					vote("never-indexed", "up"))
				synctest.Wait()
				if n := h.kept(t); n != 1 {
					t.Errorf("%d on disk, want the waiting one", n)
				}
				time.Sleep(time.Minute)
				synctest.Wait()
				if n := h.kept(t); n != 0 {
					t.Errorf("%d on disk after it expired, want 0", n)
				}
			},
			after: func(t *testing.T, h *durableHarness) {
				if st := h.svc.Lookup("chatcmpl-5"); st != nil {
					t.Errorf("ended feedback came back: %+v", st)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				h := startDurable(t, testConfig(), dir, nil, tc.first...)
				tc.before(t, h)
				pending := h.svc.Pending()
				if err := h.stop(t, context.Background()); err != nil {
					t.Fatal(err)
				}
				if pending > 0 && !strings.Contains(h.logs.String(), "level=INFO msg=\"feedback pending at shutdown persisted in the data directory; it resumes at the next start\"") {
					t.Errorf("shutdown log:\n%s", h.logs.String())
				}
				time.Sleep(tc.downtime)

				h = startDurable(t, testConfig(), dir, nil, tc.second...)
				tc.after(t, h)
				if err := h.stop(t, context.Background()); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestShutdownLetsAttemptsFinish: the attempt in flight at SIGTERM is
// answered and ends the feedback; the one backing off makes no new attempt
// and stays on disk for the next start.
func TestShutdownLetsAttemptsFinish(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		h := startDurable(t, testConfig(), dir, nil)
		h.ann.script = func(_ int, a phoenix.SpanAnnotation) answer {
			if a.Metadata["response_id"] == "in-flight" {
				return answer{delay: 2 * time.Second}
			}
			return notFound
		}
		h.indexSpan("in-flight", 1)
		h.indexSpan("backing-off", 2)
		h.submit(t, vote("in-flight", "up"), vote("backing-off", "up"))
		synctest.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := h.svc.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("Shutdown took %s, want the 2s of the attempt in flight", d)
		}
		wantState(t, h.one(t, "in-flight"), feedback.Annotated)
		wantState(t, h.one(t, "backing-off"), feedback.Pending)
		if n := len(h.ann.Calls()); n != 2 {
			t.Errorf("%d calls, want 2: none after Shutdown began", n)
		}
		if n := h.kept(t); n != 1 {
			t.Errorf("%d on disk, want the one backing off", n)
		}
		if !strings.Contains(h.logs.String(), "persisted in the data directory; it resumes at the next start\" count=1") {
			t.Errorf("log:\n%s", h.logs.String())
		}
		if err := h.stop(t, context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// flakyStore fails writes while fail is set.
type flakyStore struct {
	feedback.Store
	fail atomic.Bool
}

func (f *flakyStore) SaveFeedback(saved []feedback.Saved) error {
	if f.fail.Load() {
		return errors.New("disk full")
	}
	return f.Store.SaveFeedback(saved)
}

// TestWriteFailure: a feedback that cannot be written is not accepted:
// 503 with Retry-After, nothing pending, nothing on disk, nothing written
// to Phoenix later.
func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		flaky := &flakyStore{}
		h := startDurable(t, apiConfig(), dir, func(st feedback.Store) feedback.Store {
			flaky.Store = st
			return flaky
		}, accept)
		flaky.fail.Store(true)
		h.indexSpan("chatcmpl-1", 1)

		for _, body := range []string{
			`{"response_id":"chatcmpl-1","thumbs":"up"}`,
			`[{"response_id":"chatcmpl-1","thumbs":"up"},{"response_id":"chatcmpl-2","thumbs":"down"}]`,
		} {
			rec := h.serve("POST", "/feedback", body)
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
				t.Errorf("POST with a failing disk: %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
			}
			if _, msg := apiErr(t, rec); !strings.Contains(msg, "none of it was accepted") {
				t.Errorf("message = %q", msg)
			}
		}
		synctest.Wait()
		if h.svc.Pending() != 0 || h.svc.Lookup("chatcmpl-1") != nil || h.kept(t) != 0 || len(h.ann.Calls()) != 0 {
			t.Errorf("after refused writes: %d pending, %+v kept in memory, %d on disk, %d calls",
				h.svc.Pending(), h.svc.Lookup("chatcmpl-1"), h.kept(t), len(h.ann.Calls()))
		}
		if n := h.metric(t, "feedbackproxy_feedback_received_total", "", ""); n != 0 {
			t.Errorf("received = %v, want 0", n)
		}
		if !strings.Contains(h.logs.String(), `msg="feedback refused: cannot write it to the data directory" count=1 err="disk full"`) {
			t.Errorf("log:\n%s", h.logs.String())
		}

		flaky.fail.Store(false)
		if rec := h.serve("POST", "/feedback", `{"response_id":"chatcmpl-1","thumbs":"up"}`); rec.Code != http.StatusAccepted {
			t.Errorf("POST once the disk is back: %d %s", rec.Code, rec.Body)
		}
		synctest.Wait()
		wantState(t, h.one(t, "chatcmpl-1"), feedback.Annotated)
		if err := h.stop(t, context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkSubmitStore is BenchmarkSubmit with the feedback kept in a data
// directory, without and with fsync: one transaction before Submit returns,
// one more when the feedback ends (both inside the time measured).
func BenchmarkSubmitStore(b *testing.B) {
	for _, mode := range []string{"memory", "nosync", "sync"} {
		b.Run(mode, func(b *testing.B) {
			var st *store.Store
			if mode != "memory" {
				var err error
				if st, err = store.Open(b.TempDir(), store.Options{Sync: mode == "sync"}); err != nil {
					b.Fatal(err)
				}
				// Cleanups run last-in first-out: the store closes after
				// the service, which benchService registers next, shut down.
				b.Cleanup(func() { _ = st.Close() })
			}
			svc, _ := benchService(b, feedback.Config{SyncWait: 10 * time.Second}, &benchAnnotator{})
			if st != nil {
				if _, err := svc.Restore(st); err != nil {
					b.Fatal(err)
				}
			}
			benchSubmitLoop(b, svc)
		})
	}
}
