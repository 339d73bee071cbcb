// Package sink is a counting OTLP traces endpoint, over HTTP and gRPC: it
// answers every export with success and counts requests, spans and bytes,
// so that a benchmark measures what is in front of it and not the speed of
// a real backend. It is also the floor of what receiving a load costs: a
// process that only receives and counts.
//
// It also stands in for Phoenix's REST API where the proxy writes
// annotations (POST /v1/span_annotations), and notes when each arrived, so
// that a benchmark measures the time from a feedback to its annotation.
package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/protobuf/encoding/protowire"
)

// Stats are the sink's counters since it started or was last reset.
type Stats struct {
	Requests int64 `json:"requests"`
	Spans    int64 `json:"spans"`
	// WireBytes is what came over the wire; RawBytes the protobuf after
	// decompression.
	WireBytes  int64 `json:"wire_bytes"`
	RawBytes   int64 `json:"raw_bytes"`
	Gzipped    int64 `json:"gzipped_requests"`
	BadRequest int64 `json:"bad_requests"`
}

// Sink is the handler. The zero value counts spans by walking the protobuf
// wire format; with Decode it decodes every export with pdata as a real
// backend would, and refuses one that does not decode.
type Sink struct {
	Decode bool

	requests, spans, wire, raw, gzipped, bad atomic.Int64
	gzips                                    sync.Pool
	bufs                                     sync.Pool

	mu          sync.Mutex
	annotations map[string]int64 // response id -> when its annotation came, Unix ns
	annotated   int64
}

// Handler serves POST /v1/traces, GET /stats and POST /reset; and, as
// Phoenix would, POST /v1/span_annotations (noting when each annotation
// came, GET /annotations), GET /v1/projects (none), 404 for the rest of
// /v1/.
func (s *Sink) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.export)
	mux.HandleFunc("POST /v1/span_annotations", s.annotate)
	mux.HandleFunc("GET /annotations", s.listAnnotations)
	mux.HandleFunc("GET /v1/projects", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":[],"next_cursor":null}`)
	})
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"detail":"not found"}`, http.StatusNotFound)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{
		Requests: s.requests.Load(), Spans: s.spans.Load(), WireBytes: s.wire.Load(),
		RawBytes: s.raw.Load(), Gzipped: s.gzipped.Load(), BadRequest: s.bad.Load(),
	}
}

// Reset sets the counters to zero and forgets the annotations.
func (s *Sink) Reset() {
	for _, c := range []*atomic.Int64{&s.requests, &s.spans, &s.wire, &s.raw, &s.gzipped, &s.bad} {
		c.Store(0)
	}
	s.mu.Lock()
	s.annotations = nil
	s.mu.Unlock()
}

// annotate takes span annotations as Phoenix's POST /v1/span_annotations
// does, and notes when each came by the response id the proxy puts in its
// metadata.
func (s *Sink) annotate(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	var req struct {
		Data []struct {
			SpanID   string         `json:"span_id"`
			Metadata map[string]any `json:"metadata"`
		} `json:"data"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, `{"detail":"invalid body"}`, http.StatusUnprocessableEntity)
		return
	}
	type inserted struct {
		ID string `json:"id"`
	}
	out := struct {
		Data []inserted `json:"data"`
	}{Data: []inserted{}}
	s.mu.Lock()
	if s.annotations == nil {
		s.annotations = map[string]int64{}
	}
	for _, a := range req.Data {
		s.annotated++
		out.Data = append(out.Data, inserted{ID: "ann-" + strconv.FormatInt(s.annotated, 10)})
		if id, ok := a.Metadata["response_id"].(string); ok {
			if _, seen := s.annotations[id]; !seen {
				s.annotations[id] = now
			}
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// listAnnotations answers the response ids annotated and when, in Unix
// nanoseconds.
func (s *Sink) listAnnotations(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	b, err := json.Marshal(s.annotations)
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

const maxBody = 64 << 20

func (s *Sink) export(w http.ResponseWriter, r *http.Request) {
	cr := &countingReader{r: http.MaxBytesReader(w, r.Body, maxBody)}
	var rd io.Reader = cr
	switch ce := r.Header.Get("Content-Encoding"); ce {
	case "", "identity":
	case "gzip":
		zr, _ := s.gzips.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(cr)
		} else {
			err = zr.Reset(cr)
		}
		if err != nil {
			s.refuse(w, fmt.Errorf("gzip: %w", err))
			return
		}
		defer s.gzips.Put(zr)
		rd = zr
		s.gzipped.Add(1)
	default:
		s.bad.Add(1)
		http.Error(w, "Content-Encoding "+ce+" is not supported", http.StatusUnsupportedMediaType)
		return
	}
	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	defer s.bufs.Put(buf)
	body, err := readAll((*buf)[:0], io.LimitReader(rd, maxBody))
	*buf = body
	if err != nil {
		s.refuse(w, err)
		return
	}
	if err := s.count(body, cr.n); err != nil {
		s.refuse(w, err)
		return
	}
	// An empty ExportTraceServiceResponse: full success.
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// count counts an export received, of wire bytes as received: its spans
// counted, or decoded with Decode.
func (s *Sink) count(body []byte, wire int64) error {
	var n int
	var err error
	if s.Decode {
		req := ptraceotlp.NewExportRequest()
		if err = req.UnmarshalProto(body); err == nil {
			n = req.Traces().SpanCount()
		}
	} else {
		n, err = CountSpans(body)
	}
	if err != nil {
		return err
	}
	s.requests.Add(1)
	s.spans.Add(int64(n))
	s.wire.Add(wire)
	s.raw.Add(int64(len(body)))
	return nil
}

func (s *Sink) refuse(w http.ResponseWriter, err error) {
	s.bad.Add(1)
	http.Error(w, "cannot read the export: "+err.Error(), http.StatusBadRequest)
}

// readAll is io.ReadAll into a reused buffer.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// Field numbers of the OTLP trace messages on the path to a span
// (opentelemetry/proto/collector/trace/v1 and trace/v1).
const (
	fieldResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	fieldScopeSpans    = 2 // ResourceSpans.scope_spans
	fieldSpans         = 2 // ScopeSpans.spans
)

var errMalformed = errors.New("malformed protobuf")

// CountSpans counts the spans in an encoded ExportTraceServiceRequest
// without decoding them.
func CountSpans(b []byte) (int, error) {
	n := 0
	err := eachField(b, fieldResourceSpans, func(rs []byte) error {
		return eachField(rs, fieldScopeSpans, func(ss []byte) error {
			return eachField(ss, fieldSpans, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls fn with the value of every length-delimited field num in
// the message b, and skips the other fields.
func eachField(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errMalformed
			}
			if err := fn(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
	}
	return nil
}
