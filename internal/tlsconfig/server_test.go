package tlsconfig

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig/tlstest"
)

// TestServerReload serves with certificate A, replaces the files with B:
// the handshakes after the next read see B; a broken replacement keeps the
// one in use, and is reported once.
func TestServerReload(t *testing.T) {
	ca := tlstest.NewCA(t, "listeners CA")
	a, b := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	f := files{t.TempDir()}
	cert, key := f.path("tls.crt"), f.path("tls.key")
	a.Write(t, cert, key)

	o, clk, logs := testOptions("listeners")
	s, err := NewServer(ServerConfig{CertFile: cert, KeyFile: key}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s.Config())
	client := clientTLS(ca, nil, t)
	sees := func(want *tlstest.KeyPair, when string) {
		t.Helper()
		got, err := dial(t, addr, client)
		if err != nil {
			t.Fatalf("%s: handshake: %v", when, err)
		}
		if got.Cmp(serialOf(want)) != 0 {
			t.Fatalf("%s: server presented serial %v, want %v", when, got, serialOf(want))
		}
	}
	reloads := func(outcome string) float64 {
		return testutil.ToFloat64(o.Metrics.reloads.WithLabelValues("listeners", kindCertificate, outcome))
	}

	sees(a, "at start")
	b.Write(t, cert, key)
	sees(a, "within the interval of the last read")
	clk.advance(DefaultInterval)
	sees(b, "after the interval")
	if reloads("loaded") != 2 || reloads("failed") != 0 {
		t.Errorf("reloads: loaded %v, failed %v; want 2, 0", reloads("loaded"), reloads("failed"))
	}
	if !strings.Contains(logs.String(), "TLS files reloaded") {
		t.Errorf("log lacks the reload: %s", logs)
	}

	tests := []struct {
		name    string
		write   func()
		wantLog string
	}{
		{"a key that is not the certificate's", func() { tlstest.WriteFile(t, key, a.KeyPEM) }, "private key does not match public key"},
		{"a certificate file cut short", func() { tlstest.WriteFile(t, cert, b.CertPEM[:len(b.CertPEM)/2]) }, "failed to find any PEM data"},
		{"an expired certificate", func() { ca.IssueUntil(t, time.Now().Add(-time.Minute), "127.0.0.1").Write(t, cert, key) }, "the certificate expired at"},
		{"a missing key", func() { os.Remove(key) }, "no such file"},
	}
	for i, tc := range tests {
		b.Write(t, cert, key)
		clk.advance(DefaultInterval)
		sees(b, tc.name+": before")
		tc.write()
		clk.advance(DefaultInterval)
		sees(b, tc.name+": the previous certificate stays in use")
		clk.advance(DefaultInterval)
		sees(b, tc.name+": still, read again")
		if got := reloads("failed"); got != float64(i+1) {
			t.Errorf("%s: failed reloads = %v, want %d: counted once however often the broken files are read", tc.name, got, i+1)
		}
		if n := strings.Count(logs.String(), tc.wantLog); n != 1 {
			t.Errorf("%s: %d errors logged with %q, want 1:\n%s", tc.name, n, tc.wantLog, logs)
		}
	}

	// Fixed: the next read puts the new certificate in use.
	c := ca.Issue(t, "127.0.0.1")
	c.Write(t, cert, key)
	clk.advance(DefaultInterval)
	sees(c, "fixed")
	if got := testutil.ToFloat64(o.Metrics.expiry.WithLabelValues("listeners")); got != float64(c.Cert.NotAfter.Unix()) {
		t.Errorf("expiry gauge = %v, want %d", got, c.Cert.NotAfter.Unix())
	}
}

func TestServerLoadErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "CA")
	kp := ca.Issue(t, "127.0.0.1")
	f := files{t.TempDir()}
	kp.Write(t, f.path("ok.crt"), f.path("ok.key"))
	tlstest.WriteFile(t, f.path("ca.pem"), ca.PEM)
	tlstest.WriteFile(t, f.path("empty.pem"), []byte("not a certificate\n"))
	tlstest.WriteFile(t, f.path("big.pem"), make([]byte, maxFileBytes+1))
	tlstest.WriteFile(t, f.path("broken-ca.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))

	tests := []struct {
		name    string
		cfg     ServerConfig
		wantErr string // "" : loads
	}{
		{"good", ServerConfig{CertFile: f.path("ok.crt"), KeyFile: f.path("ok.key")}, ""},
		{"good with a client CA", ServerConfig{CertFile: f.path("ok.crt"), KeyFile: f.path("ok.key"), ClientCAFile: f.path("ca.pem")}, ""},
		{"missing certificate", ServerConfig{CertFile: f.path("nope.crt"), KeyFile: f.path("ok.key")}, "nope.crt: no such file"},
		{"key and certificate swapped", ServerConfig{CertFile: f.path("ok.key"), KeyFile: f.path("ok.crt")}, "listeners certificate"},
		{"a CA file without certificates", ServerConfig{CertFile: f.path("ok.crt"), KeyFile: f.path("ok.key"), ClientCAFile: f.path("empty.pem")}, "no PEM certificate found"},
		{"a CA file with a broken certificate", ServerConfig{CertFile: f.path("ok.crt"), KeyFile: f.path("ok.key"), ClientCAFile: f.path("broken-ca.pem")}, "certificate 1:"},
		{"a huge file", ServerConfig{CertFile: f.path("big.pem"), KeyFile: f.path("ok.key")}, "larger than 1024 KiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewServer(tc.cfg, Options{Name: "listeners"})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Load()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}

	for _, tc := range []struct {
		name string
		cfg  ServerConfig
	}{
		{"nothing", ServerConfig{}},
		{"a certificate without a key", ServerConfig{CertFile: "a"}},
		{"a client CA alone", ServerConfig{ClientCAFile: "ca"}},
	} {
		if _, err := NewServer(tc.cfg, Options{Name: "listeners"}); err == nil {
			t.Errorf("NewServer(%s) succeeded", tc.name)
		}
	}
}

// TestServerClientCA: with a client CA, only clients presenting a
// certificate it signed get through, and a new CA file applies to the next
// handshakes.
func TestServerClientCA(t *testing.T) {
	serverCA, ca1, ca2 := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA 1"), tlstest.NewCA(t, "client CA 2")
	f := files{t.TempDir()}
	serverCA.Issue(t, "127.0.0.1").Write(t, f.path("tls.crt"), f.path("tls.key"))
	tlstest.WriteFile(t, f.path("clients.pem"), ca1.PEM)
	o, clk, _ := testOptions("listeners")
	s, err := NewServer(ServerConfig{CertFile: f.path("tls.crt"), KeyFile: f.path("tls.key"), ClientCAFile: f.path("clients.pem")}, o)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s.Config())
	of1, of2 := ca1.Issue(t, "app-1"), ca2.Issue(t, "app-2")

	check := func(when string, cert *tlstest.KeyPair, ok bool) {
		t.Helper()
		_, err := dial(t, addr, clientTLS(serverCA, cert, t))
		if ok && err != nil {
			t.Errorf("%s: refused: %v", when, err)
		}
		if !ok && err == nil {
			t.Errorf("%s: let through", when)
		}
	}
	check("CA 1: a certificate of CA 1", of1, true)
	check("CA 1: no certificate", nil, false)
	check("CA 1: a certificate of CA 2", of2, false)

	tlstest.WriteFile(t, f.path("clients.pem"), ca2.PEM)
	clk.advance(DefaultInterval)
	check("CA 2: a certificate of CA 2", of2, true)
	check("CA 2: a certificate of CA 1", of1, false)

	// A broken CA file keeps CA 2.
	tlstest.WriteFile(t, f.path("clients.pem"), []byte("garbage"))
	clk.advance(DefaultInterval)
	check("broken CA file: a certificate of CA 2", of2, true)
	if got := testutil.ToFloat64(o.Metrics.reloads.WithLabelValues("listeners", kindCA, "failed")); got != 1 {
		t.Errorf("failed CA reloads = %v, want 1", got)
	}
}

// TestServerWithoutClientCerts: a listener of the same files that asks
// for no client certificate lets a client without one through, while the
// mutual-TLS one still refuses it; the certificate is read once for both,
// and a new one is served by both.
func TestServerWithoutClientCerts(t *testing.T) {
	serverCA, appsCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "apps CA")
	f := files{t.TempDir()}
	first := serverCA.Issue(t, "127.0.0.1")
	first.Write(t, f.path("tls.crt"), f.path("tls.key"))
	tlstest.WriteFile(t, f.path("apps.pem"), appsCA.PEM)
	o, clk, _ := testOptions("listeners")
	s, err := NewServer(ServerConfig{CertFile: f.path("tls.crt"), KeyFile: f.path("tls.key"), ClientCAFile: f.path("apps.pem")}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	open := s.WithoutClientCerts()
	mutualAddr, openAddr := serve(t, s.Config()), serve(t, open.Config())

	if _, err := dial(t, mutualAddr, clientTLS(serverCA, nil, t)); err == nil {
		t.Error("mutual TLS: a client without a certificate let through")
	}
	if _, err := dial(t, mutualAddr, clientTLS(serverCA, appsCA.Issue(t, "app"), t)); err != nil {
		t.Errorf("mutual TLS: an app's certificate refused: %v", err)
	}
	serial, err := dial(t, openAddr, clientTLS(serverCA, nil, t))
	if err != nil {
		t.Fatalf("without client certificates: a client without one refused: %v", err)
	}
	if serial.Cmp(serialOf(first)) != 0 {
		t.Errorf("without client certificates: served serial %v, want %v", serial, serialOf(first))
	}
	if got := testutil.ToFloat64(o.Metrics.reloads.WithLabelValues("listeners", kindCertificate, "loaded")); got != 1 {
		t.Errorf("certificate loads = %v, want 1: both listeners read the same files", got)
	}

	second := serverCA.Issue(t, "127.0.0.1")
	second.Write(t, f.path("tls.crt"), f.path("tls.key"))
	clk.advance(DefaultInterval)
	for name, addr := range map[string]string{"mutual TLS": mutualAddr, "without client certificates": openAddr} {
		serial, err := dial(t, addr, clientTLS(serverCA, appsCA.Issue(t, "app"), t))
		if err != nil || serial.Cmp(serialOf(second)) != 0 {
			t.Errorf("%s after the certificate changed: serial %v, %v; want %v", name, serial, err, serialOf(second))
		}
	}
	if got := testutil.ToFloat64(o.Metrics.reloads.WithLabelValues("listeners", kindCertificate, "loaded")); got != 2 {
		t.Errorf("certificate loads = %v, want 2", got)
	}
	if (*Server)(nil).WithoutClientCerts() != nil {
		t.Error("nil.WithoutClientCerts() is not nil")
	}
}

// TestServerMinVersion: TLS 1.0 and 1.1 are refused.
func TestServerMinVersion(t *testing.T) {
	ca := tlstest.NewCA(t, "CA")
	f := files{t.TempDir()}
	ca.Issue(t, "127.0.0.1").Write(t, f.path("tls.crt"), f.path("tls.key"))
	s, err := NewServer(ServerConfig{CertFile: f.path("tls.crt"), KeyFile: f.path("tls.key")}, Options{Name: "listeners"})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s.Config())
	old := clientTLS(ca, nil, t)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := dial(t, addr, old); err == nil {
		t.Error("a TLS 1.1 client got through")
	}
	tls12 := clientTLS(ca, nil, t)
	tls12.MaxVersion = tls.VersionTLS12
	if _, err := dial(t, addr, tls12); err != nil {
		t.Errorf("a TLS 1.2 client was refused: %v", err)
	}
}

// TestServeHTTPSilentClient: a client that opens a connection and never
// sends its ClientHello is closed at the server's read header timeout,
// and a plain HTTP request gets the 400 net/http answers it.
func TestServeHTTPSilentClient(t *testing.T) {
	ca := tlstest.NewCA(t, "CA")
	f := files{t.TempDir()}
	ca.Issue(t, "127.0.0.1").Write(t, f.path("tls.crt"), f.path("tls.key"))
	s, err := NewServer(ServerConfig{CertFile: f.path("tls.crt"), KeyFile: f.path("tls.key")}, Options{Name: "listeners"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }),
		ReadHeaderTimeout: 200 * time.Millisecond,
		ReadTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(srv, ln, s) }()
	defer func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeHTTP = %v", err)
		}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("silent client: read %d, %v; want the server to close the connection", n, err)
	}

	// HTTP/1.1 only, over TLS 1.2 at least.
	tr := &http.Transport{TLSClientConfig: clientTLS(ca, nil, t), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/1.1" || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("served %q over %+v", body, resp.TLS)
	}
}

func TestQuietProbes(t *testing.T) {
	var out strings.Builder
	l := log.New(quietProbes{&out}, "", 0)
	l.Printf("http: TLS handshake error from 10.0.0.7:51234: EOF")
	l.Printf("http: TLS handshake error from 10.0.0.7:51235: remote error: tls: unknown certificate authority")
	l.Printf("http: Accept error: too many open files")
	want := "http: TLS handshake error from 10.0.0.7:51235: remote error: tls: unknown certificate authority\nhttp: Accept error: too many open files\n"
	if out.String() != want {
		t.Errorf("logged:\n%s\nwant:\n%s", out.String(), want)
	}
}
