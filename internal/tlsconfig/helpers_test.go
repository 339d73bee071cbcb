package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects what a logger writes, from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testOptions are options with a clock the test moves, a log it reads and
// metrics of their own.
func testOptions(name string) (Options, *clock, *logBuffer) {
	c, logs := newClock(), &logBuffer{}
	return Options{
		Name:    name,
		Log:     slog.New(slog.NewTextHandler(logs, nil)),
		Metrics: NewMetrics(nil),
		now:     c.now,
	}, c, logs
}

// files are paths in a test's own directory.
type files struct{ dir string }

func (f files) path(name string) string { return filepath.Join(f.dir, name) }

// serve accepts TLS connections on loopback with cfg, completes their
// handshake and answers "ok" on those that succeed, until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	tl := tls.NewListener(ln, cfg)
	wg.Go(func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = io.WriteString(c, "ok")
				}
			})
		}
	})
	return ln.Addr().String()
}

// dial completes a handshake with addr and waits for the server's "ok", so
// that a client certificate the server refuses (which TLS 1.3 tells only
// after the client's handshake is done) is an error too. It returns the
// serial number of the server's certificate.
func dial(t *testing.T, addr string, cfg *tls.Config) (*big.Int, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	if string(b) != "ok" {
		return nil, errors.New("no ok")
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// clientTLS trusts ca and presents cert, when not nil.
func clientTLS(ca *tlstest.CA, cert *tlstest.KeyPair, t *testing.T) *tls.Config {
	c := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.TLS(t)}
	}
	return c
}

func serialOf(k *tlstest.KeyPair) *big.Int { return k.Cert.SerialNumber }
