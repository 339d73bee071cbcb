package sink_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

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
