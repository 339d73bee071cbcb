package budget

import "testing"

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
