package otlp

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// encodings are the Content-Encoding values the receiver accepts ("" is none).
var encodings = []string{"", "gzip", "deflate", "zstd"}

// sampleTraces returns an export shaped like an instrumented LLM app's: n
// OpenInference LLM spans in one resource and scope, each with attributes of
// every type, events, a link and a status, so that a round trip that drops
// or garbles any part of the model shows.
func sampleTraces(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	rs.Resource().Attributes().PutStr("service.name", "support-bot")
	rs.Resource().Attributes().PutStr("openinference.project.name", "support")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("openinference.instrumentation.openai")
	ss.Scope().SetVersion("0.1.18")
	ss.Scope().Attributes().PutBool("auto", true)
	prompt := strings.Repeat("You are a helpful assistant. Answer briefly. ", 20)
	for i := range n {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, byte(i)})
		s.SetSpanID(pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, byte(i)})
		s.SetParentSpanID(pcommon.SpanID{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, byte(i)})
		s.TraceState().FromRaw("vendor=1")
		s.SetName("ChatCompletion")
		s.SetKind(ptrace.SpanKindClient)
		s.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i)*1000))
		s.SetEndTimestamp(pcommon.Timestamp(1_700_000_001_000_000_000 + int64(i)*1000))
		a := s.Attributes()
		a.PutStr("openinference.span.kind", "LLM")
		a.PutStr("llm.model_name", "gpt-4o-mini")
		a.PutStr("gen_ai.response.id", fmt.Sprintf("chatcmpl-%04d", i))
		a.PutStr("input.value", prompt)
		a.PutStr("output.value", "The answer is 42.")
		a.PutInt("llm.token_count.prompt", 180+int64(i))
		a.PutDouble("llm.invocation_parameters.temperature", 0.2)
		a.PutBool("llm.is_streaming", false)
		a.PutEmptyBytes("raw").FromRaw([]byte{0, 1, 2, 0xff})
		a.PutEmptySlice("llm.tools").AppendEmpty().SetStr("search")
		a.PutEmptyMap("metadata").PutStr("user", "u-1")
		ev := s.Events().AppendEmpty()
		ev.SetName("first_token")
		ev.SetTimestamp(pcommon.Timestamp(1_700_000_000_500_000_000))
		ev.Attributes().PutInt("index", int64(i))
		ln := s.Links().AppendEmpty()
		ln.SetTraceID(pcommon.TraceID{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, byte(i)})
		ln.SetSpanID(pcommon.SpanID{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, byte(i)})
		ln.Attributes().PutStr("link.kind", "retry-of")
		s.Status().SetCode(ptrace.StatusCodeError)
		s.Status().SetMessage("rate limited")
	}
	return td
}

func sampleRequest(n int) ptraceotlp.ExportRequest {
	return ptraceotlp.NewExportRequestFromTraces(sampleTraces(n))
}

func exportOf(t testing.TB, req ptraceotlp.ExportRequest) *Export {
	t.Helper()
	e, err := NewExport(req)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// tracesOf decodes e.Body, which must be protobuf whatever the client
// sent, and checks e.Spans against it.
func tracesOf(t testing.TB, e *Export) ptrace.Traces {
	t.Helper()
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(e.Body); err != nil {
		t.Fatalf("Export.Body is not OTLP protobuf: %v", err)
	}
	if n := req.Traces().SpanCount(); n != e.Spans {
		t.Errorf("Export.Spans = %d; the body has %d", e.Spans, n)
	}
	return req.Traces()
}

func marshalProto(t testing.TB, req ptraceotlp.ExportRequest) []byte {
	t.Helper()
	b, err := req.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshalJSON(t testing.TB, req ptraceotlp.ExportRequest) []byte {
	t.Helper()
	b, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonCost is what scanJSON charges for body, a well-formed export.
func jsonCost(t testing.TB, body []byte) int64 {
	t.Helper()
	cost, err := scanJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	return cost
}

// assertSameTraces fails unless got carries exactly want's data. pdata
// encodes deterministically, so equal protobuf means equal content.
func assertSameTraces(t testing.TB, want, got ptrace.Traces) {
	t.Helper()
	wb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(want)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wb, gb) {
		wj, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(want)
		gj, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(got)
		t.Fatalf("traces differ\n got: %s\nwant: %s", gj, wj)
	}
}

// zstdEncoder is shared: making one costs more than most fuzz inputs, and
// EncodeAll may be called concurrently.
var zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))

// compress encodes b as the Content-Encoding enc would.
func compress(t testing.TB, enc string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch enc {
	case "":
		return b
	case "gzip":
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case "deflate":
		zw := zlib.NewWriter(&buf)
		_, _ = zw.Write(b)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case "zstd":
		return zstdEncoder.EncodeAll(b, nil)
	default:
		t.Fatalf("compress: unknown encoding %q", enc)
	}
	return buf.Bytes()
}

// decodeStatusBody decodes a google.rpc.Status error body in the encoding its
// Content-Type names.
func decodeStatusBody(t testing.TB, contentType string, body []byte) *spb.Status {
	t.Helper()
	st := &spb.Status{}
	var err error
	switch contentType {
	case contentTypeProto:
		err = proto.Unmarshal(body, st)
	case contentTypeJSON:
		err = protojson.Unmarshal(body, st)
	default:
		t.Fatalf("error body has Content-Type %q; want %s or %s", contentType, contentTypeProto, contentTypeJSON)
	}
	if err != nil {
		t.Fatalf("error body %q is not a google.rpc.Status in %s: %v", body, contentType, err)
	}
	return st
}

// recorder is a Consumer that keeps what it was given and answers err.
type recorder struct {
	mu      sync.Mutex
	exports []*Export
	err     error
}

func (c *recorder) ConsumeTraces(_ context.Context, e *Export) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The receiver reuses the body's memory once the call returns.
	kept := *e
	kept.Body, kept.Gzipped = bytes.Clone(e.Body), bytes.Clone(e.Gzipped)
	c.exports = append(c.exports, &kept)
	return c.err
}

func (c *recorder) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.exports)
}

func (c *recorder) last(t testing.TB) *Export {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.exports) == 0 {
		t.Fatal("the consumer was not called")
	}
	return c.exports[len(c.exports)-1]
}

// startReceiver starts a receiver on loopback ports chosen by the kernel and
// shuts it down when the test ends.
func startReceiver(t testing.TB, cfg ReceiverConfig, c Consumer, m *Metrics) *Receiver {
	t.Helper()
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	r, err := NewReceiver(cfg, c, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return r
}

// newHandler returns the HTTP handler of a receiver that is never started.
func newHandler(t testing.TB, maxBytes int64, c Consumer) *Receiver {
	t.Helper()
	r, err := NewReceiver(ReceiverConfig{GRPCAddr: "-", HTTPAddr: "127.0.0.1:0", MaxRequestBytes: maxBytes}, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// gunzipAll decompresses b, every gzip member of it.
func gunzipAll(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
