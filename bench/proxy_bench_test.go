package bench_test

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/load"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/sink"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// BenchmarkProxy is the span path end to end, in this process: an LLM-shaped
// export of 100 spans is sent over OTLP/HTTP or OTLP/gRPC, the proxy
// receives it, checks it and answers, forwards it to a counting sink (in
// batches, behind its disk queue, for "proxy", as it runs by default;
// before it answers for "proxy-memory", with --data-dir=-) and indexes it.
// "direct" sends the same straight to the sink: the client's and the
// sink's share of the cost, to subtract. One op is one export; ns/span is
// the wall time per span until the sink has them all. Profile the proxy
// with
//
//	go test -run '^$' -bench 'Proxy/proxy/http/gzip' -cpuprofile cpu.pprof ./bench/
//
// (the profile holds the client and the sink too; bench/proxyprof profiles
// the proxy alone, in its own process).
func BenchmarkProxy(b *testing.B) {
	s := &sink.Sink{}
	upstream := httptest.NewServer(s.Handler())
	defer upstream.Close()
	gsrv := grpc.NewServer(s.GRPCServerOptions()...)
	s.RegisterGRPC(gsrv)
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = gsrv.Serve(gln) }()
	defer gsrv.Stop()

	tpl, err := workload.NewTemplate(workload.Config{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, comp := range []string{"gzip", "none"} {
		for _, target := range []string{"direct", "proxy", "proxy-memory"} {
			var p *proxy.Proxy
			if target != "direct" {
				p = startProxy(b, upstream.URL+"/v1/traces", comp, target == "proxy")
			}
			for _, proto := range []string{"http", "grpc"} {
				var endpoint string
				switch {
				case target == "direct" && proto == "grpc":
					endpoint = gln.Addr().String()
				case target == "direct":
					endpoint = upstream.URL + "/v1/traces"
				case proto == "grpc":
					endpoint = p.Addrs().OTLPGRPC
				default:
					endpoint = "http://" + p.Addrs().OTLPHTTP + "/v1/traces"
				}
				b.Run(target+"/"+proto+"/"+comp, func(b *testing.B) {
					snd, err := load.NewSender(load.Config{Protocol: proto, Endpoint: endpoint, Compression: comp})
					if err != nil {
						b.Fatal(err)
					}
					defer snd.Close()
					ctx := context.Background()
					var buf []byte
					seq := uint64(time.Now().UnixNano())
					before := s.Stats().Spans
					b.ReportAllocs()
					for b.Loop() {
						buf = tpl.Fill(buf, seq)
						seq++
						if _, err := snd.Send(ctx, buf); err != nil {
							b.Fatal(err)
						}
					}
					// Behind the disk queue, the last batch comes after the
					// last answer.
					spans := int64(b.N) * int64(tpl.Spans())
					for deadline := time.Now().Add(10 * time.Second); s.Stats().Spans-before < spans && time.Now().Before(deadline); {
						time.Sleep(time.Millisecond)
					}
					if got := s.Stats().Spans - before; got != spans {
						b.Fatalf("the sink got %d spans, want %d", got, spans)
					}
					b.SetBytes(int64(tpl.Size()))
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
				})
			}
			if p != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := p.Shutdown(ctx); err != nil {
					b.Error(err)
				}
				cancel()
			}
		}
	}
}

// startProxy starts a proxy that forwards to upstream with compression
// comp, with its durable state in a temporary directory, or in memory.
func startProxy(b *testing.B, upstream, comp string, durable bool) *proxy.Proxy {
	b.Helper()
	var cfg proxy.Config
	cfg.Receiver.GRPCAddr, cfg.Receiver.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.FeedbackAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Exporter.Endpoint = upstream
	if err := cfg.Exporter.Compression.UnmarshalText([]byte(comp)); err != nil {
		b.Fatal(err)
	}
	cfg.Phoenix.BaseURL = "http://127.0.0.1:9" // feedback is not exercised
	if durable {
		cfg.DataDir = b.TempDir()
	}
	p, err := proxy.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return p
}
