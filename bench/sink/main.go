// Command sink is a counting OTLP/HTTP traces endpoint for benchmarks: it
// answers every export with 200 and counts requests, spans and bytes
// (GET /stats, POST /reset). Run it with -h.
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

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/sink"
)

func main() {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:4328", "listen address; POST /v1/traces, GET /stats, POST /reset")
	decode := fs.Bool("decode", false, "decode every export with pdata, as a backend would (default: count spans from the wire format)")
	_ = fs.Parse(os.Args[1:])

	s := &sink.Sink{Decode: *decode}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("sink listening", "addr", ln.Addr().String(), "decode", *decode)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
	st := s.Stats()
	slog.Info("sink stopped", "requests", st.Requests, "spans", st.Spans)
}
