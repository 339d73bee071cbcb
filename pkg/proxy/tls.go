package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
)

// tlsFiles are the certificate files the proxy reads: its listeners' and
// those it reaches Phoenix with. Each is read again when it changes, at the
// next handshake or request; Start reads them all before it binds anything,
// so that a wrong path or a broken file fails the start, not the first
// client or the first export.
type tlsFiles struct {
	server  *tlsconfig.Server // nil: the listeners serve plain text
	clients map[tlsconfig.ClientConfig]*tlsconfig.Client
	opts    tlsconfig.Options // for the clients
}

func newTLSFiles(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*tlsFiles, error) {
	log = log.With("component", "tls")
	metrics := tlsconfig.NewMetrics(reg)
	t := &tlsFiles{
		clients: map[tlsconfig.ClientConfig]*tlsconfig.Client{},
		opts:    tlsconfig.Options{Name: "phoenix", Log: log, Metrics: metrics},
	}
	if cfg.TLS.Enabled() {
		s, err := tlsconfig.NewServer(cfg.TLS, tlsconfig.Options{Name: "listeners", Log: log, Metrics: metrics})
		if err != nil {
			return nil, err
		}
		t.server = s
	}
	return t, nil
}

// httpClient returns a client with a transport of its own (newHTTPClient)
// that reaches Phoenix with files. The exporter and the REST client share
// the files, when they are the same, so that a reload is read and counted
// once.
func (t *tlsFiles) httpClient(timeout time.Duration, files tlsconfig.ClientConfig) (*http.Client, error) {
	c := newHTTPClient(timeout)
	if !files.Enabled() {
		return c, nil
	}
	src, ok := t.clients[files]
	if !ok {
		var err error
		if src, err = tlsconfig.NewClient(files, t.opts); err != nil {
			return nil, err
		}
		t.clients[files] = src
	}
	c.Transport = src.Transport(c.Transport.(*http.Transport))
	return c, nil
}

// load reads every file now.
func (t *tlsFiles) load() error {
	var errs []error
	if t.server != nil {
		errs = append(errs, t.server.Load())
	}
	for _, c := range t.clients {
		errs = append(errs, c.Load())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("TLS files: %w", err)
	}
	return nil
}
