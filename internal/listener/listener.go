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

// WithDefaults returns l with its zero fields set to their defaults.
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
//
// The listener returned is a Tracker: it tells when each of its open
// connections last read bytes.
func Listen(ctx context.Context, addr string, max int, refused func()) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return newLimited(ln, max, refused), nil
}

func newLimited(ln net.Listener, max int, refused func()) *limited {
	if max <= 0 {
		max = DefaultMaxConnections
	}
	return &limited{Listener: ln, max: int64(max), refused: refused, conns: map[connKey]*counted{}}
}

// Tracker is implemented by the listeners Listen returns: it finds one of
// their open connections by its addresses, as a server reports them (for
// gRPC, peer.Peer's LocalAddr and Addr).
type Tracker interface {
	// Activity returns the open connection accepted on local from remote,
	// or false when there is none (closed, or not accepted here).
	Activity(local, remote net.Addr) (Activity, bool)
}

// Activity is what a Tracker tells of one connection.
type Activity interface {
	// LastRead returns when the connection last read any bytes (when it
	// was accepted, if it has read none yet). Any bytes count, HTTP/2
	// control frames included: see the callers' notes on what that allows.
	LastRead() time.Time
}

// connKey is a connection's addresses: on TCP, remote and local together
// name one open connection.
type connKey struct{ local, remote string }

func keyOf(local, remote net.Addr) connKey {
	var k connKey
	if local != nil {
		k.local = local.String()
	}
	if remote != nil {
		k.remote = remote.String()
	}
	return k
}

type limited struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused func()

	mu    sync.Mutex
	conns map[connKey]*counted // the open ones, until their Close
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
		cc := &counted{Conn: c, l: l, key: keyOf(c.LocalAddr(), c.RemoteAddr())}
		cc.lastRead.Store(int64(time.Since(epoch)))
		l.mu.Lock()
		l.conns[cc.key] = cc
		l.mu.Unlock()
		return cc, nil
	}
}

// Open returns the connections open now.
func (l *limited) Open() int64 { return l.open.Load() }

// Activity implements Tracker.
func (l *limited) Activity(local, remote net.Addr) (Activity, bool) {
	l.mu.Lock()
	c, ok := l.conns[keyOf(local, remote)]
	l.mu.Unlock()
	if !ok {
		return nil, false
	}
	return c, true
}

// epoch is what read times are counted from: a monotonic clock, so that
// a change of the wall clock does not make a connection look stalled.
var epoch = time.Now()

type counted struct {
	net.Conn
	l        *limited
	key      connKey
	lastRead atomic.Int64 // since epoch
	once     sync.Once
}

func (c *counted) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.lastRead.Store(int64(time.Since(epoch)))
	}
	return n, err
}

// LastRead implements Activity.
func (c *counted) LastRead() time.Time { return epoch.Add(time.Duration(c.lastRead.Load())) }

func (c *counted) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.mu.Lock()
		if c.l.conns[c.key] == c {
			delete(c.l.conns, c.key)
		}
		c.l.mu.Unlock()
	})
	return err
}
