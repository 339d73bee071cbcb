// Package load sends LLM-shaped OTLP trace exports to an endpoint, over
// OTLP/gRPC or OTLP/HTTP, at a fixed rate or as fast as the endpoint takes
// them, and reports what it sent and how long each export took.
package load

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/workload"
)

// Config says what to send where.
type Config struct {
	// Protocol is "http" or "grpc".
	Protocol string
	// Endpoint is a URL for HTTP ("http://127.0.0.1:4318/v1/traces") and
	// host:port for gRPC.
	Endpoint string
	// Compression is "gzip" or "none".
	Compression string
	// Rate is the spans per second to send; zero means as fast as the
	// endpoint answers.
	Rate float64
	// Duration bounds the run; MaxExports, when positive, bounds it too.
	Duration   time.Duration
	MaxExports int64
	// Concurrency is the number of exports in flight at most; zero means 4.
	Concurrency int
	// Timeout bounds one export; zero means 10s.
	Timeout time.Duration
	// Project, when set, is sent as the x-project-name header.
	Project  string
	Workload workload.Config
	// Seed makes the ids differ between runs; SeqStart is the sequence
	// number of the first export.
	Seed     uint64
	SeqStart uint64
	// Feedback, when its Rate is set, sends feedback for the responses
	// exported and measures how long each takes to become an annotation.
	Feedback FeedbackConfig
}

// FeedbackConfig says how to send feedback, as an app's users would, for
// the responses the run exports, and where to learn when each became an
// annotation in Phoenix.
type FeedbackConfig struct {
	// Rate is the feedbacks per second: each for the first response of an
	// export the endpoint has just answered, Delay after the answer.
	Rate  float64
	Delay time.Duration
	// URL is the proxy's POST /feedback; Token its bearer token.
	URL, Token string
	// AnnotationsURL answers, as bench/internal/sink does, a JSON object
	// from response id to when its annotation came (Unix nanoseconds).
	AnnotationsURL string
	// Wait bounds how long the run waits, once the load is sent, for the
	// annotations still to come; zero means 30 s.
	Wait time.Duration
}

// Report is what a run sent and how it went.
type Report struct {
	Protocol       string  `json:"protocol"`
	Compression    string  `json:"compression"`
	Shape          string  `json:"shape"`
	SpansPerExport int     `json:"spans_per_export"`
	ExportBytes    int     `json:"export_bytes"`
	RateTarget     float64 `json:"rate_target"`
	Exports        int64   `json:"exports"`
	Spans          int64   `json:"spans"`
	Failed         int64   `json:"failed"`
	// RawBytes is the protobuf sent, WireBytes after compression.
	RawBytes  int64   `json:"raw_bytes"`
	WireBytes int64   `json:"wire_bytes"`
	Seconds   float64 `json:"seconds"`
	SpansPerS float64 `json:"spans_per_s"`
	// Late counts exports the pacer could not start on time because every
	// worker was busy: a fixed-rate run with Late > 0 fell behind its rate.
	Late int64 `json:"late"`
	// Export latencies of successful exports, in milliseconds.
	P50ms  float64  `json:"p50_ms"`
	P99ms  float64  `json:"p99_ms"`
	Maxms  float64  `json:"max_ms"`
	Errors []string `json:"errors,omitempty"`
	// Feedback, when it was sent.
	Feedback *FeedbackReport `json:"feedback,omitempty"`
}

// FeedbackReport is what became of the feedback sent: how many, how many
// were annotated, and the time from each POST /feedback to its annotation
// in Phoenix.
type FeedbackReport struct {
	Sent      int      `json:"sent"`
	Refused   int      `json:"refused"` // answered other than 202
	Annotated int      `json:"annotated"`
	P50ms     float64  `json:"p50_ms"`
	P99ms     float64  `json:"p99_ms"`
	Maxms     float64  `json:"max_ms"`
	Errors    []string `json:"errors,omitempty"`
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	var errs []error
	switch c.Protocol {
	case "http", "grpc":
	default:
		errs = append(errs, fmt.Errorf("protocol %q: expected http or grpc", c.Protocol))
	}
	switch c.Compression {
	case "gzip", "none":
	default:
		errs = append(errs, fmt.Errorf("compression %q: expected gzip or none", c.Compression))
	}
	if c.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: required"))
	}
	if c.Duration <= 0 && c.MaxExports <= 0 {
		errs = append(errs, errors.New("give a duration or a maximum count of exports: a run must end by itself"))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g: expected spans per second, or 0 for as fast as possible", c.Rate))
	}
	return errors.Join(errs...)
}

// Sender sends encoded exports to cfg's endpoint, as an SDK's exporter
// does (compressing them when cfg says so).
type Sender interface {
	// Send sends one export and returns the bytes put on the wire.
	Send(ctx context.Context, body []byte) (wire int, err error)
	Close()
}

// NewSender returns the sender for cfg's protocol.
func NewSender(cfg Config) (Sender, error) {
	cfg.setDefaults()
	if cfg.Protocol == "grpc" {
		return newGRPCSender(cfg)
	}
	return newHTTPSender(cfg), nil
}

// Run sends exports until cfg's duration or count is reached, or ctx ends.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	cfg.setDefaults()
	tpl, err := workload.NewTemplate(cfg.Workload, cfg.Seed)
	if err != nil {
		return Report{}, err
	}
	snd, err := NewSender(cfg)
	if err != nil {
		return Report{}, err
	}
	defer snd.Close()

	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}

	r := &run{cfg: cfg, tpl: tpl, snd: snd}
	r.seq.Store(cfg.SeqStart)
	var tokens chan struct{}
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		tokens = make(chan struct{}, cfg.Concurrency)
		wg.Go(func() { r.pace(ctx, tokens) })
	}
	if cfg.Feedback.Rate > 0 {
		r.fb = newFeedbacker(cfg.Feedback)
		wg.Go(func() { r.fb.pace(ctx) })
	}
	workers := make([]*worker, cfg.Concurrency)
	start := time.Now()
	for i := range workers {
		w := &worker{}
		workers[i] = w
		wg.Go(func() { r.work(ctx, w, tokens) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep := r.report(workers, elapsed)
	if r.fb != nil {
		rep.Feedback = r.fb.finish(context.WithoutCancel(ctx))
	}
	return rep, nil
}

type run struct {
	cfg     Config
	tpl     *workload.Template
	snd     Sender
	seq     atomic.Uint64
	claimed atomic.Int64
	late    atomic.Int64
	fb      *feedbacker // nil without feedback
}

type worker struct {
	lat          []time.Duration
	exports      int64
	failed       int64
	raw, wire    int64
	errors       []string
	buf          []byte
	distinctErrs int
}

// pace hands out one token per export at the configured rate. A token that
// finds every worker busy is counted late and dropped, so the run shows it
// fell behind instead of sending a burst later.
func (r *run) pace(ctx context.Context, tokens chan<- struct{}) {
	defer close(tokens)
	interval := time.Duration(float64(time.Second) * float64(r.tpl.Spans()) / r.cfg.Rate)
	next := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for now := time.Now(); !next.After(now); next = next.Add(interval) {
			select {
			case tokens <- struct{}{}:
			default:
				r.late.Add(1)
			}
		}
		t.Reset(time.Until(next))
	}
}

func (r *run) work(ctx context.Context, w *worker, tokens <-chan struct{}) {
	for {
		if tokens != nil {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-tokens:
				if !ok {
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if r.cfg.MaxExports > 0 && r.claimed.Add(1) > r.cfg.MaxExports {
			return
		}
		seq := r.seq.Add(1) - 1
		w.buf = r.tpl.Fill(w.buf, seq)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		start := time.Now()
		wire, err := r.snd.Send(sctx, w.buf)
		d := time.Since(start)
		cancel()
		w.exports++
		w.raw += int64(len(w.buf))
		w.wire += int64(wire)
		if err != nil {
			w.failed++
			if w.distinctErrs < 5 && !slices.Contains(w.errors, err.Error()) {
				w.errors = append(w.errors, err.Error())
				w.distinctErrs++
			}
			continue
		}
		w.lat = append(w.lat, d)
		if r.fb != nil && r.fb.due() {
			if ids := r.tpl.ResponseIDs(seq); len(ids) > 0 {
				r.fb.send(ids[0])
			}
		}
	}
}

func (r *run) report(workers []*worker, elapsed time.Duration) Report {
	rep := Report{
		Protocol: r.cfg.Protocol, Compression: r.cfg.Compression, Shape: string(r.tpl.Config().Shape),
		SpansPerExport: r.tpl.Spans(), ExportBytes: r.tpl.Size(), RateTarget: r.cfg.Rate,
		Seconds: elapsed.Seconds(), Late: r.late.Load(),
	}
	if rep.Shape == "" {
		rep.Shape = string(workload.OpenInference)
	}
	var lat []time.Duration
	for _, w := range workers {
		rep.Exports += w.exports
		rep.Failed += w.failed
		rep.RawBytes += w.raw
		rep.WireBytes += w.wire
		lat = append(lat, w.lat...)
		for _, e := range w.errors {
			if !slices.Contains(rep.Errors, e) && len(rep.Errors) < 10 {
				rep.Errors = append(rep.Errors, e)
			}
		}
	}
	rep.Spans = (rep.Exports - rep.Failed) * int64(r.tpl.Spans())
	if rep.Seconds > 0 {
		rep.SpansPerS = float64(rep.Spans) / rep.Seconds
	}
	slices.Sort(lat)
	rep.P50ms = ms(quantile(lat, 0.50))
	rep.P99ms = ms(quantile(lat, 0.99))
	if len(lat) > 0 {
		rep.Maxms = ms(lat[len(lat)-1])
	}
	return rep
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// httpSender posts to OTLP/HTTP, as the OpenTelemetry SDKs' exporters do.
type httpSender struct {
	cfg    Config
	client *http.Client
	gzips  sync.Pool
}

func newHTTPSender(cfg Config) *httpSender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Concurrency
	tr.DisableCompression = true
	return &httpSender{cfg: cfg, client: &http.Client{Transport: tr}}
}

type gzipBuf struct {
	zw  *gzip.Writer
	buf bytes.Buffer
}

func (s *httpSender) Send(ctx context.Context, body []byte) (int, error) {
	payload := body
	if s.cfg.Compression == "gzip" {
		g, _ := s.gzips.Get().(*gzipBuf)
		if g == nil {
			g = &gzipBuf{}
			g.zw = gzip.NewWriter(&g.buf)
		}
		defer s.gzips.Put(g)
		g.buf.Reset()
		g.zw.Reset(&g.buf)
		_, _ = g.zw.Write(body)
		if err := g.zw.Close(); err != nil {
			return 0, err
		}
		payload = g.buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.Endpoint, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if s.cfg.Compression == "gzip" {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if s.cfg.Project != "" {
		req.Header.Set("x-project-name", s.cfg.Project)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return len(payload), err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return len(payload), fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return len(payload), nil
}

func (s *httpSender) Close() { s.client.CloseIdleConnections() }

// grpcSender calls TraceService/Export with the encoded export as it is:
// rawCodec passes the bytes through, so the client spends no CPU on
// encoding.
type grpcSender struct {
	cfg  Config
	conn *grpc.ClientConn
	opts []grpc.CallOption
	md   metadata.MD
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func newGRPCSender(cfg Config) (*grpcSender, error) {
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	s := &grpcSender{cfg: cfg, conn: conn, opts: []grpc.CallOption{grpc.ForceCodec(rawCodec{})}}
	if cfg.Compression == "gzip" {
		s.opts = append(s.opts, grpc.UseCompressor(grpcgzip.Name))
	}
	if cfg.Project != "" {
		s.md = metadata.Pairs("x-project-name", cfg.Project)
	}
	return s, nil
}

func (s *grpcSender) Send(ctx context.Context, body []byte) (int, error) {
	if s.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, s.md)
	}
	var resp []byte
	err := s.conn.Invoke(ctx, exportMethod, &body, &resp, s.opts...)
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return len(body), fmt.Errorf("gRPC %s: %s", st.Code(), st.Message())
		}
	}
	// The wire size after gRPC's compression is not observable here; the
	// raw size stands in.
	return len(body), err
}

func (s *grpcSender) Close() { _ = s.conn.Close() }

// rawCodec marshals a *[]byte as its bytes and unmarshals into a *[]byte.
// Its name is "proto", so the server decodes the messages as it always does.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
