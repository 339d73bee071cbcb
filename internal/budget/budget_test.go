package budget

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A single request larger than the whole budget still goes through when
// nothing else is in flight: slow, never starved. Otherwise the budget is
// exact, and every release gives everything back.
func TestBudget(t *testing.T) {
	var reported int64
	b := New(100, func(used int64) { reported = used })
	lone := b.Reserve()
	if !lone.Grow(400) || !lone.Grow(100) {
		t.Fatal("a lone request over the budget was refused")
	}
	if b.Reserve().Grow(1) {
		t.Fatal("a second request was let in beside it")
	}
	lone.Release()
	lone.Release() // twice is harmless
	a, c := b.Reserve(), b.Reserve()
	if !a.Grow(60) || !c.Grow(40) || c.Grow(1) || a.Grow(1) {
		t.Fatal("the budget is not exactly 100")
	}
	if reported != 100 || b.Used() != 100 || a.Held() != 60 {
		t.Fatalf("reported %d, used %d, a holds %d; want 100, 100, 60", reported, b.Used(), a.Held())
	}
	a.Release()
	c.Release()
	if b.Used() != 0 || reported != 0 {
		t.Fatalf("used = %d (reported %d) after every release, want 0", b.Used(), reported)
	}
}

// ReadAll charges as the bytes come, and stops at the limit or the budget.
func TestReadAll(t *testing.T) {
	body := strings.Repeat("x", 100_000)
	b := New(1<<20, nil)
	res := b.Reserve()
	got, err := ReadAll(strings.NewReader(body), 200_000, res)
	if err != nil || string(got) != body {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	if res.Held() < int64(len(body)) || res.Held() > 2*int64(len(body))+readChunk {
		t.Errorf("held %d for a body of %d", res.Held(), len(body))
	}
	res.Release()

	if got, err := ReadAll(strings.NewReader(body), 1000, b.Reserve()); err != nil || len(got) != 1001 {
		t.Errorf("over the limit: %d bytes, %v; want limit+1 and no error", len(got), err)
	}

	small := New(50_000, nil)
	other := small.Reserve()
	other.Grow(1)
	res = small.Reserve()
	if _, err := ReadAll(strings.NewReader(body), 200_000, res); !errors.Is(err, ErrSpent) {
		t.Errorf("over the budget: %v, want ErrSpent", err)
	}
	res.Release()
	if small.Used() != 1 {
		t.Errorf("used %d after release, want 1", small.Used())
	}
}

// When the budget is full, the reader that stalled longest (at least
// MinStall) is aborted and its bytes waited for; one that makes progress,
// or has read its body, is not.
func TestStalledReaderGivesWay(t *testing.T) {
	b := New(100, nil)
	b.MinStall = 20 * time.Millisecond
	stalled := b.Reserve()
	var aborts atomic.Int32
	stalled.Track(func() {
		aborts.Add(1)
		go stalled.Release() // what its handler does once its read fails
	})
	if !stalled.Grow(80) {
		t.Fatal("grow")
	}
	done := b.Reserve() // read its body, waits upstream: never aborted
	if !done.Grow(20) {
		t.Fatal("grow")
	}
	done.Untrack()

	// Not stalled long enough yet: refused, nobody aborted.
	if b.Reserve().Grow(50) || aborts.Load() != 0 {
		t.Fatalf("refusal before MinStall: aborts %d", aborts.Load())
	}
	time.Sleep(30 * time.Millisecond)
	fresh := b.Reserve()
	if !fresh.Grow(50) {
		t.Fatal("a request needing room was refused although a reader had stalled past MinStall")
	}
	if aborts.Load() != 1 || !stalled.Aborted() || done.Aborted() {
		t.Errorf("aborts %d, stalled aborted %v, done aborted %v", aborts.Load(), stalled.Aborted(), done.Aborted())
	}

	// A reader that keeps reading keeps what it holds.
	fresh.Track(func() { t.Error("a reader making progress was aborted") })
	time.Sleep(30 * time.Millisecond)
	fresh.Progress()
	if b.Reserve().Grow(40) {
		t.Error("room made from a reader that made progress")
	}
	fresh.Release()
	done.Release()
	if b.Used() != 0 {
		t.Errorf("used %d after every release", b.Used())
	}
}

// With SetWait, Grow waits for room instead of failing at once.
func TestGrowWaits(t *testing.T) {
	b := New(100, nil)
	held := b.Reserve()
	held.Grow(100)
	go func() {
		time.Sleep(50 * time.Millisecond)
		held.Release()
	}()
	r := b.Reserve()
	r.SetWait(5 * time.Second)
	if !r.Grow(60) {
		t.Fatal("Grow with a wait failed although room came")
	}
	r.Release()
	other := b.Reserve()
	other.Grow(100)
	r.SetWait(30 * time.Millisecond)
	start := time.Now()
	if r.Grow(60) {
		t.Fatal("Grow took room that never came")
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("Grow gave up before its wait")
	}
}
