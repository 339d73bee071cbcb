package budget

import (
	"errors"
	"strings"
	"testing"
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
