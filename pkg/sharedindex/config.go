package sharedindex

import (
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for Config.
const (
	DefaultTimeout    = time.Second
	DefaultMaxBacklog = 20_000
	DefaultPrefix     = "fbp:"
)

// BacklogEntryBytes is the most an entry waiting in the backlog costs: its
// place in the slice (twice, as the slice grows by reallocation) and its
// strings, the response id and span and project names, each cut to 256
// bytes by pkg/index.
const BacklogEntryBytes = 1 << 10

// Config says where the shared index is and bounds what a replica keeps for
// it.
type Config struct {
	// URL is the Redis or Valkey server: redis://[user:password@]host:port/db,
	// or rediss:// for TLS. Every replica given the same URL (and Prefix)
	// shares one index. Required.
	URL string
	// MaxAge is how long an entry lives in Redis after it was indexed: the
	// index's own max age, so that Redis forgets it when each replica
	// would. Zero means 24 hours (index.DefaultMaxAge).
	MaxAge time.Duration
	// VoteTTL is how long the latest vote of a key is remembered (see
	// Votes): as long as a feedback may stay pending, after which no
	// replica writes it. Zero means an hour (feedback.DefaultMaxAge).
	VoteTTL time.Duration
	// Timeout bounds every call to Redis: connecting, and each command or
	// pipeline read and written. Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxBacklog is how many entries may wait to be written while Redis is
	// slow or unreachable; past it the oldest are dropped from the backlog
	// (counted and logged; each replica's own index keeps them). Zero
	// means DefaultMaxBacklog: at 1,000 LLM spans a second, 20 s of
	// Redis down; at what real apps make (an LLM call takes seconds),
	// minutes. An entry takes up to BacklogEntryBytes. The entries of
	// the pipeline being written (up to 256) come on top.
	MaxBacklog int
	// Prefix starts every key and the channel, so that one Redis can hold
	// several independent indexes. Empty means DefaultPrefix.
	Prefix string
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.VoteTTL == 0 {
		c.VoteTTL = time.Hour
	}
	if c.MaxBacklog == 0 {
		c.MaxBacklog = DefaultMaxBacklog
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("sharedindex: a Redis URL is required"))
	} else if _, err := redis.ParseURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("sharedindex: Redis URL: %w (want redis://[user:password@]host:port/db or rediss://...)", redactErr(err, c.URL)))
	}
	if c.MaxAge < 0 || c.Timeout < 0 || c.VoteTTL < 0 {
		errs = append(errs, fmt.Errorf("sharedindex: MaxAge, VoteTTL and Timeout must be positive, got %s, %s and %s", c.MaxAge, c.VoteTTL, c.Timeout))
	}
	if c.MaxBacklog < 0 {
		errs = append(errs, fmt.Errorf("sharedindex: MaxBacklog must be positive, got %d", c.MaxBacklog))
	}
	return errors.Join(errs...)
}

// options turns the URL into go-redis options with our timeouts: a
// replica must never wait on Redis longer than Timeout per call, and go-redis's
// own retries would multiply it.
func (c Config) options() (*redis.Options, error) {
	opt, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, err
	}
	opt.DialTimeout = c.Timeout
	opt.ReadTimeout = c.Timeout
	opt.WriteTimeout = c.Timeout
	opt.PoolTimeout = c.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // none: the writer and the seeker retry on their own schedule
	// One dial a call, not five 100 ms apart: a Redis that refuses
	// connections must cost a feedback milliseconds, not half a second.
	opt.DialerRetries = 1
	opt.PoolSize = 8
	opt.DisableIdentity = true // no CLIENT SETINFO: older servers and proxies refuse it
	return opt, nil
}

// Redacted returns the URL with its password hidden, for logs and /readyz.
func Redacted(rawURL string) string {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return "(unparsable Redis URL)"
	}
	scheme := "redis"
	if opt.TLSConfig != nil {
		scheme = "rediss"
	}
	user := ""
	if opt.Username != "" || opt.Password != "" {
		user = opt.Username
		if opt.Password != "" {
			user += ":xxxxx"
		}
		user += "@"
	}
	return fmt.Sprintf("%s://%s%s/%d", scheme, user, opt.Addr, opt.DB)
}

// redactErr keeps a password out of a parse error that quotes the URL.
func redactErr(err error, rawURL string) error {
	return errors.New(redactString(err.Error(), rawURL))
}
