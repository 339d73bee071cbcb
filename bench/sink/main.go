// Command sink is a counting OTLP traces endpoint for benchmarks, over
// HTTP and gRPC: it answers every export with success and counts requests,
// spans and bytes (GET /stats, POST /reset); it also takes Phoenix's span
// annotations and notes when each came (GET /annotations). Run it with -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/sink"
)

func main() {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:4328", "HTTP listen address: POST /v1/traces, GET /stats, POST /reset, and Phoenix's POST /v1/span_annotations (GET /annotations: when each came)")
	grpcAddr := fs.String("grpc-addr", "", "OTLP/gRPC listen address (TraceService/Export); none if empty")
	decode := fs.Bool("decode", false, "decode every export with pdata, as a backend would (default: count spans from the wire format)")
	_ = fs.Parse(os.Args[1:])

	s := &sink.Sink{Decode: *decode}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
	var gsrv *grpc.Server
	if *grpcAddr != "" {
		gln, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
		gsrv = grpc.NewServer(s.GRPCServerOptions()...)
		s.RegisterGRPC(gsrv)
		go func() { _ = gsrv.Serve(gln) }()
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if gsrv != nil {
			gsrv.Stop()
		}
	}()
	slog.Info("sink listening", "addr", ln.Addr().String(), "grpc", *grpcAddr, "decode", *decode)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
	st := s.Stats()
	slog.Info("sink stopped", "requests", st.Requests, "spans", st.Spans)
}
