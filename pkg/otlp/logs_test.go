package otlp

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// sampleLogs returns n log records shaped like evaluation events, in one
// resource and scope.
func sampleLogs(n int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "support-bot")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("feedback")
	for i := range n {
		rec := sl.LogRecords().AppendEmpty()
		rec.SetEventName("gen_ai.evaluation.result")
		rec.SetTimestamp(1_700_000_000_000_000_000)
		rec.Attributes().PutStr("gen_ai.response.id", "chatcmpl-"+strconv.Itoa(i))
		rec.Attributes().PutDouble("gen_ai.evaluation.score.value", 1)
		rec.Attributes().PutStr("gen_ai.evaluation.score.label", "thumbs-up")
	}
	return ld
}

func logsProto(t testing.TB, ld plog.Logs) []byte {
	t.Helper()
	b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func logsJSON(t testing.TB, ld plog.Logs) []byte {
	t.Helper()
	b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logsRecorder is a LogsConsumer that keeps the record counts it was given,
// rejects one record in each export with more than one, and answers err;
// with a token, it wants "Bearer <token>".
type logsRecorder struct {
	token string
	err   error

	mu      sync.Mutex
	records []int
}

func (c *logsRecorder) Authorize(auth string) error {
	if c.token != "" && auth != "Bearer "+c.token {
		return Errorf(codes.Unauthenticated, "wrong token")
	}
	return nil
}

func (c *logsRecorder) ConsumeLogs(_ context.Context, l Logs) (LogsResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, l.Logs.LogRecordCount())
	if c.err != nil {
		return LogsResult{}, c.err
	}
	if l.Logs.LogRecordCount() > 1 {
		return LogsResult{Rejected: 1, Message: "one is not an evaluation"}, nil
	}
	return LogsResult{}, nil
}

func (c *logsRecorder) calls() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.records...)
}

// newLogsReceiver returns a receiver with logs, never started, for its
// HTTP handler.
func newLogsReceiver(t testing.TB, cfg ReceiverConfig, c LogsConsumer) *Receiver {
	t.Helper()
	cfg.GRPCAddr, cfg.HTTPAddr = "-", "127.0.0.1:0"
	r, err := NewReceiver(cfg, &recorder{}, nil, nil, WithLogs(c))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// postLogs sends one request to the handler's /v1/logs.
func postLogs(h http.Handler, method, contentType, encoding string, body []byte, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, LogsPath, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
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

// decodeLogsResponse decodes a 200 answer in the encoding it names.
func decodeLogsResponse(t testing.TB, rec *httptest.ResponseRecorder) plogotlp.ExportResponse {
	t.Helper()
	resp := plogotlp.NewExportResponse()
	var err error
	switch ct := rec.Header().Get("Content-Type"); ct {
	case contentTypeProto:
		err = resp.UnmarshalProto(rec.Body.Bytes())
	case contentTypeJSON:
		err = resp.UnmarshalJSON(rec.Body.Bytes())
	default:
		t.Fatalf("answer has Content-Type %q", ct)
	}
	if err != nil {
		t.Fatalf("answer %q is not an ExportLogsServiceResponse: %v", rec.Body.Bytes(), err)
	}
	return resp
}

// emptyRecords is an export of n empty log records: two bytes each on the
// wire, the most pdata allocates per byte.
func emptyRecords(n int) []byte {
	records := bytes.Repeat([]byte{0x12, 0x00}, n) // log_records {}
	scope := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), records)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), scope)
}

// nestedLogs is an export whose one record's body nests n arrays deep.
func nestedLogs(n int) []byte {
	v := []byte{0x0a, 0x01, 'x'} // string_value "x"
	for range n {
		arr := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), v) // ArrayValue.values
		v = protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), arr)  // AnyValue.array_value
	}
	rec := protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), v) // LogRecord.body
	scope := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), rec)
	rl := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), scope)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rl)
}

func TestHTTPLogs(t *testing.T) {
	pb := logsProto(t, sampleLogs(3))
	js := logsJSON(t, sampleLogs(3))
	zeros := make([]byte, 1<<20)
	fat := emptyRecords(100_000) // 200 KB, ~25 MB to decode
	fatCost, err := logsProtoCost(fat)
	if err != nil {
		t.Fatal(err)
	}
	huge := sampleLogs(1)
	huge.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().PutStr("huge", strings.Repeat("x", 3<<20))
	hugePB := logsProto(t, huge)

	for _, tc := range []struct {
		name        string
		cfg         ReceiverConfig
		hold        int64 // bytes of the budget another export holds
		consumer    *logsRecorder
		method      string
		contentType string
		encoding    string
		header      http.Header
		body        []byte
		status      int
		msg         string // what the error message must hold; for 200, the partial success's
		rejected    int64
		records     []int // the record counts the consumer was given
	}{
		{name: "protobuf", contentType: contentTypeProto, body: pb, status: 200, rejected: 1, msg: "one is not an evaluation", records: []int{3}},
		{name: "JSON", contentType: contentTypeJSON, body: js, status: 200, rejected: 1, msg: "one is not an evaluation", records: []int{3}},
		{name: "all taken: no partial success", contentType: contentTypeProto, body: logsProto(t, sampleLogs(1)), status: 200, records: []int{1}},
		{name: "gzip", contentType: contentTypeProto, encoding: "gzip", body: compress(t, "gzip", pb), status: 200, rejected: 1, records: []int{3}},
		{name: "deflate", contentType: contentTypeProto, encoding: "deflate", body: compress(t, "deflate", pb), status: 200, rejected: 1, records: []int{3}},
		{name: "zstd", contentType: contentTypeJSON, encoding: "zstd", body: compress(t, "zstd", js), status: 200, rejected: 1, records: []int{3}},
		{name: "empty export", contentType: contentTypeProto, body: nil, status: 200, records: []int{0}},

		{name: "GET", method: http.MethodGet, status: 405, msg: "GET /v1/logs is not supported; send POST"},
		{name: "no content type", body: pb, status: 415, msg: contentTypeProto},
		{name: "malformed protobuf", contentType: contentTypeProto, body: []byte{0x0a, 0xff, 0xff, 0xff, 0x0f}, status: 400,
			msg: "cannot decode the application/x-protobuf body as an OTLP logs export"},
		{name: "protobuf truncated", contentType: contentTypeProto, body: pb[:len(pb)/2], status: 400, msg: "cannot decode"},
		{name: "a message field of another wire type", contentType: contentTypeProto, body: []byte{0x08, 0x01}, status: 400, msg: "wire type"},
		{name: "values nested past pdata's limit", contentType: contentTypeProto, body: nestedLogs(60), status: 400, msg: "nested more than 100 deep"},
		{name: "values nested within pdata's limit", contentType: contentTypeProto, body: nestedLogs(49), status: 200, records: []int{1}},
		{name: "malformed JSON", contentType: contentTypeJSON, body: []byte(`{"resourceLogs":[`), status: 400, msg: "cannot decode the application/json body as an OTLP logs export"},
		{name: "JSON not UTF-8", contentType: contentTypeJSON, body: []byte("{\"resourceLogs\":[{\"schemaUrl\":\"\xff\"}]}"), status: 400, msg: "UTF-8"},
		{name: "JSON after the object", contentType: contentTypeJSON, body: append(bytes.Clone(js), " {}"...), status: 400, msg: "found more after"},
		{name: "unknown Content-Encoding", contentType: contentTypeProto, encoding: "br", body: pb, status: 400, msg: `"br"`},
		{name: "corrupt gzip", contentType: contentTypeProto, encoding: "gzip", body: corrupt(compress(t, "gzip", pb)), status: 400, msg: "gzip"},
		{name: "gzip bomb", cfg: ReceiverConfig{MaxRequestBytes: 64 << 10}, contentType: contentTypeProto, encoding: "gzip",
			body: compress(t, "gzip", zeros), status: 413, msg: "over the limit"},
		{name: "zstd bomb", cfg: ReceiverConfig{MaxRequestBytes: 64 << 10}, contentType: contentTypeProto, encoding: "zstd",
			body: compress(t, "zstd", zeros), status: 413, msg: "limit"},
		{name: "body over the limit", cfg: ReceiverConfig{MaxRequestBytes: int64(len(pb)) - 1}, contentType: contentTypeProto, body: pb, status: 413, msg: "over the limit"},
		{name: "fat: more to decode than the budget", cfg: ReceiverConfig{MaxInflightBytes: fatCost - 1}, contentType: contentTypeProto, body: fat,
			status: 413, msg: "may take " + strconv.FormatInt(fatCost, 10) + " to decode"},
		{name: "fat and gzipped", cfg: ReceiverConfig{MaxInflightBytes: fatCost - 1}, contentType: contentTypeProto, encoding: "gzip",
			body: compress(t, "gzip", fat), status: 413, msg: "to decode"},
		{name: "fat JSON", cfg: ReceiverConfig{MaxInflightBytes: 1 << 20}, contentType: contentTypeJSON,
			body: []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + strings.Repeat(`{},`, 10_000) + `{}]}]}]}`), status: 413, msg: "to decode"},
		// The decoding fits the budget, not beside another export.
		{name: "fat: budget spent", cfg: ReceiverConfig{MaxInflightBytes: 2 * fatCost}, hold: fatCost, contentType: contentTypeProto, body: fat,
			status: 429, msg: "in-flight export bytes"},
		{name: "fat within the budget", cfg: ReceiverConfig{MaxInflightBytes: 2 * fatCost}, contentType: contentTypeProto, body: fat,
			status: 200, rejected: 1, records: []int{100_000}},
		{name: "huge attribute", cfg: ReceiverConfig{MaxRequestBytes: 4 << 20}, contentType: contentTypeProto, body: hugePB, status: 200, records: []int{1}},
		{name: "huge attribute over the budget", cfg: ReceiverConfig{MaxRequestBytes: 4 << 20, MaxInflightBytes: 8 << 20}, hold: 4 << 20,
			contentType: contentTypeProto, body: hugePB, status: 429, msg: "in-flight export bytes"},

		{name: "no token", consumer: &logsRecorder{token: "s3cret"}, contentType: contentTypeProto, body: pb, status: 401, msg: "wrong token"},
		{name: "token", consumer: &logsRecorder{token: "s3cret"}, contentType: contentTypeProto, header: http.Header{"Authorization": {"Bearer s3cret"}},
			body: pb, status: 200, rejected: 1, records: []int{3}},
		{name: "consumer full", consumer: &logsRecorder{err: &Error{Code: codes.ResourceExhausted, RetryAfter: 5 * time.Second, Msg: "full"}},
			contentType: contentTypeProto, body: pb, status: 429, msg: "full", records: []int{3}},
		{name: "consumer cannot store", consumer: &logsRecorder{err: &Error{Code: codes.Unavailable, RetryAfter: 5 * time.Second, Msg: "disk"}},
			contentType: contentTypeJSON, body: js, status: 503, msg: "disk", records: []int{3}},
		{name: "consumer refuses", consumer: &logsRecorder{err: Errorf(codes.InvalidArgument, "bad")}, contentType: contentTypeProto, body: pb,
			status: 400, msg: "bad", records: []int{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.consumer == nil {
				tc.consumer = &logsRecorder{}
			}
			if tc.method == "" {
				tc.method = http.MethodPost
			}
			r := newLogsReceiver(t, tc.cfg, tc.consumer)
			other := r.budget.Reserve()
			if !other.Grow(tc.hold) {
				t.Fatal("cannot hold the budget")
			}
			defer other.Release()
			rec := postLogs(r.HTTPHandler(), tc.method, tc.contentType, tc.encoding, tc.body, tc.header)
			if rec.Code != tc.status {
				t.Fatalf("status %d %s; want %d", rec.Code, rec.Body.Bytes(), tc.status)
			}
			if got := tc.consumer.calls(); len(got) != len(tc.records) || (len(got) > 0 && got[0] != tc.records[0]) {
				t.Errorf("consumer given %v records; want %v", got, tc.records)
			}
			if tc.status == 200 {
				resp := decodeLogsResponse(t, rec)
				if want := tc.contentType; rec.Header().Get("Content-Type") != want {
					t.Errorf("answered in %s; want %s", rec.Header().Get("Content-Type"), want)
				}
				ps := resp.PartialSuccess()
				if ps.RejectedLogRecords() != tc.rejected || !strings.Contains(ps.ErrorMessage(), tc.msg) {
					t.Errorf("partial success %d %q; want %d with %q", ps.RejectedLogRecords(), ps.ErrorMessage(), tc.rejected, tc.msg)
				}
				return
			}
			ct := rec.Header().Get("Content-Type")
			st := decodeStatusBody(t, ct, rec.Body.Bytes())
			if !strings.Contains(st.GetMessage(), tc.msg) {
				t.Errorf("message %q; want it to hold %q", st.GetMessage(), tc.msg)
			}
			if tc.contentType != "" && ct != tc.contentType {
				t.Errorf("error in %s; want the caller's %s", ct, tc.contentType)
			}
			if retryable := tc.status == 429 || tc.status == 503; retryable != (rec.Header().Get("Retry-After") != "") {
				t.Errorf("Retry-After %q on %d", rec.Header().Get("Retry-After"), tc.status)
			}
			if tc.status == 429 && tc.consumer.err != nil && rec.Header().Get("Retry-After") != "5" {
				t.Errorf("Retry-After %q; want the consumer's 5", rec.Header().Get("Retry-After"))
			}
		})
	}
}

// TestLogsBudgetGivenBack checks that every path gives the budget back.
func TestLogsBudgetGivenBack(t *testing.T) {
	fat := emptyRecords(10_000)
	cost, err := logsProtoCost(fat)
	if err != nil {
		t.Fatal(err)
	}
	r := newLogsReceiver(t, ReceiverConfig{MaxInflightBytes: 4 * cost}, &logsRecorder{})
	h := r.HTTPHandler()
	for _, body := range [][]byte{fat, {0x0a, 0xff}, compress(t, "gzip", make([]byte, 1<<20)), nil} {
		postLogs(h, http.MethodPost, contentTypeProto, "", body, nil)
		postLogs(h, http.MethodPost, contentTypeJSON, "", body, nil)
		if used := r.budget.Used(); used != 0 {
			t.Fatalf("%d bytes of the budget still held after a request", used)
		}
	}
}

func TestLogsNotServedWithoutConsumer(t *testing.T) {
	r := newHandler(t, 1<<20, &recorder{})
	rec := postLogs(r.HTTPHandler(), http.MethodPost, contentTypeProto, "", logsProto(t, sampleLogs(1)), nil)
	if rec.Code != http.StatusNotFound {
		t.Errorf("POST /v1/logs without WithLogs: %d; want 404", rec.Code)
	}

	rg := startReceiver(t, ReceiverConfig{HTTPAddr: "-"}, &recorder{}, nil)
	_, err := logsClient(t, rg).Export(context.Background(), plogotlp.NewExportRequestFromLogs(sampleLogs(1)))
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("LogsService/Export without WithLogs: %v; want Unimplemented", err)
	}
}

// logsClient dials the receiver's gRPC listener for logs.
func logsClient(t testing.TB, r *Receiver) plogotlp.GRPCClient {
	t.Helper()
	conn, err := grpc.NewClient(r.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return plogotlp.NewGRPCClient(conn)
}

func TestGRPCLogs(t *testing.T) {
	fat := plog.NewLogs()
	sl := fat.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	for range 100_000 {
		sl.LogRecords().AppendEmpty()
	}
	for _, tc := range []struct {
		name     string
		cfg      ReceiverConfig
		consumer *logsRecorder
		ld       plog.Logs
		opts     []grpc.CallOption
		md       metadata.MD
		code     codes.Code
		msg      string // the error's, or the partial success's
		rejected int64
		retry    time.Duration // the RetryInfo the error must carry
	}{
		{name: "export", ld: sampleLogs(3), rejected: 1, msg: "one is not an evaluation"},
		{name: "gzip", ld: sampleLogs(3), opts: []grpc.CallOption{grpc.UseCompressor(gzip.Name)}, rejected: 1},
		{name: "all taken", ld: sampleLogs(1)},
		{name: "no token", consumer: &logsRecorder{token: "s3cret"}, ld: sampleLogs(1), code: codes.Unauthenticated, msg: "wrong token"},
		{name: "token", consumer: &logsRecorder{token: "s3cret"}, ld: sampleLogs(1), md: metadata.Pairs("authorization", "Bearer s3cret")},
		{name: "consumer full", consumer: &logsRecorder{err: &Error{Code: codes.ResourceExhausted, RetryAfter: 5 * time.Second, Msg: "full"}},
			ld: sampleLogs(1), code: codes.ResourceExhausted, msg: "full", retry: 5 * time.Second},
		{name: "consumer cannot store", consumer: &logsRecorder{err: &Error{Code: codes.Unavailable, RetryAfter: 5 * time.Second, Msg: "disk"}},
			ld: sampleLogs(1), code: codes.Unavailable, msg: "disk", retry: 5 * time.Second},
		{name: "fat: more to decode than the budget", cfg: ReceiverConfig{MaxInflightBytes: 8 << 20}, ld: fat, code: codes.InvalidArgument, msg: "to decode"},
		{name: "over the request limit", cfg: ReceiverConfig{MaxRequestBytes: 1 << 10}, ld: sampleLogs(100), code: codes.ResourceExhausted, msg: "larger than max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.consumer == nil {
				tc.consumer = &logsRecorder{}
			}
			cfg := tc.cfg
			cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "-"
			r, err := NewReceiver(cfg, &recorder{}, nil, nil, WithLogs(tc.consumer))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
			ctx := context.Background()
			if tc.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, tc.md)
			}
			resp, err := logsClient(t, r).Export(ctx, plogotlp.NewExportRequestFromLogs(tc.ld), tc.opts...)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("Export: %v; want %s", err, tc.code)
			}
			if tc.code != codes.OK {
				if !strings.Contains(st.Message(), tc.msg) {
					t.Errorf("message %q; want it to hold %q", st.Message(), tc.msg)
				}
				var retry time.Duration
				for _, d := range st.Details() {
					if ri, ok := d.(*errdetails.RetryInfo); ok {
						retry = ri.GetRetryDelay().AsDuration()
					}
				}
				if tc.retry != 0 && retry != tc.retry {
					t.Errorf("RetryInfo %s; want %s", retry, tc.retry)
				}
				return
			}
			ps := resp.PartialSuccess()
			if ps.RejectedLogRecords() != tc.rejected || !strings.Contains(ps.ErrorMessage(), tc.msg) {
				t.Errorf("partial success %d %q; want %d with %q", ps.RejectedLogRecords(), ps.ErrorMessage(), tc.rejected, tc.msg)
			}
			if got := tc.consumer.calls(); len(got) != 1 || got[0] != tc.ld.LogRecordCount() {
				t.Errorf("consumer given %v records; want one export of %d", got, tc.ld.LogRecordCount())
			}
		})
	}
}

// FuzzGRPCLogs feeds arbitrary bytes to the gRPC logs handler. It must
// never panic, answer OK exactly when pdata decodes the message (the cost
// walk refuses nothing pdata takes), and InvalidArgument otherwise.
func FuzzGRPCLogs(f *testing.F) {
	f.Add(logsProto(f, sampleLogs(3)))
	f.Add([]byte{})
	f.Add(emptyRecords(3))
	f.Add(nestedLogs(3))
	f.Add([]byte{0x0a, 0x03, 0x1b, 0x08, 0x00})                   // a group in a resource_logs
	f.Add([]byte{0x0a, 0x04, 0x12, 0x02, 0x3a, 0x00})             // logs in instrumentation_library_logs' place
	f.Add([]byte{0x0a, 0x06, 0x0a, 0x04, 0x1a, 0x02, 0x1a, 0x00}) // an entity ref
	f.Fuzz(func(t *testing.T, body []byte) {
		// A message that starts as gzip does is taken for gzip (keepGzip).
		plain := body
		if isGzip(body) {
			zr, err := stdgzip.NewReader(bytes.NewReader(body))
			if err != nil {
				plain = nil
			} else if plain, err = io.ReadAll(zr); err != nil {
				plain = nil
			}
		}
		pdataErr := plogotlp.NewExportRequest().UnmarshalProto(plain)
		if plain == nil {
			pdataErr = errors.New("not gzip")
		}
		c := &logsRecorder{}
		r, err := NewReceiver(ReceiverConfig{HTTPAddr: "-", GRPCAddr: "127.0.0.1:0", MaxInflightBytes: 64 << 20}, &recorder{}, nil, nil, WithLogs(c))
		if err != nil {
			t.Fatal(err)
		}
		m, bufs, err := r.open(body)
		if err == nil {
			_, err = (&grpcLogs{r: r}).handle(context.Background(), m)
		}
		bufs.release()
		m.res.Release()
		if err == nil {
			if len(c.calls()) != 1 {
				t.Fatal("answered OK without handing the export on")
			}
			if pdataErr != nil {
				t.Fatalf("took a message pdata refuses (%v)", pdataErr)
			}
			return
		}
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
			t.Fatalf("answered %v; want InvalidArgument", err)
		}
		if pdataErr == nil {
			t.Fatalf("refused a message pdata takes: %v", err)
		}
	})
}
