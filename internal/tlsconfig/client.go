package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"
)

// Client is the TLS side of the connections to one upstream: the CAs its
// certificate must chain to, and the certificate presented when it asks
// for one. It is safe for concurrent use.
type Client struct {
	roots *watched[*x509.CertPool]   // nil: the system's roots
	cert  *watched[*tls.Certificate] // nil: no client certificate
}

// NewClient returns the TLS side of connections using c's files. It does no
// I/O: Load, or else the first request, reads the files.
func NewClient(c ClientConfig, o Options) (*Client, error) {
	if err := errors.Join(c.Validate(), o.validate()); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	cl := &Client{}
	if c.CAFile != "" {
		cl.roots = newWatched(kindCA, parseCAs, o, c.CAFile)
	}
	if c.CertFile != "" {
		cl.cert = newWatched(kindCertificate, parseKeyPair, o, c.CertFile, c.KeyFile)
		cl.cert.loaded = func(cert *tls.Certificate) {
			o.Metrics.expiry.WithLabelValues(o.Name).Set(float64(cert.Leaf.NotAfter.Unix()))
		}
	}
	return cl, nil
}

// Load reads the files now and reports why they cannot be used. Calling it
// at start makes a wrong path fail the start rather than every request.
func (c *Client) Load() error {
	var err error
	if c.roots != nil {
		err = c.roots.load()
	}
	if c.cert != nil {
		err = errors.Join(err, c.cert.load())
	}
	return err
}

// clientState is what connections are set up with at one time.
type clientState struct {
	roots *x509.CertPool   // nil: the system's
	cert  *tls.Certificate // nil: none
	gen   [2]uint64        // of roots and cert: changes with either
}

func (c *Client) state() (clientState, error) {
	var s clientState
	var err error
	if c.roots != nil {
		if s.roots, s.gen[0], err = c.roots.get(); err != nil {
			return s, err
		}
	}
	if c.cert != nil {
		if s.cert, s.gen[1], err = c.cert.get(); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (s clientState) config() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.roots}
	if s.cert != nil {
		c.Certificates = []tls.Certificate{*s.cert}
	}
	return c
}

// Transport returns a RoundTripper that sends requests as base would, over
// connections set up with the files' contents in use: when they change,
// the next request makes a copy of base with the new ones, and the
// previous copy's connections are closed as they fall idle. A request in
// flight ends on the connection it started on. base itself is never used.
//
// A new copy rather than one tls.Config whose hooks read the files: the
// roots a server's certificate is verified against cannot change in a
// tls.Config without verifying by hand, which this leaves to crypto/tls.
func (c *Client) Transport(base *http.Transport) http.RoundTripper {
	return &transport{client: c, base: base}
}

// maxRetired bounds the copies kept after a reload so that CloseIdleConnections
// reaches their connections; older ones close theirs after their idle timeout.
const maxRetired = 4

type transport struct {
	client *Client
	base   *http.Transport

	mu      sync.Mutex
	cur     *http.Transport // nil before the first request
	gen     [2]uint64       // of cur
	retired []*http.Transport
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tr, err := t.current()
	if err != nil {
		// A RoundTripper closes the body, even on errors.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return tr.RoundTrip(req)
}

// current returns the copy of base for the files' contents in use, making
// it when they changed.
func (t *transport) current() (*http.Transport, error) {
	s, err := t.client.state()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// Only forwards: a request that read the files before another
	// reloaded them must not put the old contents back.
	if t.cur != nil && !(s.gen[0] >= t.gen[0] && s.gen[1] >= t.gen[1] && s.gen != t.gen) {
		return t.cur, nil
	}
	tr := t.base.Clone()
	tr.TLSClientConfig = s.config()
	if t.cur != nil {
		t.cur.CloseIdleConnections()
		t.retired = append(t.retired, t.cur)
		if len(t.retired) > maxRetired {
			t.retired = t.retired[1:]
		}
	}
	t.cur, t.gen = tr, s.gen
	return tr, nil
}

// CloseIdleConnections closes the idle connections of every copy, as
// http.Client.CloseIdleConnections asks.
func (t *transport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		t.cur.CloseIdleConnections()
	}
	for _, r := range t.retired {
		r.CloseIdleConnections()
	}
}
