package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" for valid
	}{
		{"valid", Config{Rate: 0.5, Burst: 1, MaxKeys: 1}, ""},
		{"zero rate", Config{Rate: 0, Burst: 1, MaxKeys: 1}, "rate 0: expected a positive number"},
		{"negative rate", Config{Rate: -1, Burst: 1, MaxKeys: 1}, "rate -1"},
		{"infinite rate", Config{Rate: inf(), Burst: 1, MaxKeys: 1}, "rate +Inf"},
		{"zero burst", Config{Rate: 1, Burst: 0, MaxKeys: 1}, "burst 0: expected at least 1"},
		{"no keys", Config{Rate: 1, Burst: 1, MaxKeys: 0}, "max keys 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New took an invalid config")
			}
		})
	}
}

func inf() float64 { var zero float64; return 1 / zero }

// A bucket lets Burst requests through at once, then one every 1/Rate;
// a refused request says how long to wait and costs nothing, so the
// request after that wait gets in. Keys have buckets of their own.
func TestLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, l *Limiter)
	}{
		{
			name: "burst, then the rate",
			cfg:  Config{Rate: 2, Burst: 3, MaxKeys: 10},
			check: func(t *testing.T, l *Limiter) {
				for i := range 3 {
					if ok, _ := l.allowAt("a", t0); !ok {
						t.Fatalf("request %d of the burst refused", i)
					}
				}
				ok, wait := l.allowAt("a", t0)
				if ok || wait != 500*time.Millisecond {
					t.Fatalf("past the burst: ok %v, wait %v; want refused, 500ms", ok, wait)
				}
				// Refused again a little later: the first refusal took nothing.
				ok, wait = l.allowAt("a", t0.Add(200*time.Millisecond))
				if ok || wait != 300*time.Millisecond {
					t.Fatalf("200ms later: ok %v, wait %v; want refused, 300ms", ok, wait)
				}
				if ok, _ := l.allowAt("a", t0.Add(500*time.Millisecond)); !ok {
					t.Fatal("refused after waiting as told")
				}
				if ok, _ := l.allowAt("b", t0); !ok {
					t.Fatal("another key shares the bucket")
				}
			},
		},
		{
			name: "a slow rate waits long",
			cfg:  Config{Rate: 0.1, Burst: 1, MaxKeys: 1},
			check: func(t *testing.T, l *Limiter) {
				l.allowAt("a", t0)
				if ok, wait := l.allowAt("a", t0.Add(time.Second)); ok || wait != 9*time.Second {
					t.Fatalf("ok %v, wait %v; want refused, 9s", ok, wait)
				}
			},
		},
		{
			name: "a tiny rate's wait is capped",
			cfg:  Config{Rate: 1e-300, Burst: 1, MaxKeys: 1},
			check: func(t *testing.T, l *Limiter) {
				l.allowAt("a", t0)
				if ok, wait := l.allowAt("a", t0); ok || wait != maxWait {
					t.Fatalf("ok %v, wait %v; want refused, %v", ok, wait, maxWait)
				}
			},
		},
		{
			name: "the LRU forgets the bucket used least recently",
			cfg:  Config{Rate: 1, Burst: 1, MaxKeys: 2},
			check: func(t *testing.T, l *Limiter) {
				l.allowAt("a", t0)
				l.allowAt("b", t0)
				l.allowAt("a", t0) // refused, and a is now the most recent
				l.allowAt("c", t0) // evicts b
				if l.Len() != 2 || l.Cap() != 2 || l.Evictions() != 1 {
					t.Fatalf("len %d cap %d evictions %d; want 2, 2, 1", l.Len(), l.Cap(), l.Evictions())
				}
				if ok, _ := l.allowAt("a", t0); ok {
					t.Fatal("a's empty bucket was forgotten")
				}
				if ok, _ := l.allowAt("b", t0); !ok {
					t.Fatal("b's bucket was kept: want a fresh one")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, l)
		})
	}
}

// A flood of distinct keys holds MaxKeys buckets, whatever its size: the
// heap after a million keys (floodKeys) is what it was after the first
// MaxKeys.
func TestLimiterMemoryBounded(t *testing.T) {
	const maxKeys = 10_000
	l, err := New(Config{Rate: 1, Burst: 1, MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	key := func(i int) string { return fmt.Sprintf("%016x", i) }
	before := heap()
	for i := range maxKeys {
		l.allowAt(key(i), t0)
	}
	full := heap()
	for i := maxKeys; i < floodKeys; i++ {
		l.allowAt(key(i), t0)
	}
	after := heap()
	if l.Len() != maxKeys || l.Evictions() != floodKeys-maxKeys {
		t.Fatalf("len %d, evictions %d; want %d, %d", l.Len(), l.Evictions(), maxKeys, floodKeys-maxKeys)
	}
	perBucket := (int64(full) - int64(before)) / maxKeys
	t.Logf("heap: %d before, %d with %d buckets (%d bytes each), %d after %d keys", before, full, maxKeys, perBucket, after, floodKeys)
	if perBucket > BucketBytes {
		t.Errorf("%d bytes per bucket, over BucketBytes (%d)", perBucket, BucketBytes)
	}
	if grown := int64(after) - int64(full); grown > maxKeys*BucketBytes/10 {
		t.Errorf("the heap grew by %d bytes from %d keys to %d, with %d buckets held throughout", grown, maxKeys, floodKeys, maxKeys)
	}
	runtime.KeepAlive(l)
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The HTTP side: a refusal is 429 with Retry-After in whole seconds,
// rounded up, and the feedback API's error body; it is counted.
func TestAllowRequest(t *testing.T) {
	var refused int
	l, err := New(Config{Rate: 0.4, Burst: 2, MaxKeys: 10, Key: "token", OnRefuse: func() { refused++ }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		rec := httptest.NewRecorder()
		if !l.AllowRequest(rec, "tok") || rec.Code != http.StatusOK || len(rec.Header()) != 0 {
			t.Fatalf("request %d of the burst: refused or answered (%d, %v)", i, rec.Code, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	if l.AllowRequest(rec, "tok") {
		t.Fatal("past the burst: allowed")
	}
	// 1/0.4 = 2.5 s, less the instant the test took: 3 once rounded up.
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "3" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("refusal: %d, Retry-After %q, Content-Type %q", rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Content-Type"))
	}
	var ans struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	if want := "too many requests from this token: the limit is 0.4 a second, in bursts of up to 2; retry after 3 s"; ans.Error.Status != 429 || ans.Error.Message != want {
		t.Errorf("error = %+v, want 429 %q", ans.Error, want)
	}
	if refused != 1 {
		t.Errorf("OnRefuse called %d times, want 1", refused)
	}
}

func TestMiddleware(t *testing.T) {
	l, err := New(Config{Rate: 1, Burst: 1, MaxKeys: 10})
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++ }),
		func(r *http.Request) (string, bool) {
			k := r.Header.Get("X-Key")
			return k, k != ""
		})
	do := func(key string) int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if key != "" {
			r.Header.Set("X-Key", key)
		}
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	codes := []int{do("a"), do("a"), do("b"), do(""), do("")}
	want := []int{200, 429, 200, 200, 200}
	if fmt.Sprint(codes) != fmt.Sprint(want) || served != 4 {
		t.Fatalf("codes %v, served %d; want %v, 4", codes, served, want)
	}
}

// BenchmarkDistinctKeys is a flood of keys never seen before, each 16
// bytes (an address key is 4 or 8): every request adds a bucket and
// evicts one. It reports what a bucket costs.
func BenchmarkDistinctKeys(b *testing.B) {
	const maxKeys = 100_000
	l, err := New(Config{Rate: 10, Burst: 40, MaxKeys: maxKeys})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 4*maxKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%016x", i)
	}
	before := heap()
	for i := range maxKeys {
		l.Allow(keys[i])
	}
	perBucket := float64(heap()-before) / maxKeys
	b.ReportAllocs()
	i := maxKeys
	for b.Loop() {
		l.Allow(keys[i%len(keys)])
		i++
	}
	b.ReportMetric(perBucket, "bytes/bucket")
}

// BenchmarkSameKey is one client within its limit: the common case.
func BenchmarkSameKey(b *testing.B) {
	l, err := New(Config{Rate: 1e9, Burst: 1e9, MaxKeys: 10})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("203.0.113.7")
	}
}
