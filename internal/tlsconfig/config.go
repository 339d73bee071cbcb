package tlsconfig

import (
	"errors"
	"log/slog"
	"time"
)

// DefaultInterval is the least time between two reads of the same files:
// a rotated certificate is in use at most this long after it is written
// (plus the wait for the next handshake or request).
const DefaultInterval = 5 * time.Second

// ServerConfig names the files of a TLS listener. The zero value means no
// TLS.
type ServerConfig struct {
	// CertFile holds the certificate in PEM, followed by the intermediates
	// clients need to chain it to their root. Required with KeyFile.
	CertFile string
	// KeyFile holds the certificate's private key in PEM (PKCS #1, PKCS #8
	// or SEC 1), unencrypted.
	KeyFile string
	// ClientCAFile, when set, holds the CA certificates (PEM) that every
	// client must present a certificate chaining to (mutual TLS); "" asks
	// clients for none, as does Server.WithoutClientCerts.
	ClientCAFile string
}

// Enabled reports whether c asks for TLS.
func (c ServerConfig) Enabled() bool { return c != ServerConfig{} }

// Validate reports a configuration that cannot work.
func (c ServerConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("tlsconfig: a listener needs both CertFile and KeyFile (a client CA alone serves nothing)")
	}
	return nil
}

// ClientConfig names the files a client uses to reach a TLS server. The
// zero value trusts the system's roots and presents no certificate.
type ClientConfig struct {
	// CAFile, when set, holds the CA certificates (PEM) the server's
	// certificate must chain to, instead of the system's roots: a private
	// CA trusted for one upstream does not make it trusted for anything
	// else, nor the public CAs for it (as curl's --cacert and the OTel
	// SDKs' OTEL_EXPORTER_OTLP_CERTIFICATE do). "" means the system's roots.
	CAFile string
	// CertFile and KeyFile, when set, hold the client certificate (PEM, with
	// its intermediates) and its unencrypted private key presented to a
	// server that asks for one. Both or neither.
	CertFile, KeyFile string
}

// Enabled reports whether c differs from the system's defaults.
func (c ClientConfig) Enabled() bool { return c != ClientConfig{} }

// Validate reports a configuration that cannot work.
func (c ClientConfig) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("tlsconfig: a client certificate needs both CertFile and KeyFile")
	}
	return nil
}

// Options say how files are watched and their reloads reported.
type Options struct {
	// Name says whose files these are in logs and metrics ("listeners",
	// "phoenix"). Required.
	Name string
	// Interval is the least time between two reads of the files; zero
	// means DefaultInterval.
	Interval time.Duration
	// Log receives one error for each new contents that could not be used
	// and one info for each reload; nil discards them.
	Log *slog.Logger
	// Metrics counts the reloads; nil counts them nowhere.
	Metrics *Metrics

	// now is the clock; tests replace it.
	now func() time.Time
}

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

func (o Options) validate() error {
	if o.Name == "" {
		return errors.New("tlsconfig: Options.Name is required")
	}
	if o.Interval < 0 {
		return errors.New("tlsconfig: Options.Interval must be positive")
	}
	return nil
}
