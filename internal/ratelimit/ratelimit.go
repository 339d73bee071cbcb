package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Config is one limit: Rate requests a second per key, with bursts of
// Burst, for up to MaxKeys keys at once.
type Config struct {
	// Rate is the requests a second a key's bucket refills with; it must be
	// positive and finite.
	Rate float64
	// Burst is the requests a full bucket lets through at once; at least 1.
	Burst int
	// MaxKeys is the buckets kept; at least 1. Each costs about
	// BucketBytes.
	MaxKeys int
	// Key says what a key is, for the message of a refusal: "client
	// address", "token". Empty means "client".
	Key string
	// OnRefuse, if set, is called once for every request refused, by
	// Allow or AllowRequest (a counter's Inc).
	OnRefuse func()
}

// BucketBytes is what one key's bucket costs at most, a key of up to 16
// bytes included (longer keys add their length): the rate.Limiter, the
// LRU's list element and its share of the LRU's hash table. Measured about
// 200 (BenchmarkDistinctKeys, TestLimiterMemoryBounded), rounded up.
const BucketBytes = 256

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Key == "" {
		c.Key = "client"
	}
	if c.OnRefuse == nil {
		c.OnRefuse = func() {}
	}
	return c
}

// Validate says what is wrong with c, naming the field.
func (c Config) Validate() error {
	var errs []error
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %g: expected a positive number of requests a second", c.Rate))
	}
	if c.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst %d: expected at least 1 request", c.Burst))
	}
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("max keys %d: expected at least 1", c.MaxKeys))
	}
	return errors.Join(errs...)
}

// Limiter holds a token bucket per key. Safe for concurrent use.
type Limiter struct {
	cfg       Config
	buckets   *lru.Cache[string, *rate.Limiter]
	evictions atomic.Uint64
}

// New returns a limiter of cfg, which must be valid.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Limiter{cfg: cfg}
	var err error
	l.buckets, err = lru.NewWithEvict(cfg.MaxKeys, func(string, *rate.Limiter) { l.evictions.Add(1) })
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Allow takes one request from key's bucket. When the bucket is empty it
// returns false and how long until it holds one request again; the refused
// request costs the bucket nothing, so a client that retries after that
// delay gets in.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.allowAt(key, time.Now())
}

func (l *Limiter) allowAt(key string, now time.Time) (bool, time.Duration) {
	b, found := l.buckets.Get(key)
	if !found {
		// Two first requests of a key may race here: PeekOrAdd keeps the
		// bucket the first one added.
		fresh := rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)
		if prev, had, _ := l.buckets.PeekOrAdd(key, fresh); had {
			b = prev
		} else {
			b = fresh
		}
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	l.cfg.OnRefuse()
	// AllowN took nothing; the wait is for the missing part of one token.
	// Capped, so that a tiny rate cannot overflow the duration.
	secs := min((1-b.TokensAt(now))/l.cfg.Rate, maxWait.Seconds())
	return false, time.Duration(secs * float64(time.Second))
}

// maxWait caps the wait Allow reports.
const maxWait = 24 * time.Hour

// Len returns the buckets held now.
func (l *Limiter) Len() int { return l.buckets.Len() }

// Cap returns the most buckets held at once, Config.MaxKeys.
func (l *Limiter) Cap() int { return l.cfg.MaxKeys }

// Evictions returns the buckets forgotten so far to make room for others.
func (l *Limiter) Evictions() uint64 { return l.evictions.Load() }

// Config returns the limiter's configuration.
func (l *Limiter) Config() Config { return l.cfg }
