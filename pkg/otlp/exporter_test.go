package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
)

// received is one request as the upstream saw it, body decompressed.
type received struct {
	method, path string
	header       http.Header
	body         []byte
}

// newUpstream starts an OTLP/HTTP upstream that records each request and
// answers it with answer (200 and no body when nil).
func newUpstream(t testing.TB, answer http.HandlerFunc) (*httptest.Server, func() []received) {
	t.Helper()
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("upstream: body is not gzip: %v", err)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			rd = zr
		}
		body, err := io.ReadAll(rd)
		if err != nil {
			t.Errorf("upstream: reading the body: %v", err)
		}
		mu.Lock()
		got = append(got, received{r.Method, r.URL.Path, r.Header.Clone(), body})
		mu.Unlock()
		if answer != nil {
			answer(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

func newExporter(t testing.TB, cfg ExporterConfig, m *Metrics) *Exporter {
	t.Helper()
	x, err := NewExporter(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestExporterSends(t *testing.T) {
	req := sampleRequest(3)
	pb := marshalProto(t, req)
	// A field this proxy does not know (number 99, varint 1): forwarding the
	// body as received must keep it.
	withUnknown := append(bytes.Clone(pb), 0x98, 0x06, 0x01)

	for _, tc := range []struct {
		name   string
		cfg    ExporterConfig
		export *Export
		check  func(t *testing.T, r received)
	}{
		{
			name:   "protobuf body, gzip, headers and project",
			cfg:    ExporterConfig{Headers: map[string]string{"Authorization": "Bearer k", "X-Extra": "1"}},
			export: &Export{Body: pb, Spans: 3, Project: "support"},
			check: func(t *testing.T, r received) {
				for _, h := range []struct{ key, want string }{
					{"Content-Type", "application/x-protobuf"},
					{"Content-Encoding", "gzip"},
					{"Authorization", "Bearer k"},
					{"X-Extra", "1"},
					{ProjectHeader, "support"},
				} {
					if got := r.header.Get(h.key); got != h.want {
						t.Errorf("header %s = %q; want %q", h.key, got, h.want)
					}
				}
				if !bytes.Equal(r.body, pb) {
					t.Errorf("upstream got %d bytes; want the %d bytes received", len(r.body), len(pb))
				}
			},
		},
		{
			name:   "unknown fields are kept",
			export: &Export{Body: withUnknown, Spans: 3},
			check: func(t *testing.T, r received) {
				if !bytes.Equal(r.body, withUnknown) {
					t.Error("the body was not forwarded as received")
				}
			},
		},
		{
			name:   "compression none",
			cfg:    ExporterConfig{Compression: NoCompression},
			export: &Export{Body: pb, Spans: 3},
			check: func(t *testing.T, r received) {
				if ce := r.header.Get("Content-Encoding"); ce != "" {
					t.Errorf("Content-Encoding %q; want none", ce)
				}
				if !bytes.Equal(r.body, pb) {
					t.Error("body differs")
				}
			},
		},
		{
			name:   "no project, no header",
			export: &Export{Body: pb, Spans: 3},
			check: func(t *testing.T, r received) {
				if _, ok := r.header[http.CanonicalHeaderKey(ProjectHeader)]; ok {
					t.Errorf("%s sent without a project", ProjectHeader)
				}
			},
		},
		{
			name:   "the export's project wins over a configured one",
			cfg:    ExporterConfig{Headers: map[string]string{ProjectHeader: "default"}},
			export: &Export{Body: pb, Spans: 3, Project: "support"},
			check: func(t *testing.T, r received) {
				if got := r.header.Values(ProjectHeader); len(got) != 1 || got[0] != "support" {
					t.Errorf("%s = %q; want [support]", ProjectHeader, got)
				}
			},
		},
		{
			name:   "configured headers do not replace the content headers",
			cfg:    ExporterConfig{Headers: map[string]string{"Content-Type": "text/plain", "Content-Encoding": "br"}},
			export: &Export{Body: pb, Spans: 3},
			check: func(t *testing.T, r received) {
				if ct, ce := r.header.Get("Content-Type"), r.header.Get("Content-Encoding"); ct != contentTypeProto || ce != "gzip" {
					t.Errorf("Content-Type %q, Content-Encoding %q; want %s, gzip", ct, ce, contentTypeProto)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := newUpstream(t, nil)
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			tc.cfg.Endpoint = srv.URL + TracesPath
			if err := newExporter(t, tc.cfg, m).Export(t.Context(), tc.export); err != nil {
				t.Fatalf("Export: %v", err)
			}
			reqs := got()
			if len(reqs) != 1 {
				t.Fatalf("upstream got %d requests; want 1", len(reqs))
			}
			if reqs[0].method != http.MethodPost || reqs[0].path != TracesPath {
				t.Errorf("%s %s; want POST %s", reqs[0].method, reqs[0].path, TracesPath)
			}
			tc.check(t, reqs[0])
			if got := testutil.ToFloat64(m.exportedSpans.WithLabelValues("sent")); got != 3 {
				t.Errorf("exported spans {sent} = %v; want 3", got)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("metrics lint: %v %v", problems, err)
			}
		})
	}
}

// TestExporterConcurrent sends from many goroutines at once, so that the
// race detector sees the shared gzip writers.
func TestExporterConcurrent(t *testing.T) {
	srv, got := newUpstream(t, nil)
	x := newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath}, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				req := sampleRequest(1 + i + j)
				if err := x.Export(context.Background(), exportOf(t, req)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, r := range got() {
		if err := ptraceotlp.NewExportRequest().UnmarshalProto(r.body); err != nil {
			t.Errorf("upstream got a body that is not a protobuf export: %v", err)
		}
	}
}

func TestExporterUpstreamAnswers(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	statusBody := func(msg string) []byte {
		b, err := proto.Marshal(&spb.Status{Code: int32(codes.InvalidArgument), Message: msg})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name        string
		status      int
		retryAfter  string
		contentType string
		body        []byte
		code        codes.Code
		delay       time.Duration
		msg         string // what the error message must contain
		check       func(t *testing.T, e *Error)
	}{
		{name: "400", status: 400, body: []byte("bad request"), code: codes.InvalidArgument, msg: "upstream answered 400: bad request"},
		{name: "401", status: 401, code: codes.Unauthenticated, msg: "401"},
		{name: "403", status: 403, code: codes.PermissionDenied, msg: "403"},
		{name: "404", status: 404, code: codes.Internal, msg: "404"},
		{name: "413", status: 413, code: codes.InvalidArgument, msg: "413"},
		{name: "422", status: 422, code: codes.InvalidArgument, msg: "422"},
		{name: "500", status: 500, code: codes.Internal, msg: "500"},
		{name: "500 ignores Retry-After", status: 500, retryAfter: "5", code: codes.Internal},
		{name: "429 Retry-After seconds", status: 429, retryAfter: "7", code: codes.ResourceExhausted, delay: 7 * time.Second},
		{name: "502", status: 502, retryAfter: "2", code: codes.Unavailable, delay: 2 * time.Second},
		{name: "503", status: 503, retryAfter: "2", code: codes.Unavailable, delay: 2 * time.Second},
		{name: "504", status: 504, retryAfter: "2", code: codes.Unavailable, delay: 2 * time.Second},
		{name: "503 without Retry-After", status: 503, code: codes.Unavailable},
		{name: "503 Retry-After HTTP date", status: 503, retryAfter: now.Add(30 * time.Second).Format(http.TimeFormat),
			code: codes.Unavailable, delay: 30 * time.Second},
		{name: "503 Retry-After date in the past", status: 503, retryAfter: now.Add(-time.Minute).Format(http.TimeFormat), code: codes.Unavailable},
		{name: "429 Retry-After garbage", status: 429, retryAfter: "soon", code: codes.ResourceExhausted},
		{name: "protobuf google.rpc.Status body", status: 400, contentType: contentTypeProto, body: statusBody("span 3 has no trace id"),
			code: codes.InvalidArgument, msg: "upstream answered 400: span 3 has no trace id"},
		{name: "empty body", status: 400, code: codes.InvalidArgument, msg: "(empty body)"},
		{name: "huge body is capped", status: 500, body: bytes.Repeat([]byte("x"), 10<<20), code: codes.Internal,
			check: func(t *testing.T, e *Error) {
				if len(e.Msg) > 600 || !strings.HasSuffix(e.Msg, "...") {
					t.Errorf("message of %d bytes (%.40q...); want it cut short", len(e.Msg), e.Msg)
				}
			}},
		{name: "binary body gives a UTF-8 message", status: 400, body: append([]byte{0xff, 'a'}, bytes.Repeat([]byte("é"), 300)...), code: codes.InvalidArgument,
			check: func(t *testing.T, e *Error) {
				if !utf8.ValidString(e.Msg) {
					t.Errorf("message is not UTF-8: %q", e.Msg)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write(tc.body)
			})
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			x := newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath}, m)
			x.now = func() time.Time { return now }
			err := x.Export(t.Context(), exportOf(t, sampleRequest(2)))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Export error %v (%T); want an *Error", err, err)
			}
			if e.Code != tc.code || e.RetryAfter != tc.delay {
				t.Errorf("Export error %v, retry after %v; want %v, %v", e.Code, e.RetryAfter, tc.code, tc.delay)
			}
			if want := tc.status == 429 || tc.status/100 == 5 && tc.status != 500; Retryable(e.Code) != want {
				t.Errorf("retryable %v; want %v", Retryable(e.Code), want)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q; want it to contain %q", e.Msg, tc.msg)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
			if got := testutil.ToFloat64(m.exportedSpans.WithLabelValues(tc.code.String())); got != 2 {
				t.Errorf("exported spans {%v} = %v; want 2", tc.code, got)
			}
		})
	}
}

func TestExporterNetworkErrors(t *testing.T) {
	t.Run("upstream gone", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		endpoint := srv.URL + TracesPath
		srv.Close()
		err := newExporter(t, ExporterConfig{Endpoint: endpoint}, nil).Export(t.Context(), exportOf(t, sampleRequest(1)))
		var e *Error
		if !errors.As(err, &e) || e.Code != codes.Unavailable || !strings.Contains(e.Msg, endpoint) {
			t.Errorf("Export = %v; want Unavailable naming %s", err, endpoint)
		}
	})

	t.Run("upstream too slow", func(t *testing.T) {
		unblock := make(chan struct{})
		srv, _ := newUpstream(t, func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-unblock:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(unblock) }) // runs before srv.Close
		x := newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath, Timeout: 50 * time.Millisecond}, nil)
		err := x.Export(t.Context(), exportOf(t, sampleRequest(1)))
		var e *Error
		if !errors.As(err, &e) || e.Code != codes.Unavailable || !strings.Contains(e.Msg, "deadline exceeded") {
			t.Errorf("Export = %v; want Unavailable after the deadline", err)
		}
	})

	t.Run("caller gives up", func(t *testing.T) {
		srv, _ := newUpstream(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath}, nil).Export(ctx, exportOf(t, sampleRequest(1)))
		var e *Error
		if !errors.As(err, &e) || e.Code != codes.Unavailable {
			t.Errorf("Export = %v; want Unavailable", err)
		}
	})
}

func TestExporterPartialSuccess(t *testing.T) {
	answer := func(contentType string, rejected int64) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			resp := ptraceotlp.NewExportResponse()
			resp.PartialSuccess().SetRejectedSpans(rejected)
			resp.PartialSuccess().SetErrorMessage("spans without a trace id")
			var b []byte
			var err error
			if contentType == contentTypeProto {
				b, err = resp.MarshalProto()
			} else {
				b, err = resp.MarshalJSON()
			}
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Type", contentType)
			_, _ = w.Write(b)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	for _, a := range []http.HandlerFunc{answer(contentTypeProto, 3), answer(contentTypeProto, 0), answer(contentTypeProto, 2)} {
		srv, _ := newUpstream(t, a)
		if err := newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath}, m).Export(t.Context(), exportOf(t, sampleRequest(5))); err != nil {
			t.Fatalf("Export = %v; a partial success is a success", err)
		}
	}
	const metric = "feedbackproxy_exporter_upstream_rejected_spans_total"
	want := fmt.Sprintf("# HELP %s Spans the upstream accepted the request for but reported as rejected (OTLP partial success).\n# TYPE %s counter\n%s 5\n", metric, metric, metric)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metric); err != nil {
		t.Error(err)
	}
}

func TestExporterConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     ExporterConfig
		wantErr string
	}{
		{name: "minimal", cfg: ExporterConfig{Endpoint: "http://localhost:6006/v1/traces"}},
		{name: "https, gzip", cfg: ExporterConfig{Endpoint: "https://phoenix.example/v1/traces", Compression: Gzip, Timeout: time.Second}},
		{name: "no endpoint", cfg: ExporterConfig{}, wantErr: "endpoint"},
		{name: "no scheme", cfg: ExporterConfig{Endpoint: "localhost:6006"}, wantErr: "endpoint"},
		{name: "other scheme", cfg: ExporterConfig{Endpoint: "grpc://localhost:4317"}, wantErr: "endpoint"},
		{name: "compression", cfg: ExporterConfig{Endpoint: "http://x/v1/traces", Compression: NoCompression + 1}, wantErr: "compression"},
		{name: "compression level", cfg: ExporterConfig{Endpoint: "http://x/v1/traces", CompressionLevel: 10}, wantErr: "1 (fastest) to 9"},
		{name: "smallest compression", cfg: ExporterConfig{Endpoint: "http://x/v1/traces", CompressionLevel: 9}},
		{name: "timeout", cfg: ExporterConfig{Endpoint: "http://x/v1/traces", Timeout: -time.Second}, wantErr: "timeout"},
		{name: "TLS files", cfg: ExporterConfig{Endpoint: "https://x/v1/traces", TLS: tlsconfig.ClientConfig{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}}},
		{name: "TLS files for http", cfg: ExporterConfig{Endpoint: "http://x/v1/traces", TLS: tlsconfig.ClientConfig{CAFile: "ca.pem"}}, wantErr: "not https://"},
		{name: "client certificate without key", cfg: ExporterConfig{Endpoint: "https://x/v1/traces", TLS: tlsconfig.ClientConfig{CertFile: "c.pem"}}, wantErr: "CertFile and KeyFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewExporter(tc.cfg, nil)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("NewExporter error %v; want one naming %q", err, tc.wantErr)
			}
		})
	}
}

// A Compression reads its text as a flag gives it, and writes it back the
// same; the empty text is the default.
func TestCompressionText(t *testing.T) {
	for text, want := range map[string]Compression{"gzip": Gzip, "none": NoCompression, "": Gzip} {
		var c Compression = NoCompression + 1
		if err := c.UnmarshalText([]byte(text)); err != nil || c != want {
			t.Errorf("%q: %s, %v; want %s", text, c, err, want)
		}
		if b, err := want.MarshalText(); err != nil || string(b) != want.String() {
			t.Errorf("%s: text %q, %v", want, b, err)
		}
	}
	for _, text := range []string{"zstd", "GZIP", "identity"} {
		var c Compression
		err := c.UnmarshalText([]byte(text))
		if want := fmt.Sprintf("otlp: exporter compression %q is not supported; use gzip or none", text); err == nil || err.Error() != want {
			t.Errorf("%q: %v; want %s", text, err, want)
		}
	}
	if _, err := (NoCompression + 1).MarshalText(); err == nil {
		t.Error("an unknown Compression has a text")
	}
}

// A body the client gzipped goes upstream as the very bytes it sent, not
// compressed a second time; without compression upstream, decompressed.
func TestExporterForwardsClientGzip(t *testing.T) {
	req := sampleRequest(5)
	body := marshalProto(t, req)
	gz := compress(t, "gzip", body)
	var raw [][]byte
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		raw = append(raw, b)
		mu.Unlock()
	}))
	defer srv.Close()
	e := &Export{Body: body, Gzipped: gz, Transport: "http"}

	x := newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath}, nil)
	if err := x.Export(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	x = newExporter(t, ExporterConfig{Endpoint: srv.URL + TracesPath, Compression: NoCompression}, nil)
	if err := x.Export(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2 || !bytes.Equal(raw[0], gz) || !bytes.Equal(raw[1], body) {
		t.Fatalf("upstream got %d bodies; want the client's gzip bytes, then the plain body", len(raw))
	}
}

// lateClose is a transport that answers at once and lets go of the request
// body only later, as net/http's may when the upstream answers before it
// has read the whole body.
type lateClose struct{ closing chan struct{} }

func (l *lateClose) RoundTrip(req *http.Request) (*http.Response, error) {
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(l.closing)
		req.Body.Close()
	}()
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
}

// TestExporterWaitsForTheBody: the receiver reuses an export's buffers once
// Export returns, so Export must not return while the transport may still
// read them.
func TestExporterWaitsForTheBody(t *testing.T) {
	tr := &lateClose{closing: make(chan struct{})}
	x := newExporter(t, ExporterConfig{Endpoint: "http://upstream.invalid" + TracesPath, Client: &http.Client{Transport: tr}}, nil)
	if err := x.Export(t.Context(), exportOf(t, sampleRequest(1))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.closing:
	default:
		t.Fatal("Export returned before the transport closed the request body")
	}
}

// TestExporterFollowsRedirects: a 307 or 308 from the upstream (a Phoenix
// behind a proxy that moved it) is followed with the whole body again.
func TestExporterFollowsRedirects(t *testing.T) {
	srv, got := newUpstream(t, nil)
	mux := http.NewServeMux()
	mux.Handle(TracesPath, srv.Config.Handler)
	mux.HandleFunc("/old/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, TracesPath, http.StatusPermanentRedirect)
	})
	front := httptest.NewServer(mux)
	defer front.Close()
	e := exportOf(t, sampleRequest(2))
	if err := newExporter(t, ExporterConfig{Endpoint: front.URL + "/old" + TracesPath}, nil).Export(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if r := got(); len(r) != 1 || !bytes.Equal(r[0].body, e.Body) {
		t.Fatalf("upstream got %d exports; want the one, whole, after the redirect", len(r))
	}
}
