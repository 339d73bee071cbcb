package listener

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// listen returns a capped listener on loopback, the connections it
// accepts, and how many it refused.
func listen(t *testing.T, max int) (*limited, <-chan net.Conn, *atomic.Int64) {
	t.Helper()
	var refused atomic.Int64
	ln, err := Listen(context.Background(), "127.0.0.1:0", max, func() { refused.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return ln.(*limited), accepted, &refused
}

func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accept(t *testing.T, accepted <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-accepted:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// closedAtOnce reports whether the server closed c without a word.
func closedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && errors.Is(err, io.EOF)
}

// waitRefused waits for refused to reach want: the listener calls it just
// after closing the connection, which the client may see first.
func waitRefused(t *testing.T, refused *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); refused.Load() < want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			break
		}
	}
	if got := refused.Load(); got != want {
		t.Errorf("refused = %d, want %d", got, want)
	}
}

// Past max, a connection is closed at once and refused is called; once one
// closes, a new one is accepted again.
func TestListenCapsConnections(t *testing.T) {
	ln, accepted, refused := listen(t, 2)
	a := dial(t, ln)
	sa := accept(t, accepted)
	dial(t, ln)
	accept(t, accepted)
	if got := ln.Open(); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}
	extra := dial(t, ln)
	if !closedAtOnce(t, extra) {
		t.Fatal("the connection over the cap was not closed at once")
	}
	waitRefused(t, refused, 1)
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the cap was accepted: %v", c.RemoteAddr())
	default:
	}
	// The open ones still work.
	if _, err := a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(sa, make([]byte, 1)); err != nil {
		t.Fatalf("reading an open connection: %v", err)
	}

	// Closing one, twice, frees one place.
	sa.Close()
	sa.Close()
	if got := ln.Open(); got != 1 {
		t.Fatalf("open after a close = %d, want 1", got)
	}
	dial(t, ln)
	accept(t, accepted)
	if got := ln.Open(); got != 2 {
		t.Errorf("open = %d, want 2", got)
	}
	if !closedAtOnce(t, dial(t, ln)) {
		t.Fatal("the connection over the cap was not closed at once")
	}
	waitRefused(t, refused, 2)
}

// A max of zero or less means the default.
func TestListenDefaultMax(t *testing.T) {
	for _, max := range []int{0, -1} {
		ln, err := Listen(context.Background(), "127.0.0.1:0", max, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := ln.(*limited).max; got != DefaultMaxConnections {
			t.Errorf("max %d: cap %d, want %d", max, got, DefaultMaxConnections)
		}
		ln.Close()
	}
}

// The listener finds an open connection by its addresses, as the client's
// side sees them swapped; its LastRead moves when it reads bytes, and only
// then; once closed, it is found no more.
func TestActivity(t *testing.T) {
	ln, accepted, _ := listen(t, 4)
	before := time.Now()
	c := dial(t, ln)
	s := accept(t, accepted)
	other := dial(t, ln)
	accept(t, accepted)

	var tr Tracker = ln
	a, ok := tr.Activity(c.RemoteAddr(), c.LocalAddr())
	if !ok {
		t.Fatalf("connection from %v not found", c.LocalAddr())
	}
	if _, ok := tr.Activity(s.LocalAddr(), s.RemoteAddr()); !ok {
		t.Fatal("connection not found by its own addresses")
	}
	if o, ok := tr.Activity(other.RemoteAddr(), other.LocalAddr()); !ok || o == a {
		t.Fatalf("the other connection: %v, %v; want it found, and not the first", o, ok)
	}
	accepted0 := a.LastRead()
	if accepted0.Before(before) || time.Since(accepted0) > 5*time.Second {
		t.Fatalf("LastRead before any read = %v, want about when it was accepted (after %v)", accepted0, before)
	}

	// A read that gets nothing (here, a timeout) is no progress.
	time.Sleep(20 * time.Millisecond)
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with nothing sent: %v, want a timeout", err)
	}
	if got := a.LastRead(); !got.Equal(accepted0) {
		t.Errorf("LastRead moved to %v on a read of nothing", got)
	}

	// Bytes read are.
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	beforeRead := time.Now()
	if _, err := io.ReadFull(s, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	if got := a.LastRead(); got.Before(beforeRead) || got.Before(accepted0.Add(20*time.Millisecond)) {
		t.Errorf("LastRead after a read = %v, want at least %v", got, beforeRead)
	}

	// Unknown addresses.
	if _, ok := tr.Activity(c.RemoteAddr(), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}); ok {
		t.Error("found a connection from an address never accepted")
	}
	if _, ok := tr.Activity(nil, nil); ok {
		t.Error("found a connection for no addresses")
	}

	// Closed: removed.
	s.Close()
	if _, ok := tr.Activity(c.RemoteAddr(), c.LocalAddr()); ok {
		t.Error("a closed connection is still found")
	}
	if _, ok := tr.Activity(other.RemoteAddr(), other.LocalAddr()); !ok {
		t.Error("closing one connection removed another")
	}
}
