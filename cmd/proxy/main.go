// Command proxy is the feedback sidecar: an OTLP endpoint that passes
// traces through to Arize Phoenix and writes user feedback, sent by response
// id, onto the LLM span that produced the response. Run it with --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func getenvMemLimit() string { return os.Getenv("GOMEMLIMIT") }

func run(args []string) int {
	o, err := parseConfig(args, os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: o.logLevel}
	var log *slog.Logger
	if o.logJSON {
		log = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	} else {
		log = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	}

	p, err := proxy.New(o.cfg, log)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	// The heap may grow to twice what is live before Go collects; held at
	// the most the proxy can be made to hold, it stays there under attack.
	bound := proxy.MemoryBound(o.cfg)
	if getenvMemLimit() == "" {
		debug.SetMemoryLimit(bound)
		log.Info("memory: soft limit set to the most the proxy can be made to hold; GOMEMLIMIT overrides it", "limit_mib", bound>>20)
	} else {
		log.Info("memory: GOMEMLIMIT set by the environment", "gomemlimit", getenvMemLimit(), "bound_mib", bound>>20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Start(ctx); err != nil {
		msg := "cannot start"
		if errors.Is(err, syscall.EADDRINUSE) {
			msg = "cannot start: another process is using the port (see --help to move it)"
		}
		log.Error(msg, "err", err)
		return 1
	}
	<-ctx.Done()
	stop()
	log.Info("shutting down", "timeout", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
