package otlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
)

// grpcClient dials the receiver's gRPC listener; the connection is closed
// when the test ends.
func grpcClient(t testing.TB, r *Receiver) ptraceotlp.GRPCClient {
	t.Helper()
	conn, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ptraceotlp.NewGRPCClient(conn)
}

// postHTTP sends body to the receiver's /v1/traces and returns the answer
// with its body read.
func postHTTP(t testing.TB, r *Receiver, contentType, encoding string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+r.HTTPAddr().String()+TracesPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	// A client of its own, so that its connections close with the test.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestReceiverGRPC(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []grpc.CallOption
		md      metadata.MD
		project string
	}{
		{name: "plain"},
		{name: "gzip", opts: []grpc.CallOption{grpc.UseCompressor(gzip.Name)}},
		{name: "project metadata", md: metadata.Pairs(ProjectHeader, "support"), project: "support"},
		{name: "gzip and project", opts: []grpc.CallOption{grpc.UseCompressor(gzip.Name)}, md: metadata.Pairs(ProjectHeader, "p2"), project: "p2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recorder{}
			r := startReceiver(t, ReceiverConfig{}, c, nil)
			ctx := t.Context()
			if tc.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, tc.md)
			}
			want := sampleRequest(3)
			resp, err := grpcClient(t, r).Export(ctx, want, tc.opts...)
			if err != nil {
				t.Fatalf("Export: %v", err)
			}
			if ps := resp.PartialSuccess(); ps.RejectedSpans() != 0 || ps.ErrorMessage() != "" {
				t.Errorf("partial success %d %q; want none", ps.RejectedSpans(), ps.ErrorMessage())
			}
			got := c.last(t)
			if got.Transport != "grpc" || got.Project != tc.project {
				t.Errorf("export transport %q project %q; want grpc, %q", got.Transport, got.Project, tc.project)
			}
			pb := marshalProto(t, want)
			if !bytes.Equal(got.Body, pb) {
				t.Errorf("Export.Body is %d bytes, not the %d bytes of the message sent", len(got.Body), len(pb))
			}
			// Compressed, the message is kept as it came, to be forwarded
			// as it is (keepGzip): it decompresses to Body.
			gzipped := strings.HasPrefix(tc.name, "gzip")
			switch {
			case !gzipped && got.Gzipped != nil:
				t.Errorf("Export.Gzipped is set for an uncompressed message")
			case gzipped && !bytes.Equal(gunzipAll(t, got.Gzipped), pb):
				t.Errorf("Export.Gzipped does not decompress to the message sent")
			}
			assertSameTraces(t, want.Traces(), tracesOf(t, got))
		})
	}
}

func TestReceiverHTTP(t *testing.T) {
	want := sampleRequest(3)
	pb, js := marshalProto(t, want), marshalJSON(t, want)
	for _, ct := range []string{contentTypeProto, contentTypeJSON} {
		for _, enc := range encodings {
			t.Run(ct+"/"+enc, func(t *testing.T) {
				c := &recorder{}
				r := startReceiver(t, ReceiverConfig{}, c, nil)
				body := pb
				if ct == contentTypeJSON {
					body = js
				}
				resp, rb := postHTTP(t, r, ct, enc, compress(t, enc, body), http.Header{"X-Project-Name": {"support"}})
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, body %q", resp.StatusCode, rb)
				}
				if got := resp.Header.Get("Content-Type"); got != ct {
					t.Errorf("Content-Type %q; want %q", got, ct)
				}
				er := ptraceotlp.NewExportResponse()
				var err error
				if ct == contentTypeProto {
					err = er.UnmarshalProto(rb)
				} else {
					err = er.UnmarshalJSON(rb)
				}
				if err != nil {
					t.Errorf("answer %q is not an ExportTraceServiceResponse: %v", rb, err)
				}

				got := c.last(t)
				if got.Transport != "http" || got.Project != "support" {
					t.Errorf("export transport %q project %q; want http, support", got.Transport, got.Project)
				}
				if ct == contentTypeProto && !bytes.Equal(got.Body, pb) {
					t.Errorf("Export.Body is %d bytes, not the %d decompressed bytes sent", len(got.Body), len(pb))
				}
				if got.Gzipped != nil && (ct == contentTypeJSON || enc != "gzip") {
					t.Errorf("Export.Gzipped is set for a %s %q body; only a gzip protobuf body is forwarded as sent", ct, enc)
				}
				assertSameTraces(t, want.Traces(), tracesOf(t, got))
			})
		}
	}
}

// TestReceiverSpecJSON decodes OTLP/JSON written by hand from the
// specification (hex ids, enums as integers, 64-bit integers as strings or
// numbers), not by the library under test: a decoder that took ids as
// base64, as protojson does, would fail here.
// https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
func TestReceiverSpecJSON(t *testing.T) {
	body, err := os.ReadFile("testdata/llm_export.json")
	if err != nil {
		t.Fatal(err)
	}
	c := &recorder{}
	r := startReceiver(t, ReceiverConfig{}, c, nil)
	resp, rb := postHTTP(t, r, contentTypeJSON+"; charset=utf-8", "", body, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.StatusCode, rb)
	}
	td := tracesOf(t, c.last(t))
	if n := td.SpanCount(); n != 1 {
		t.Fatalf("%d spans; want 1", n)
	}
	rs := td.ResourceSpans().At(0)
	ss := rs.ScopeSpans().At(0)
	s := ss.Spans().At(0)
	attr := func(m pcommon.Map, k string) pcommon.Value {
		v, ok := m.Get(k)
		if !ok {
			t.Fatalf("attribute %q missing", k)
		}
		return v
	}
	for _, ck := range []struct {
		what      string
		got, want any
	}{
		{"resource service.name", attr(rs.Resource().Attributes(), "service.name").Str(), "support-bot"},
		{"scope name", ss.Scope().Name(), "openinference.instrumentation.openai"},
		{"scope version", ss.Scope().Version(), "0.1.18"},
		{"traceId", s.TraceID(), pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}},
		{"spanId", s.SpanID(), pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}},
		{"parentSpanId", s.ParentSpanID(), pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73}},
		{"traceState", s.TraceState().AsRaw(), "vendor=1"},
		{"kind", s.Kind(), ptrace.SpanKindClient},
		{"start", s.StartTimestamp(), pcommon.Timestamp(1544712660000000000)},
		{"end", s.EndTimestamp(), pcommon.Timestamp(1544712661000000000)},
		{"status code", s.Status().Code(), ptrace.StatusCodeError},
		{"status message", s.Status().Message(), "rate limited"},
		{"span kind attribute", attr(s.Attributes(), "openinference.span.kind").Str(), "LLM"},
		{"response id", attr(s.Attributes(), "gen_ai.response.id").Str(), "chatcmpl-abc123"},
		{"intValue as string", attr(s.Attributes(), "llm.token_count.prompt").Int(), int64(180)},
		{"intValue as number", attr(s.Attributes(), "llm.token_count.completion").Int(), int64(12)},
		{"doubleValue", attr(s.Attributes(), "llm.invocation_parameters.temperature").Double(), 0.2},
		{"boolValue", attr(s.Attributes(), "llm.is_streaming").Bool(), true},
		{"bytesValue", string(attr(s.Attributes(), "raw").Bytes().AsRaw()), "\x00\x01\x02\xff"},
		{"arrayValue", attr(s.Attributes(), "llm.tools").Slice().At(0).Str(), "search"},
		{"kvlistValue", attr(attr(s.Attributes(), "metadata").Map(), "user").Str(), "u-1"},
		{"event name", s.Events().At(0).Name(), "first_token"},
		{"event time", s.Events().At(0).Timestamp(), pcommon.Timestamp(1544712660500000000)},
		{"event attribute", attr(s.Events().At(0).Attributes(), "index").Int(), int64(0)},
		{"link traceId", s.Links().At(0).TraceID(), pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"link spanId", s.Links().At(0).SpanID(), pcommon.SpanID{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}},
		{"link attribute", attr(s.Links().At(0).Attributes(), "link.kind").Str(), "retry-of"},
	} {
		if ck.got != ck.want {
			t.Errorf("%s = %v; want %v", ck.what, ck.got, ck.want)
		}
	}
}

// TestReceiverErrors checks that a consumer's error reaches both kinds of
// client with the same meaning: the code, whether and when to retry.
func TestReceiverErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		httpStatus int
		code       codes.Code
		retryAfter string        // the Retry-After header; "" for none
		retryInfo  time.Duration // the gRPC RetryInfo delay; 0 for none
		msg        string        // the message clients see; "" means err.Error()
	}{
		{name: "unavailable with delay", err: &Error{Code: codes.Unavailable, RetryAfter: 3 * time.Second, Msg: "index full"},
			httpStatus: 503, code: codes.Unavailable, retryAfter: "3", retryInfo: 3 * time.Second},
		{name: "delay rounded up", err: &Error{Code: codes.Unavailable, RetryAfter: 1500 * time.Millisecond, Msg: "busy"},
			httpStatus: 503, code: codes.Unavailable, retryAfter: "2", retryInfo: 1500 * time.Millisecond},
		{name: "resource exhausted", err: &Error{Code: codes.ResourceExhausted, RetryAfter: 10 * time.Second, Msg: "slow down"},
			httpStatus: 429, code: codes.ResourceExhausted, retryAfter: "10", retryInfo: 10 * time.Second},
		{name: "resource exhausted without delay", err: Errorf(codes.ResourceExhausted, "slow down"),
			httpStatus: 429, code: codes.ResourceExhausted, retryAfter: "1", retryInfo: time.Second},
		{name: "invalid argument", err: Errorf(codes.InvalidArgument, "bad span"),
			httpStatus: 400, code: codes.InvalidArgument},
		{name: "permanent with delay has no delay", err: &Error{Code: codes.InvalidArgument, RetryAfter: time.Second, Msg: "bad span"},
			httpStatus: 400, code: codes.InvalidArgument},
		{name: "wrapped", err: fmt.Errorf("index: %w", Errorf(codes.PermissionDenied, "no")),
			httpStatus: 403, code: codes.PermissionDenied},
		{name: "gRPC status error", err: status.Error(codes.Unauthenticated, "who are you"),
			httpStatus: 401, code: codes.Unauthenticated, msg: "who are you"},
		{name: "plain error is unavailable", err: errors.New("disk on fire"),
			httpStatus: 503, code: codes.Unavailable, retryAfter: "1"},
		{name: "Unknown code is unavailable", err: Errorf(codes.Unknown, "who knows"),
			httpStatus: 503, code: codes.Unavailable, retryAfter: "1"},
		{name: "OK code with an error is unavailable", err: Errorf(codes.OK, "not ok"),
			httpStatus: 503, code: codes.Unavailable, retryAfter: "1"},
		{name: "gRPC status Unknown is unavailable", err: status.Error(codes.Unknown, "?"),
			httpStatus: 503, code: codes.Unavailable, retryAfter: "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recorder{err: tc.err}
			r := startReceiver(t, ReceiverConfig{}, c, nil)
			req := sampleRequest(1)
			wantMsg := tc.msg
			if wantMsg == "" {
				wantMsg = tc.err.Error()
			}

			for _, ct := range []string{contentTypeProto, contentTypeJSON} {
				body := marshalProto(t, req)
				if ct == contentTypeJSON {
					body = marshalJSON(t, req)
				}
				resp, rb := postHTTP(t, r, ct, "", body, nil)
				if resp.StatusCode != tc.httpStatus {
					t.Errorf("%s: status %d; want %d", ct, resp.StatusCode, tc.httpStatus)
				}
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("%s: Retry-After %q; want %q", ct, got, tc.retryAfter)
				}
				if got := resp.Header.Get("Content-Type"); got != ct {
					t.Errorf("%s: Content-Type %q; want the caller's", ct, got)
				}
				st := decodeStatusBody(t, resp.Header.Get("Content-Type"), rb)
				if codes.Code(st.GetCode()) != tc.code || !strings.Contains(st.GetMessage(), wantMsg) {
					t.Errorf("%s: body status %v %q; want %v with %q", ct, codes.Code(st.GetCode()), st.GetMessage(), tc.code, wantMsg)
				}
			}

			_, err := grpcClient(t, r).Export(t.Context(), req)
			st, ok := status.FromError(err)
			if !ok || st.Code() != tc.code {
				t.Fatalf("gRPC error %v; want code %v", err, tc.code)
			}
			if st.Code() == codes.Unknown {
				t.Fatal("gRPC answered Unknown")
			}
			if !strings.Contains(st.Message(), wantMsg) {
				t.Errorf("gRPC message %q; want %q", st.Message(), wantMsg)
			}
			var delay time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					delay = ri.GetRetryDelay().AsDuration()
				}
			}
			if delay != tc.retryInfo {
				t.Errorf("gRPC RetryInfo delay %v; want %v", delay, tc.retryInfo)
			}
		})
	}
}

func TestReceiverMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	c := &recorder{}
	r := startReceiver(t, ReceiverConfig{}, c, m)
	if _, err := grpcClient(t, r).Export(t.Context(), sampleRequest(2)); err != nil {
		t.Fatal(err)
	}
	if resp, rb := postHTTP(t, r, contentTypeProto, "", marshalProto(t, sampleRequest(3)), nil); resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, rb)
	}
	c.mu.Lock()
	c.err = Errorf(codes.ResourceExhausted, "full")
	c.mu.Unlock()
	postHTTP(t, r, contentTypeProto, "", marshalProto(t, sampleRequest(4)), nil)

	for _, ck := range []struct {
		transport, outcome string
		want               float64
	}{
		{"grpc", "accepted", 2},
		{"http", "accepted", 3},
		{"http", "ResourceExhausted", 4},
	} {
		if got := testutil.ToFloat64(m.receivedSpans.WithLabelValues(ck.transport, ck.outcome)); got != ck.want {
			t.Errorf("received spans {%s, %s} = %v; want %v", ck.transport, ck.outcome, got, ck.want)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
}

func TestReceiverConfig(t *testing.T) {
	c := &recorder{}
	for _, tc := range []struct {
		name    string
		cfg     ReceiverConfig
		wantErr string
	}{
		{name: "zero value is valid", cfg: ReceiverConfig{}},
		{name: "negative limit", cfg: ReceiverConfig{MaxRequestBytes: -1}, wantErr: "MaxRequestBytes"},
		{name: "both disabled", cfg: ReceiverConfig{GRPCAddr: "-", HTTPAddr: "-"}, wantErr: "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReceiver(tc.cfg, c, nil, nil)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("NewReceiver error %v; want one naming %q", err, tc.wantErr)
			}
		})
	}
	if _, err := NewReceiver(ReceiverConfig{}, nil, nil, nil); err == nil {
		t.Error("NewReceiver accepted a nil consumer")
	}
}

func TestReceiverShutdown(t *testing.T) {
	t.Run("start then shutdown", func(t *testing.T) {
		r, err := NewReceiver(ReceiverConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, &recorder{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Use both servers, so that there are connections to close.
		if _, err := grpcClient(t, r).Export(t.Context(), sampleRequest(1)); err != nil {
			t.Fatal(err)
		}
		postHTTP(t, r, contentTypeProto, "", nil, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		for _, addr := range []net.Addr{r.GRPCAddr(), r.HTTPAddr()} {
			if conn, err := net.Dial("tcp", addr.String()); err == nil {
				conn.Close()
				t.Errorf("%s still accepts connections after Shutdown", addr)
			}
		}
	})

	t.Run("shutdown cuts off a stuck export", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		defer close(release)
		stuck := consumerFunc(func(ctx context.Context, _ *Export) error {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return ctx.Err()
		})
		r, err := NewReceiver(ReceiverConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, stuck, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Cut off, the clients hear a retryable answer, not a closed
		// connection: their exporters retry elsewhere or later.
		httpDone, grpcDone := make(chan string, 1), make(chan codes.Code, 1)
		go func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Post("http://"+r.HTTPAddr().String()+TracesPath, contentTypeProto, nil)
			if err != nil {
				httpDone <- err.Error()
				return
			}
			resp.Body.Close()
			httpDone <- resp.Status
		}()
		client := grpcClient(t, r)
		go func() {
			_, err := client.Export(context.Background(), sampleRequest(1))
			grpcDone <- status.Code(err)
		}()
		<-entered
		<-entered
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // no grace: Shutdown must cut the two exports off, not wait
		if err := r.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown = %v; want context.Canceled", err)
		}
		if got := <-httpDone; got != "503 Service Unavailable" {
			t.Errorf("the HTTP export cut off at shutdown: %s, want 503 Service Unavailable", got)
		}
		if got := <-grpcDone; got != codes.Unavailable {
			t.Errorf("the gRPC export cut off at shutdown: %v, want Unavailable", got)
		}
	})

	t.Run("port in use", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		for _, tc := range []struct {
			name     string
			cfg      ReceiverConfig
			listener string
		}{
			{name: "gRPC", cfg: ReceiverConfig{GRPCAddr: taken.Addr().String(), HTTPAddr: "127.0.0.1:0"}, listener: "gRPC listener"},
			{name: "HTTP", cfg: ReceiverConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: taken.Addr().String()}, listener: "HTTP listener"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r, err := NewReceiver(tc.cfg, &recorder{}, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				err = r.Start(t.Context())
				if err == nil {
					r.Shutdown(t.Context())
					t.Fatal("Start succeeded on a port in use")
				}
				if !strings.Contains(err.Error(), tc.listener) || !strings.Contains(err.Error(), taken.Addr().String()) {
					t.Errorf("error %q does not name the %s and its address", err, tc.listener)
				}
				// The listener that did bind was closed again: its
				// address is free. goleak checks no server is left.
				if a := r.GRPCAddr(); a != nil && tc.name == "HTTP" {
					ln, err := net.Listen("tcp", a.String())
					if err != nil {
						t.Errorf("the gRPC listener was left open: %v", err)
					} else {
						ln.Close()
					}
				}
			})
		}
	})
}

type consumerFunc func(context.Context, *Export) error

func (f consumerFunc) ConsumeTraces(ctx context.Context, e *Export) error { return f(ctx, e) }

// BenchmarkGRPCExport measures one export of 100 LLM spans over loopback
// gRPC, client and server, to a consumer that does nothing.
func BenchmarkGRPCExport(b *testing.B) {
	nop := consumerFunc(func(context.Context, *Export) error { return nil })
	r := startReceiver(b, ReceiverConfig{HTTPAddr: "-"}, nop, nil)
	client := grpcClient(b, r)
	req := sampleRequest(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Export(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReceiverGRPCLimit checks that MaxRequestBytes caps gRPC messages too,
// compressed or not, before the consumer sees them. gRPC answers
// ResourceExhausted without RetryInfo, which OTLP clients do not retry.
func TestReceiverGRPCLimit(t *testing.T) {
	c := &recorder{}
	r := startReceiver(t, ReceiverConfig{MaxRequestBytes: 4 << 10}, c, nil)
	big := sampleRequest(20)
	if n := len(marshalProto(t, big)); n <= 4<<10 {
		t.Fatalf("test export of %d bytes is not over the limit", n)
	}
	for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor(gzip.Name)}} {
		_, err := grpcClient(t, r).Export(t.Context(), big, opts...)
		st, _ := status.FromError(err)
		if st.Code() != codes.ResourceExhausted {
			t.Errorf("Export over the limit (options %v) = %v; want ResourceExhausted", opts, err)
		}
		for _, d := range st.Details() {
			if _, ok := d.(*errdetails.RetryInfo); ok {
				t.Error("an export over the limit says to retry")
			}
		}
	}
	if c.calls() != 0 {
		t.Errorf("the consumer saw %d exports over the limit", c.calls())
	}
}

func TestReceiverOneTransport(t *testing.T) {
	c := &recorder{}
	r := startReceiver(t, ReceiverConfig{GRPCAddr: "-"}, c, nil)
	if r.GRPCAddr() != nil {
		t.Errorf("GRPCAddr = %v with gRPC disabled; want nil", r.GRPCAddr())
	}
	if resp, b := postHTTP(t, r, contentTypeProto, "", marshalProto(t, sampleRequest(1)), nil); resp.StatusCode != 200 {
		t.Errorf("HTTP export: %d %q", resp.StatusCode, b)
	}

	r = startReceiver(t, ReceiverConfig{HTTPAddr: "-"}, c, nil)
	if r.HTTPAddr() != nil {
		t.Errorf("HTTPAddr = %v with HTTP disabled; want nil", r.HTTPAddr())
	}
	if _, err := grpcClient(t, r).Export(t.Context(), sampleRequest(1)); err != nil {
		t.Errorf("gRPC export: %v", err)
	}
}

// TestReceiverBuffersAreNotShared sends different exports at once: each
// consumer call must see its own body, whole, while the receiver recycles
// buffers between requests.
func TestReceiverBuffersAreNotShared(t *testing.T) {
	c := consumerFunc(func(_ context.Context, e *Export) error {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(e.Body); err != nil {
			return Errorf(codes.InvalidArgument, "body garbled: %v", err)
		}
		if n := req.Traces().SpanCount(); n != e.Spans || fmt.Sprint(n) != e.Project {
			return Errorf(codes.InvalidArgument, "body of %d spans, counted %d, sent %s", n, e.Spans, e.Project)
		}
		return nil
	})
	r := startReceiver(t, ReceiverConfig{}, c, nil)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			for j := range 10 {
				n := 1 + (i*10+j)%13
				enc := []string{"", "gzip"}[j%2]
				resp, b := postHTTP(t, r, contentTypeProto, enc, compress(t, enc, marshalProto(t, sampleRequest(n))), http.Header{ProjectHeader: {fmt.Sprint(n)}})
				if resp.StatusCode != http.StatusOK {
					t.Errorf("export of %d spans: status %d, %q", n, resp.StatusCode, b)
				}
			}
		})
	}
	wg.Wait()
}

// TestReceiverMigratesInstrumentationLibrarySpans: an exporter older than
// OTLP 0.19 puts its spans in instrumentation_library_spans, which Phoenix
// ignores; the proxy forwards them as scope_spans, as the Collector does.
func TestReceiverMigratesInstrumentationLibrarySpans(t *testing.T) {
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	span := field(2, field(5, []byte("old"))) // spans { name: "old" }
	body := field(1, field(1000, span))       // resource_spans { instrumentation_library_spans { ... } }
	c := &recorder{}
	r := startReceiver(t, ReceiverConfig{}, c, nil)
	for _, enc := range []string{"", "gzip"} {
		resp, b := postHTTP(t, r, contentTypeProto, enc, compress(t, enc, body), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %q", resp.StatusCode, b)
		}
		got := c.last(t)
		if bytes.Equal(got.Body, body) || got.Gzipped != nil {
			t.Fatalf("%q: forwarded as received (gzip %v); want re-encoded", enc, got.Gzipped != nil)
		}
		td := tracesOf(t, got)
		if td.SpanCount() != 1 || td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() != "old" {
			t.Fatalf("%q: forwarded %d spans", enc, td.SpanCount())
		}
		if wire.HasInstrumentationLibrarySpans(got.Body) {
			t.Fatalf("%q: field 1000 still in the forwarded body", enc)
		}
	}
}
