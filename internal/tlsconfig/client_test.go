package tlsconfig

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
)

// phoenixLike is an HTTPS server that requires and verifies a client
// certificate of clientCA, as a Phoenix behind mutual TLS does, and
// answers with the common name of the client certificate it was shown.
// Its own certificate is what cert holds when a handshake starts.
type phoenixLike struct {
	*httptest.Server
	cert atomic.Pointer[tls.Certificate]
}

func newPhoenixLike(t *testing.T, cert *tlstest.KeyPair, clientCA *tlstest.CA) *phoenixLike {
	t.Helper()
	p := &phoenixLike{}
	c := cert.TLS(t)
	p.cert.Store(&c)
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	// httptest puts a certificate of its own in Certificates when there is
	// none, and with no server name sent (an IP address) crypto/tls would
	// not ask GetCertificate: a configuration per handshake is followed.
	p.TLS = &tls.Config{
		Certificates: []tls.Certificate{c},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				Certificates: []tls.Certificate{*p.cert.Load()},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    clientCA.Pool(),
			}, nil
		},
	}
	p.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

// get sends GET / through rt and returns the body.
func get(t *testing.T, rt http.RoundTripper, url string) (string, error) {
	t.Helper()
	c := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func baseTransport() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}

// TestClientMTLS reaches a Phoenix-like server that requires a client
// certificate, with a CA of its own.
func TestClientMTLS(t *testing.T) {
	phoenixCA, clientCA := tlstest.NewCA(t, "Phoenix CA"), tlstest.NewCA(t, "client CA")
	phx := newPhoenixLike(t, phoenixCA.Issue(t, "127.0.0.1"), clientCA)
	f := files{t.TempDir()}
	tlstest.WriteFile(t, f.path("phoenix-ca.pem"), phoenixCA.PEM)
	clientCA.Issue(t, "proxy").Write(t, f.path("client.crt"), f.path("client.key"))

	tests := []struct {
		name    string
		cfg     ClientConfig
		want    string // the body, or
		wantErr string // part of the error
	}{
		{"CA and client certificate", ClientConfig{CAFile: f.path("phoenix-ca.pem"), CertFile: f.path("client.crt"), KeyFile: f.path("client.key")}, "proxy", ""},
		{"no client certificate", ClientConfig{CAFile: f.path("phoenix-ca.pem")}, "", "certificate required"},
		{"the system's roots", ClientConfig{CertFile: f.path("client.crt"), KeyFile: f.path("client.key")}, "", "certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.cfg, Options{Name: "phoenix"})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Load(); err != nil {
				t.Fatal(err)
			}
			rt := c.Transport(baseTransport())
			defer rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
			got, err := get(t, rt, phx.URL)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("GET: %v", err)
			case tc.wantErr == "" && got != tc.want:
				t.Fatalf("GET = %q, want %q", got, tc.want)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("GET = %q, %v; want an error with %q", got, err, tc.wantErr)
			}
		})
	}
}

// TestClientReload: a new CA file and a new client certificate are used
// from the first request after the next read, and a broken CA file keeps
// the previous one.
func TestClientReload(t *testing.T) {
	ca1, ca2, clientCA := tlstest.NewCA(t, "Phoenix CA 1"), tlstest.NewCA(t, "Phoenix CA 2"), tlstest.NewCA(t, "client CA")
	phx := newPhoenixLike(t, ca1.Issue(t, "127.0.0.1"), clientCA)
	f := files{t.TempDir()}
	tlstest.WriteFile(t, f.path("ca.pem"), ca1.PEM)
	clientCA.Issue(t, "proxy-a").Write(t, f.path("client.crt"), f.path("client.key"))

	o, clk, logs := testOptions("phoenix")
	c, err := NewClient(ClientConfig{CAFile: f.path("ca.pem"), CertFile: f.path("client.crt"), KeyFile: f.path("client.key")}, o)
	if err != nil {
		t.Fatal(err)
	}
	rt := c.Transport(baseTransport())
	defer rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	expect := func(when, want, wantErr string) {
		t.Helper()
		got, err := get(t, rt, phx.URL)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%s: GET = %q, %v; want an error with %q", when, got, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("%s: GET = %q, %v; want %q", when, got, err, want)
		}
	}
	expect("at start", "proxy-a", "")

	// Phoenix moves to a certificate of CA 2: new connections fail until
	// the CA file says so.
	c2 := ca2.Issue(t, "127.0.0.1").TLS(t)
	phx.cert.Store(&c2)
	phx.CloseClientConnections()
	expect("Phoenix on CA 2, CA file of CA 1", "", "certificate signed by unknown authority")
	tlstest.WriteFile(t, f.path("ca.pem"), ca2.PEM)
	expect("within the interval", "", "certificate signed by unknown authority")
	clk.advance(DefaultInterval)
	expect("CA file of CA 2", "proxy-a", "")

	// A new client certificate: the next connection presents it.
	clientCA.Issue(t, "proxy-b").Write(t, f.path("client.crt"), f.path("client.key"))
	clk.advance(DefaultInterval)
	expect("new client certificate", "proxy-b", "")

	// A broken CA file: the previous CAs stay, on new connections too.
	tlstest.WriteFile(t, f.path("ca.pem"), []byte("-----BEGIN CERTIFICATE-----\n"))
	clk.advance(DefaultInterval)
	phx.CloseClientConnections()
	expect("broken CA file", "proxy-b", "")
	if got := testutil.ToFloat64(o.Metrics.reloads.WithLabelValues("phoenix", kindCA, "failed")); got != 1 {
		t.Errorf("failed CA reloads = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "cannot be used") {
		t.Errorf("log lacks the failed reload: %s", logs)
	}
}

// TestClientUnreadable: while the files never loaded, requests fail with
// the reason, and their bodies are closed as a RoundTripper must.
func TestClientUnreadable(t *testing.T) {
	f := files{t.TempDir()}
	c, err := NewClient(ClientConfig{CAFile: f.path("missing.pem")}, Options{Name: "phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(); err == nil || !strings.Contains(err.Error(), "phoenix ca") || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("Load = %v, want it to name the source and the file", err)
	}
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, "https://127.0.0.1:1/", body)
	if _, err := c.Transport(baseTransport()).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("RoundTrip = %v, want the file's error", err)
	}
	if !body.closed() {
		t.Error("RoundTrip left the body open")
	}

	if _, err := NewClient(ClientConfig{CertFile: "c"}, Options{Name: "phoenix"}); err == nil {
		t.Error("NewClient took a certificate without its key")
	}
}

type closeRecorder struct {
	io.Reader
	mu sync.Mutex
	n  int
}

func (c *closeRecorder) Close() error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil
}

func (c *closeRecorder) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n > 0
}
