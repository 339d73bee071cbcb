package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Server is the TLS side of one or more listeners: it presents the
// certificate of its files and, with a client CA, requires every client to
// present one that chains to it. It is safe for concurrent use.
type Server struct {
	cert      *watched[*tls.Certificate]
	clientCAs *watched[*x509.CertPool] // nil without a ClientCAFile
}

// WithoutClientCerts returns the TLS side of a listener that serves s's
// certificate but asks its clients for none, whatever s's client CA: one
// browsers reach, which have no client certificate to present. The
// certificate is s's own, read and counted once for both. nil for nil.
func (s *Server) WithoutClientCerts() *Server {
	if s == nil {
		return nil
	}
	return &Server{cert: s.cert}
}

// NewServer returns the TLS side of listeners serving c's files. It does no
// I/O: Load, or else the first handshake, reads the files.
func NewServer(c ServerConfig, o Options) (*Server, error) {
	if !c.Enabled() {
		return nil, errors.New("tlsconfig: no certificate files")
	}
	if err := errors.Join(c.Validate(), o.validate()); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	s := &Server{cert: newWatched(kindCertificate, parseKeyPair, o, c.CertFile, c.KeyFile)}
	s.cert.loaded = func(cert *tls.Certificate) {
		o.Metrics.expiry.WithLabelValues(o.Name).Set(float64(cert.Leaf.NotAfter.Unix()))
	}
	if c.ClientCAFile != "" {
		s.clientCAs = newWatched(kindCA, parseCAs, o, c.ClientCAFile)
	}
	return s, nil
}

// Load reads the files now and reports why they cannot be used. Calling it
// at start makes a wrong path fail the start rather than every handshake.
func (s *Server) Load() error {
	err := s.cert.load()
	if s.clientCAs != nil {
		err = errors.Join(err, s.clientCAs.load())
	}
	return err
}

// Config returns the configuration of a listener that offers nextProtos by
// ALPN (none: the caller adds its own, as gRPC's credentials add "h2").
// Every handshake uses the certificate and client CAs in use at that time.
func (s *Server) Config(nextProtos ...string) *tls.Config {
	nextProtos = slices.Clip(slices.Clone(nextProtos))
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		// A configuration per handshake, rather than GetCertificate
		// alone, so that the client CAs can change too.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.handshake(nextProtos)
		},
	}
}

func (s *Server) handshake(nextProtos []string) (*tls.Config, error) {
	cert, _, err := s.cert.get()
	if err != nil {
		return nil, err
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   nextProtos,
		Certificates: []tls.Certificate{*cert},
	}
	if s.clientCAs != nil {
		pool, _, err := s.clientCAs.get()
		if err != nil {
			return nil, err
		}
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return c, nil
}

// ServeHTTP serves srv on ln, over TLS with s's certificate, or in plain
// text when s is nil. net/http bounds the handshake by the least of the
// server's read timeouts, so a client that never sends its ClientHello
// holds its connection no longer than one that never sends its header.
//
// Only HTTP/1.1 is offered: the limits of internal/listener (a request's
// header and body timed on its connection, a cap on connections) are those
// of one request at a time per connection, and OTLP/HTTP and feedback
// clients gain nothing from HTTP/2.
//
// Unless srv has an ErrorLog, the handshakes that end before they begin
// (a TCP probe of a load balancer or kubelet, which connects and closes)
// are not logged, as net/http would log each: every other error is.
func ServeHTTP(srv *http.Server, ln net.Listener, s *Server) error {
	if s == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = s.Config("http/1.1")
	if srv.ErrorLog == nil {
		srv.ErrorLog = log.New(quietProbes{log.Writer()}, "", log.LstdFlags)
	}
	return srv.ServeTLS(ln, "", "")
}

// quietProbes drops net/http's "TLS handshake error from ...: EOF" lines:
// the client closed the connection without sending a byte.
type quietProbes struct{ w io.Writer }

func (q quietProbes) Write(p []byte) (int, error) {
	line := bytes.TrimRight(p, "\n")
	if bytes.Contains(line, []byte("http: TLS handshake error from ")) && bytes.HasSuffix(line, []byte(": EOF")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

// GRPCCredentials returns the transport credentials of a gRPC server: TLS
// with s's certificate, or plain text when s is nil. grpc-go sets a
// connection up, TLS handshake included, within its ConnectionTimeout.
func GRPCCredentials(s *Server) credentials.TransportCredentials {
	if s == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(s.Config())
}
