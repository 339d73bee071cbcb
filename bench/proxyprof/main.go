// Command proxyprof runs the proxy (pkg/proxy, as cmd/proxy wires it) in
// this process with a CPU profile and, at the end, a heap profile, so that a
// load generator in another process can drive it while only the proxy's own
// work is sampled. It runs until -duration has passed or it gets SIGINT or
// SIGTERM. Run it with -h.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

func main() {
	os.Exit(run())
}

func run() int {
	var cfg proxy.Config
	fs := flag.NewFlagSet("proxyprof", flag.ExitOnError)
	fs.StringVar(&cfg.Receiver.GRPCAddr, "otlp-grpc-addr", "127.0.0.1:4317", "OTLP/gRPC listen address")
	fs.StringVar(&cfg.Receiver.HTTPAddr, "otlp-http-addr", "127.0.0.1:4318", "OTLP/HTTP listen address")
	fs.StringVar(&cfg.FeedbackAddr, "feedback-addr", "127.0.0.1:0", "feedback API listen address")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:0", "admin (/metrics) listen address")
	fs.StringVar(&cfg.Exporter.Endpoint, "upstream", "http://127.0.0.1:4328/v1/traces", "OTLP/HTTP traces URL to forward to (a sink)")
	fs.TextVar(&cfg.Exporter.Compression, "compression", otlp.Gzip, "compression upstream: gzip or none")
	fs.IntVar(&cfg.Index.MaxEntries, "index-max-entries", 0, "response ids indexed (0: the proxy's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile at the end (before shutdown, the index still in it) to this file")
	duration := fs.Duration("duration", 0, "stop after this long (0: at SIGINT or SIGTERM)")
	dataDir := fs.String("data-dir", "", "the proxy's data directory (durable state: exports through the disk queue), as cmd/proxy has one by default; \"\" makes a fresh one under the temporary directory and removes it at the end, \"-\" keeps everything in memory")
	_ = fs.Parse(os.Args[1:])
	switch *dataDir {
	case "-":
	case "":
		d, err := os.MkdirTemp("", "proxyprof-state")
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxyprof:", err)
			return 1
		}
		defer os.RemoveAll(d)
		cfg.DataDir = d
	default:
		cfg.DataDir = *dataDir
	}
	cfg.Phoenix.BaseURL = "http://127.0.0.1:1" // no feedback is sent; never dialled

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := proxy.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxyprof:", err)
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxyprof:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "proxyprof:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if err := p.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "proxyprof:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "proxyprof: listening on %+v, forwarding to %s (%s)\n", p.Addrs(), cfg.Exporter.Endpoint, cfg.Exporter.Compression)
	<-ctx.Done()
	// The heap is written before Shutdown, while the index is still held.
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err == nil {
			runtime.GC()
			err = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxyprof:", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "proxyprof: shutdown:", err)
	}
	return 0
}
