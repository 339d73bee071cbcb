// Package tlsconfig builds the TLS configurations of the proxy from
// certificate files that may change while it runs: the certificate its
// listeners present (and the CA their clients' certificates must chain to),
// and the CA and client certificate it uses towards Phoenix.
//
// The files are read again at a handshake (for a listener) or a request
// (for a client) when the last read is at least Options.Interval old, and
// the new contents are used from the next handshake on when they parse;
// when they do not, the last good ones stay in use and the failure is
// logged and counted once. Reading and comparing the contents, rather than
// comparing modification times, also catches a file replaced within the
// granularity of the file system's clock with one of the same size, which
// two certificates of the same key type usually are.
//
// No goroutine watches the files: a listener that takes no connection has
// no certificate to refresh, and a client that sends no request none to
// present.
package tlsconfig
