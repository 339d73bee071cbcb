package main

import (
	"errors"
	"net/url"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// setTLS checks the TLS flags and gives the Phoenix files to the clients
// whose URL is https://. The OTel SDK's OTEL_EXPORTER_OTLP_CERTIFICATE,
// _CLIENT_CERTIFICATE and _CLIENT_KEY are not read, as
// OTEL_EXPORTER_OTLP_ENDPOINT and _HEADERS are not: beside an app, they
// describe the app's exporter, which points at this proxy.
func setTLS(c *proxy.Config, phoenix tlsconfig.ClientConfig) error {
	switch {
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return errors.New("-tls-cert-file and -tls-key-file: give both, or neither for plain text")
	case c.TLS.ClientCAFile != "" && c.TLS.CertFile == "":
		return errors.New("-tls-client-ca-file: needs -tls-cert-file and -tls-key-file; without them the listeners serve plain text and ask no certificate")
	case (phoenix.CertFile == "") != (phoenix.KeyFile == ""):
		return errors.New("-phoenix-client-cert-file and -phoenix-client-key-file: give both, or neither")
	}
	if !phoenix.Enabled() {
		return nil
	}
	otlpHTTPS, restHTTPS := isHTTPS(c.Exporter.Endpoint), isHTTPS(c.Phoenix.BaseURL)
	if !otlpHTTPS && !restHTTPS {
		return errors.New("-phoenix-ca-file, -phoenix-client-cert-file: Phoenix is reached over http:// (" + c.Exporter.Endpoint + ", " + c.Phoenix.BaseURL +
			"); give https:// URLs (-phoenix-otlp-endpoint, -phoenix-url or PHOENIX_COLLECTOR_ENDPOINT) or drop these flags")
	}
	if otlpHTTPS {
		c.Exporter.TLS = phoenix
	}
	if restHTTPS {
		c.Phoenix.TLS = phoenix
	}
	return nil
}

func isHTTPS(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https"
}
