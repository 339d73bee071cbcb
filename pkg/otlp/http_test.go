package otlp

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
)

// serve sends one request through a receiver's HTTP handler.
func serve(h http.Handler, method, contentType, encoding string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, TracesPath, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// corrupt returns b with bytes in its middle changed.
func corrupt(b []byte) []byte {
	b = bytes.Clone(b)
	for i := len(b) / 2; i < len(b)/2+8 && i < len(b); i++ {
		b[i] ^= 0x5a
	}
	return b
}

// nestedJSON returns an export whose one attribute value nests n arrays deep
// through fields the decoder knows (so it recurses, not skips).
func nestedJSON(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":`)
	b.WriteString(strings.Repeat(`{"arrayValue":{"values":[`, n))
	b.WriteString(`{"stringValue":"x"}`)
	b.WriteString(strings.Repeat(`]}}`, n))
	b.WriteString(`}]}}]}`)
	return []byte(b.String())
}

func TestHTTPBadInput(t *testing.T) {
	const limit = 64 << 10
	pb := marshalProto(t, sampleRequest(3))
	js := marshalJSON(t, sampleRequest(3))
	spec, err := os.ReadFile("testdata/llm_export.json")
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20) // compresses to about a kilobyte
	streamingZstd := func() []byte {
		var buf bytes.Buffer
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(32<<10))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = zw.Write(zeros)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()

	for _, tc := range []struct {
		name        string
		limit       int64 // MaxRequestBytes; 0 means limit
		method      string
		contentType string
		encoding    string
		body        []byte
		status      int
		msg         string // what the error message must name; "" for success
		called      bool   // whether the consumer must have been called
		check       func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{name: "GET", method: http.MethodGet, status: 405, msg: "send POST",
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if got := rec.Header().Get("Allow"); got != http.MethodPost {
					t.Errorf("Allow %q; want POST", got)
				}
			}},
		{name: "PUT", method: http.MethodPut, contentType: contentTypeProto, body: pb, status: 405, msg: "send POST"},
		{name: "wrong content type", contentType: "text/plain", body: pb, status: 415, msg: `"text/plain"`},
		{name: "no content type", body: pb, status: 415, msg: contentTypeProto},
		{name: "malformed content type", contentType: "application/", body: pb, status: 415, msg: "application/"},
		{name: "malformed protobuf", contentType: contentTypeProto, body: []byte{0x0a, 0xff, 0xff, 0xff, 0x0f}, status: 400, msg: "cannot decode the application/x-protobuf body"},
		{name: "protobuf truncated", contentType: contentTypeProto, body: pb[:len(pb)/2], status: 400, msg: "cannot decode"},
		// resource_spans { scope_spans { spans { trace_id: 5 bytes } } }: the answer says where.
		{name: "protobuf short trace id", contentType: contentTypeProto, body: []byte{0x0a, 0x0b, 0x12, 0x09, 0x12, 0x07, 0x0a, 0x05, 1, 2, 3, 4, 5}, status: 400,
			msg: "resource_spans[0].scope_spans[0].spans[0].trace_id: 5 bytes, want 16 (or none)"},
		{name: "malformed JSON", contentType: contentTypeJSON, body: []byte(`{"resourceSpans": [`), status: 400, msg: "cannot decode the application/json body"},
		{name: "JSON not an object", contentType: contentTypeJSON, body: []byte(`[1,2]`), status: 400, msg: "cannot decode"},
		{name: "JSON trace id of the wrong length", contentType: contentTypeJSON,
			body: []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abc"}]}]}]}`), status: 400, msg: "traceId"},
		// The decoder's message quotes ten bytes before the error: here
		// they start in the middle of an "é".
		{name: "JSON error quoting half a character", contentType: contentTypeJSON,
			body: []byte(`{"resourceSpans": [], "x": "aéééééééééééé" x`), status: 400, msg: "cannot decode"},
		{name: "JSON empty body", contentType: contentTypeJSON, body: nil, status: 400, msg: "cannot decode"},
		{name: "JSON invalid UTF-8 in a string", contentType: contentTypeJSON,
			body: bytes.Replace(spec, []byte("support-bot"), []byte("support-\xffbot"), 1), status: 400, msg: "UTF-8"},
		{name: "JSON nested deeper than the limit", contentType: contentTypeJSON, body: nestedJSON(maxJSONDepth), status: 400, msg: "nesting deeper than"},
		{name: "JSON deep nesting in an unknown field", contentType: contentTypeJSON,
			body: []byte(`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), status: 400, msg: "nesting deeper than"},
		// Within JSON's limit but not protobuf's (100 nested messages, see
		// wire.MaxDepth): Phoenix could not decode it.
		{name: "JSON nesting over protobuf's limit", contentType: contentTypeJSON, body: nestedJSON(50), status: 400, msg: "nested more than 100 deep"},
		{name: "JSON nesting within the limit", contentType: contentTypeJSON, body: nestedJSON(49), status: 200, called: true},
		{name: "JSON brackets in strings do not nest", contentType: contentTypeJSON,
			body:   []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"` + strings.Repeat(`[{\"`, 1000) + `"}}]}}]}`),
			status: 200, called: true},
		{name: "unknown Content-Encoding", contentType: contentTypeProto, encoding: "br", body: pb, status: 400, msg: `"br"`},
		{name: "Content-Encoding is case-insensitive", contentType: contentTypeProto, encoding: "GZip", body: compress(t, "gzip", pb), status: 200, called: true},
		{name: "x-gzip is gzip", contentType: contentTypeProto, encoding: "x-gzip", body: compress(t, "gzip", pb), status: 200, called: true},
		{name: "identity encoding", contentType: contentTypeProto, encoding: "identity", body: pb, status: 200, called: true},
		{name: "corrupt gzip", contentType: contentTypeProto, encoding: "gzip", body: corrupt(compress(t, "gzip", pb)), status: 400, msg: "gzip"},
		{name: "truncated gzip", contentType: contentTypeProto, encoding: "gzip", body: compress(t, "gzip", pb)[:100], status: 400, msg: "gzip"},
		{name: "not gzip at all", contentType: contentTypeProto, encoding: "gzip", body: pb, status: 400, msg: "gzip"},
		{name: "corrupt deflate", contentType: contentTypeProto, encoding: "deflate", body: corrupt(compress(t, "deflate", pb)), status: 400, msg: "deflate"},
		{name: "corrupt zstd", contentType: contentTypeProto, encoding: "zstd", body: corrupt(compress(t, "zstd", pb)), status: 400, msg: "zstd"},
		{name: "not zstd at all", contentType: contentTypeProto, encoding: "zstd", body: pb, status: 400, msg: "zstd"},
		{name: "body at the limit", limit: int64(len(pb)), contentType: contentTypeProto, body: pb, status: 200, called: true},
		{name: "body just over the limit", limit: int64(len(pb)) - 1, contentType: contentTypeProto, body: pb, status: 413, msg: "over the limit"},
		{name: "decompressed body at the limit", limit: int64(len(pb)), contentType: contentTypeProto, encoding: "gzip", body: compress(t, "gzip", pb), status: 200, called: true},
		{name: "decompressed body just over the limit", limit: int64(len(pb)) - 1, contentType: contentTypeProto, encoding: "gzip", body: compress(t, "gzip", pb), status: 413, msg: "over the limit"},
		{name: "gzip bomb", contentType: contentTypeProto, encoding: "gzip", body: compress(t, "gzip", zeros), status: 413, msg: "over the limit"},
		{name: "deflate bomb", contentType: contentTypeProto, encoding: "deflate", body: compress(t, "deflate", zeros), status: 413, msg: "over the limit"},
		{name: "zstd bomb with its size in the header", contentType: contentTypeProto, encoding: "zstd", body: compress(t, "zstd", zeros), status: 413, msg: "limit"},
		{name: "zstd bomb streamed", contentType: contentTypeProto, encoding: "zstd", body: streamingZstd, status: 413, msg: "over the limit"},
		{name: "gzip bomb as JSON", contentType: contentTypeJSON, encoding: "gzip", body: compress(t, "gzip", zeros), status: 413, msg: "over the limit"},
		{name: "empty protobuf body is an empty export", contentType: contentTypeProto, body: nil, status: 200, called: true},
		{name: "empty JSON object is an empty export", contentType: contentTypeJSON, body: []byte(`{}`), status: 200, called: true},
		{name: "empty gzip body is an empty export", contentType: contentTypeProto, encoding: "gzip", body: compress(t, "gzip", nil), status: 200, called: true},
		{name: "JSON spans", contentType: contentTypeJSON, body: js, status: 200, called: true},
		{name: "JSON spans and whitespace after", contentType: contentTypeJSON, body: append(append([]byte(nil), js...), " \n\t\r\n"...), status: 200, called: true},
		{name: "JSON second object after the first", contentType: contentTypeJSON, body: append(append([]byte(nil), js...), js...), status: 400, msg: "found more after"},
		{name: "JSON garbage after the object", contentType: contentTypeJSON, body: []byte(`{} x`), status: 400, msg: "found more after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recorder{}
			lim := tc.limit
			if lim == 0 {
				lim = limit
			}
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			rec := serve(newHandler(t, lim, c).HTTPHandler(), method, tc.contentType, tc.encoding, tc.body)
			if rec.Code != tc.status {
				t.Errorf("status %d; want %d (body %.300q)", rec.Code, tc.status, rec.Body.Bytes())
			}
			if got := c.calls() > 0; got != tc.called {
				t.Errorf("consumer called: %v; want %v", got, tc.called)
			}
			// Errors in the caller's encoding when the caller's encoding is
			// known, in JSON otherwise.
			wantCT := tc.contentType
			if rec.Code == 405 || rec.Code == 415 {
				wantCT = contentTypeJSON
			}
			if got := rec.Header().Get("Content-Type"); got != wantCT {
				t.Errorf("Content-Type %q; want %q", got, wantCT)
			}
			if tc.msg != "" {
				st := decodeStatusBody(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
				if codes.Code(st.GetCode()) != codes.InvalidArgument {
					t.Errorf("status code %v; want InvalidArgument", codes.Code(st.GetCode()))
				}
				if !strings.Contains(st.GetMessage(), tc.msg) {
					t.Errorf("message %q does not name %q", st.GetMessage(), tc.msg)
				}
			}
			if rec.Header().Get("Retry-After") != "" {
				t.Errorf("Retry-After %q on a %d", rec.Header().Get("Retry-After"), rec.Code)
			}
			if tc.check != nil {
				tc.check(t, rec)
			}
		})
	}
}

// TestHTTPErrorMessageNotUTF8 checks that an error whose message is not
// UTF-8 (a decoder quoting half a character of the body) still reaches the
// client as a google.rpc.Status with its code.
func TestHTTPErrorMessageNotUTF8(t *testing.T) {
	for _, ct := range []string{contentTypeProto, contentTypeJSON} {
		c := consumerFunc(func(context.Context, *Export) error {
			return Errorf(codes.InvalidArgument, "bad value \"\xc3\"")
		})
		rec := serve(newHandler(t, 0, c).HTTPHandler(), http.MethodPost, ct, "", marshalProto(t, sampleRequest(1)))
		if ct == contentTypeJSON {
			rec = serve(newHandler(t, 0, c).HTTPHandler(), http.MethodPost, ct, "", marshalJSON(t, sampleRequest(1)))
		}
		st := decodeStatusBody(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
		if rec.Code != 400 || codes.Code(st.GetCode()) != codes.InvalidArgument || !strings.Contains(st.GetMessage(), "bad value") {
			t.Errorf("%s: %d %v %q; want 400 InvalidArgument with the message", ct, rec.Code, codes.Code(st.GetCode()), st.GetMessage())
		}
	}
}

func TestHTTPOtherPaths(t *testing.T) {
	rec := httptest.NewRecorder()
	newHandler(t, 0, &recorder{}).HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("POST /v1/metrics: %d; want 404", rec.Code)
	}
}

// FuzzHTTPTraces feeds bodies, as they are or compressed, in each content
// type and encoding through the handler: it must answer, 200, 400 or 413,
// and never panic.
func FuzzHTTPTraces(f *testing.F) {
	contentTypes := []string{contentTypeProto, contentTypeJSON}
	// Small seeds: the fuzzer minimizes each new input, and the cost grows
	// with its size.
	req := sampleRequest(1)
	req.Traces().ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().PutStr("input.value", "hi")
	pb, js := marshalProto(f, req), marshalJSON(f, req)
	spec, err := os.ReadFile("testdata/llm_export.json")
	if err != nil {
		f.Fatal(err)
	}
	for ei := range encodings {
		f.Add(uint8(0), uint8(ei), true, pb)
		f.Add(uint8(1), uint8(ei), true, js)
		f.Add(uint8(1), uint8(ei), true, spec)
		f.Add(uint8(0), uint8(ei), false, compress(f, encodings[ei], pb))
		f.Add(uint8(1), uint8(ei), false, compress(f, encodings[ei], js))
	}
	f.Add(uint8(1), uint8(0), false, nestedJSON(10))
	// Bodies of bugs fixed: an error message quoting half a character, and
	// JSON that is not UTF-8.
	f.Add(uint8(1), uint8(0), false, []byte(`{"resourceSpans": [], "x": "aéééééééééééé" x`))
	f.Add(uint8(1), uint8(0), false, []byte(`{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"stringValue": "`+"ÿ"+`"}}]}}]}`))
	f.Add(uint8(0), uint8(0), false, []byte{})

	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, ct, enc uint8, compressIt bool, body []byte) {
		contentType := contentTypes[int(ct)%len(contentTypes)]
		encoding := encodings[int(enc)%len(encodings)]
		sent := body
		if compressIt {
			sent = compress(t, encoding, body)
		}
		var got *Export
		c := consumerFunc(func(_ context.Context, e *Export) error {
			got = e
			return nil
		})
		rec := serve(newHandler(t, limit, c).HTTPHandler(), http.MethodPost, contentType, encoding, sent)
		switch rec.Code {
		case 200:
			if got == nil {
				t.Fatal("200 without calling the consumer")
			}
			if contentType == contentTypeProto && compressIt && !bytes.Equal(got.Body, body) {
				t.Fatalf("Export.Body is not the decompressed body")
			}
		case 400, 413:
			if got != nil {
				t.Fatalf("%d after calling the consumer", rec.Code)
			}
			st := decodeStatusBody(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
			if st.GetMessage() == "" || codes.Code(st.GetCode()) != codes.InvalidArgument {
				t.Fatalf("error body %v", st)
			}
		default:
			t.Fatalf("status %d: %q", rec.Code, rec.Body.Bytes())
		}
	})
}

// BenchmarkHTTPExport measures the receiving side of one typical export:
// 100 LLM spans in protobuf through the handler, to a consumer that does
// nothing.
func BenchmarkHTTPExport(b *testing.B) {
	for _, enc := range []string{"", "gzip", "zstd"} {
		name := enc
		if name == "" {
			name = "none"
		}
		b.Run("encoding="+name, func(b *testing.B) {
			body := compress(b, enc, marshalProto(b, sampleRequest(100)))
			h := newHandler(b, 0, consumerFunc(func(context.Context, *Export) error { return nil })).HTTPHandler()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if rec := serve(h, http.MethodPost, contentTypeProto, enc, body); rec.Code != 200 {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
