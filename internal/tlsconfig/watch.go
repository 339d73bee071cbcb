package tlsconfig

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// maxFileBytes bounds what is read of one file: a certificate chain or a
// CA bundle is a few to a few hundred KiB; a path that names something
// else (a log, a device) is refused rather than read whole every few
// seconds.
const maxFileBytes = 1 << 20

// Kinds of watched files, as logs and metrics name them.
const (
	kindCertificate = "certificate"
	kindCA          = "ca"
)

// watched is a value parsed from a set of files, read again when the last
// read is at least an interval old, and replaced when their contents
// changed and parse. It is safe for concurrent use.
type watched[T any] struct {
	kind  string
	paths []string
	parse func(contents [][]byte, now time.Time) (T, error)
	opts  Options
	// loaded, when not nil, is told of every value put in use.
	loaded func(T)

	mu       sync.Mutex
	checked  time.Time // of the last read
	contents [][]byte  // the value was parsed from; nil before the first load
	value    T
	gen      uint64 // loads so far; 0 before the first
	failed   string // fingerprint of the last contents refused, "" if none since the last load
	lastErr  error  // why they were refused
}

func newWatched[T any](kind string, parse func([][]byte, time.Time) (T, error), o Options, paths ...string) *watched[T] {
	return &watched[T]{kind: kind, paths: paths, parse: parse, opts: o}
}

// get returns the value in use and its generation, which changes with
// every load. The files are read first when the last read is at least
// Interval old; an error is returned only while no contents ever loaded.
func (w *watched[T]) get() (T, uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.opts.now()
	if w.gen > 0 && now.Sub(w.checked) < w.opts.Interval {
		return w.value, w.gen, nil
	}
	err := w.reload(now)
	if w.gen == 0 {
		var zero T
		return zero, 0, err
	}
	return w.value, w.gen, nil
}

// load reads the files now, whatever the interval, and reports why they
// cannot be used.
func (w *watched[T]) load() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reload(w.opts.now())
}

// reload reads the files and, when their contents changed, parses them and
// puts them in use. A failure is logged and counted once for the same
// contents (or the same read error), not at every read while the files
// stay broken. The caller holds w.mu.
func (w *watched[T]) reload(now time.Time) error {
	w.checked = now
	contents, err := readAll(w.paths)
	if err == nil && w.gen > 0 && equal(contents, w.contents) {
		w.failed, w.lastErr = "", nil
		return nil
	}
	fingerprint := ""
	if err != nil {
		fingerprint = "read: " + err.Error()
	} else {
		fingerprint = digest(contents)
	}
	if fingerprint == w.failed {
		return w.lastErr
	}
	var v T
	if err == nil {
		v, err = w.parse(contents, now)
	}
	if err != nil {
		err = fmt.Errorf("%s %s %s: %w", w.opts.Name, w.kind, strings.Join(w.paths, ", "), err)
		w.failed, w.lastErr = fingerprint, err
		w.opts.Metrics.reloads.WithLabelValues(w.opts.Name, w.kind, "failed").Inc()
		if w.gen > 0 {
			w.opts.Log.Error("TLS files changed but cannot be used; the previous ones stay in use until they are fixed",
				"source", w.opts.Name, "kind", w.kind, "err", err)
		}
		return err
	}
	w.value, w.contents, w.failed, w.lastErr = v, contents, "", nil
	w.gen++
	w.opts.Metrics.reloads.WithLabelValues(w.opts.Name, w.kind, "loaded").Inc()
	if w.loaded != nil {
		w.loaded(v)
	}
	if w.gen > 1 {
		w.opts.Log.Info("TLS files reloaded", "source", w.opts.Name, "kind", w.kind, "files", strings.Join(w.paths, ", "))
	}
	return nil
}

func readAll(paths []string) ([][]byte, error) {
	out := make([][]byte, len(paths))
	for i, p := range paths {
		b, err := readFile(p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d KiB; expected a PEM file", path, maxFileBytes>>10)
	}
	return b, nil
}

func equal(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func digest(contents [][]byte) string {
	h := sha256.New()
	for _, c := range contents {
		fmt.Fprintf(h, "%d:", len(c))
		h.Write(c)
	}
	return string(h.Sum(nil))
}

// parseKeyPair reads a certificate chain and its key: the certificate must
// match the key and must not have expired.
func parseKeyPair(contents [][]byte, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(contents[0], contents[1])
	if err != nil {
		return nil, err
	}
	// X509KeyPair fills Leaf since Go 1.23.
	if now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired at %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// parseCAs reads a bundle of CA certificates in PEM. Unlike
// x509.CertPool.AppendCertsFromPEM, which skips what it cannot parse, a
// bundle with a broken certificate or none at all is refused: trusting
// fewer CAs than the operator wrote would fail later and less clearly.
func parseCAs(contents [][]byte, _ time.Time) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest, n := contents[0], 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate found; expected one or more \"-----BEGIN CERTIFICATE-----\" blocks")
	}
	return pool, nil
}
