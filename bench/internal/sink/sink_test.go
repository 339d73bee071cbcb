package sink_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/sink"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
)

func TestSink(t *testing.T) {
	tpl, err := workload.NewTemplate(workload.Config{TracesPerExport: 7}, 1)
	if err != nil {
		t.Fatal(err)
	}
	body := tpl.Fill(nil, 3)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(body)
	_ = zw.Close()

	tests := []struct {
		name     string
		decode   bool
		body     []byte
		encoding string
		check    func(t *testing.T, code int, st sink.Stats)
	}{
		{name: "plain", body: body, check: func(t *testing.T, code int, st sink.Stats) {
			if code != 200 || st.Spans != int64(tpl.Spans()) || st.RawBytes != int64(len(body)) || st.WireBytes != int64(len(body)) {
				t.Errorf("code %d, stats %+v; want 200 and %d spans", code, st, tpl.Spans())
			}
		}},
		{name: "gzip, decoded", decode: true, body: gz.Bytes(), encoding: "gzip", check: func(t *testing.T, code int, st sink.Stats) {
			if code != 200 || st.Spans != int64(tpl.Spans()) || st.WireBytes != int64(gz.Len()) || st.Gzipped != 1 {
				t.Errorf("code %d, stats %+v", code, st)
			}
		}},
		{name: "garbage", body: []byte{0x0a, 0xff}, check: func(t *testing.T, code int, st sink.Stats) {
			if code != 400 || st.BadRequest != 1 || st.Spans != 0 {
				t.Errorf("code %d, stats %+v", code, st)
			}
		}},
		{name: "unknown encoding", body: body, encoding: "br", check: func(t *testing.T, code int, st sink.Stats) {
			if code != http.StatusUnsupportedMediaType {
				t.Errorf("code %d", code)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink.Sink{Decode: tt.decode}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/traces", bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			sr, err := http.Get(srv.URL + "/stats")
			if err != nil {
				t.Fatal(err)
			}
			defer sr.Body.Close()
			var st sink.Stats
			if err := json.NewDecoder(sr.Body).Decode(&st); err != nil {
				t.Fatal(err)
			}
			tt.check(t, resp.StatusCode, st)
		})
	}
}

func BenchmarkCountSpans(b *testing.B) {
	tpl, err := workload.NewTemplate(workload.Config{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	body := tpl.Fill(nil, 1)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := sink.CountSpans(body); err != nil || n != tpl.Spans() {
			b.Fatalf("CountSpans = %d, %v", n, err)
		}
	}
}

func TestSinkGRPC(t *testing.T) {
	tpl, err := workload.NewTemplate(workload.Config{TracesPerExport: 3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink.Sink{}
	srv := grpc.NewServer(s.GRPCServerOptions()...)
	s.RegisterGRPC(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := tpl.Request(5)
	if err != nil {
		t.Fatal(err)
	}
	client := ptraceotlp.NewGRPCClient(conn)
	for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor(grpcgzip.Name)}} {
		if _, err := client.Export(context.Background(), req, opts...); err != nil {
			t.Fatalf("Export: %v", err)
		}
	}
	if st := s.Stats(); st.Requests != 2 || st.Spans != int64(2*tpl.Spans()) || st.BadRequest != 0 {
		t.Errorf("stats %+v; want 2 requests of %d spans", st, tpl.Spans())
	}
	// Garbage is refused, and counted as such.
	var resp []byte
	garbage := []byte{0x0a, 0xff}
	err = conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &garbage, &resp, grpc.ForceCodec(bytesCodec{}))
	if status.Code(err) != codes.InvalidArgument || s.Stats().BadRequest != 1 {
		t.Errorf("garbage: %v, stats %+v; want InvalidArgument", err, s.Stats())
	}
}

// bytesCodec sends a *[]byte as it is.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (bytesCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append((*v.(*[]byte))[:0], data...)
	return nil
}
func (bytesCodec) Name() string { return "proto" }

// The sink takes span annotations as Phoenix does, and tells when each
// came, by response id.
func TestSinkAnnotations(t *testing.T) {
	s := &sink.Sink{}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	before := time.Now().UnixNano()
	body := `{"data":[{"span_id":"0102030405060708","name":"user feedback","annotator_kind":"HUMAN","result":{"label":"thumbs-up"},"metadata":{"response_id":"chatcmpl-1"},"identifier":""}]}`
	resp, err := http.Post(srv.URL+"/v1/span_annotations?sync=true", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(out.Data) != 1 || out.Data[0].ID == "" {
		t.Fatalf("POST /v1/span_annotations: %d %+v %v", resp.StatusCode, out, err)
	}
	resp, err = http.Get(srv.URL + "/annotations")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int64
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got["chatcmpl-1"] < before || len(got) != 1 {
		t.Errorf("GET /annotations = %v, %v; want chatcmpl-1 at or after %d", got, err, before)
	}
}
