//go:build ignore

// Command serve runs an llmserver on a loopback port for sdkcheck.py. It
// prints the root URL ("http://127.0.0.1:PORT") on stdout and serves until
// stdin closes. Besides the server's APIs it answers GET /_calls with
// {"calls": Server.Calls(), "last": {provider: Server.LastIDOf(provider)}},
// so that the check can compare the ids the SDKs parsed with those issued.
//
//	go run ./internal/llmserver/testdata/serve.go
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/llmserver"
)

func main() {
	srv := llmserver.New(llmserver.Config{APIKey: os.Getenv("LLMSERVER_API_KEY")})
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.HandleFunc("GET /_calls", func(w http.ResponseWriter, _ *http.Request) {
		last := map[llmserver.Provider]string{}
		for _, p := range []llmserver.Provider{llmserver.ProviderOpenAI, llmserver.ProviderAnthropic, llmserver.ProviderGemini} {
			last[p] = srv.LastIDOf(p)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"calls": srv.Calls(), "last": last})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	fmt.Println("http://" + ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(ctx)
}
