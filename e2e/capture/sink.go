package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxExportBytes bounds one recorded export; a test app's batch is a few KB.
const maxExportBytes = 16 << 20

// export is one POST /v1/traces as received.
type export struct {
	ContentType     string
	ContentEncoding string
	Body            []byte
}

// sink is a minimal OTLP/HTTP traces receiver that keeps every request body
// byte for byte. It answers 200 with an empty body, which is a valid encoding
// of an empty ExportTraceServiceResponse (no partial success).
type sink struct {
	mu      sync.Mutex
	exports []export

	url  string
	stop func(context.Context) error
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlp sink: %w", err)
	}
	s := &sink{url: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.receive)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	s.stop = func(ctx context.Context) error {
		err := hs.Shutdown(ctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
	return s, nil
}

func (s *sink) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExportBytes))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.exports = append(s.exports, export{
		ContentType:     r.Header.Get("Content-Type"),
		ContentEncoding: r.Header.Get("Content-Encoding"),
		Body:            body,
	})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// take returns the exports received since the last call and forgets them.
func (s *sink) take() []export {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.exports
	s.exports = nil
	return out
}
