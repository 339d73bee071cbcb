package load_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/load"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/sink"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
)

// counter is an OTLP consumer that counts spans.
type counter struct{ spans chan int }

func (c *counter) ConsumeTraces(_ context.Context, e *otlp.Export) error {
	c.spans <- e.Spans
	return nil
}

func TestRun(t *testing.T) {
	s := &sink.Sink{Decode: true}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	c := &counter{spans: make(chan int, 100)}
	recv, err := otlp.NewReceiver(otlp.ReceiverConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: "-"}, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer recv.Shutdown(context.Background())

	wl := workload.Config{TracesPerExport: 2}
	tests := []struct {
		name  string
		cfg   load.Config
		check func(t *testing.T, rep load.Report)
	}{
		{
			name: "http gzip, bounded count",
			cfg:  load.Config{Protocol: "http", Endpoint: srv.URL + "/v1/traces", Compression: "gzip", MaxExports: 5, Workload: wl},
			check: func(t *testing.T, rep load.Report) {
				if rep.Exports != 5 || rep.Spans != 50 || rep.Failed != 0 || rep.WireBytes >= rep.RawBytes {
					t.Errorf("report %+v: want 5 exports of 10 spans, compressed", rep)
				}
				if st := s.Stats(); st.Spans != 50 || st.Gzipped != 5 {
					t.Errorf("sink %+v, want 50 spans in 5 gzipped requests", st)
				}
			},
		},
		{
			name: "grpc, fixed rate for a duration",
			cfg: load.Config{Protocol: "grpc", Endpoint: recv.GRPCAddr().String(), Compression: "none",
				Rate: 200, Duration: 500 * time.Millisecond, Workload: wl},
			check: func(t *testing.T, rep load.Report) {
				// 200 spans/s in exports of 10 for half a second: about 10.
				if rep.Exports < 5 || rep.Exports > 12 || rep.Failed != 0 || rep.P50ms <= 0 {
					t.Errorf("report %+v: want about 10 exports, none failed, latencies", rep)
				}
				got := 0
				for range rep.Exports {
					got += <-c.spans
				}
				if got != int(rep.Spans) {
					t.Errorf("receiver got %d spans, report says %d", got, rep.Spans)
				}
			},
		},
		{
			name: "failures are counted and reported",
			cfg:  load.Config{Protocol: "http", Endpoint: srv.URL + "/nowhere", Compression: "none", MaxExports: 2, Workload: wl},
			check: func(t *testing.T, rep load.Report) {
				if rep.Failed != 2 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0], "HTTP 404") {
					t.Errorf("report %+v: want 2 failures, HTTP 404", rep)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := load.Run(context.Background(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, rep)
		})
	}
}

func TestValidate(t *testing.T) {
	err := load.Config{Protocol: "udp", Compression: "br"}.Validate()
	for _, want := range []string{"protocol", "compression", "endpoint", "must end by itself"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a word on %s", err, want)
		}
	}
}
