// Package listener gives every listener of the proxy the same defences: a
// cap on open connections, and timeouts for reading a request's header, its
// whole body, and for idle keep-alive connections, so that a slow, stalled
// or idle client holds a connection (and the memory it costs) for a bounded
// time only.
package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxConnections    = 512
	// DefaultMaxHeaderBytes caps a request's header: OTLP and feedback
	// requests carry a few short headers.
	DefaultMaxHeaderBytes = 64 << 10
)

// Limits bound what one client can hold of a listener.
type Limits struct {
	// ReadHeaderTimeout is how long a client may take to send a request's
	// header (and, on gRPC, to set up its connection). Zero means
	// DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long a client may take to send a whole request,
	// header and body; a body that stalls or trickles is cut off then, and
	// what it held is given back. Zero means DefaultReadTimeout.
	ReadTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request (on gRPC: stay open with no call in progress). Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConnections caps the connections open at once on the listener;
	// past it, a new connection is closed at once (and counted), so the
	// process never runs out of file descriptors because of one port. Zero
	// means DefaultMaxConnections.
	MaxConnections int
}

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	return l
}

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ReadHeaderTimeout", l.ReadHeaderTimeout}, {"ReadTimeout", l.ReadTimeout}, {"IdleTimeout", l.IdleTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if l.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("MaxConnections must be positive, got %d", l.MaxConnections))
	}
	return errors.Join(errs...)
}

// HTTPServer returns a server for h with the limits' timeouts. Handlers
// that wait on something slow (an upstream) are not cut off while they
// wait: only reading the request is timed.
func (l Limits) HTTPServer(h http.Handler) *http.Server {
	l = l.WithDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(l.ReadHeaderTimeout, l.ReadTimeout),
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
	}
}

// Listen listens on addr and caps the connections open at once at max:
// past it, a connection is accepted and closed at once, and refused is
// called, instead of being left to wait in the kernel's backlog, where a
// client could not tell a full proxy from a slow one.
func Listen(ctx context.Context, addr string, max int, refused func()) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultMaxConnections
	}
	return &limited{Listener: ln, max: int64(max), refused: refused}, nil
}

type limited struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused func()
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			if l.refused != nil {
				l.refused()
			}
			continue
		}
		return &counted{Conn: c, l: l}, nil
	}
}

// Open returns the connections open now.
func (l *limited) Open() int64 { return l.open.Load() }

type counted struct {
	net.Conn
	l    *limited
	once sync.Once
}

func (c *counted) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
