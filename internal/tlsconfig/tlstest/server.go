package tlstest

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
)

// NewMutualServer starts an https server of h on loopback, of a CA of its
// own, that requires a client certificate of another CA, as Phoenix behind
// an ingress with mutual TLS does. It returns the files of a client it
// accepts, whose certificate is named clientName; the server is closed when
// the test ends. The handshakes it refuses are not logged: tests send those
// on purpose.
func NewMutualServer(t testing.TB, h http.Handler, clientName string) (*httptest.Server, Files) {
	t.Helper()
	serverCA, clientCA := NewCA(t, "server CA"), NewCA(t, "clients CA")
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCA.Issue(t, "127.0.0.1").TLS(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, WriteFiles(t, clientCA.Issue(t, clientName), serverCA)
}
