package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/load"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/procstat"
	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/sink"
)

// Systems under test.
const (
	// sysProxy is our proxy as users run it: its defaults, so durable
	// state on (a data directory: the index kept in it, the disk queue
	// used while Phoenix is unavailable).
	sysProxy = "proxy"
	// sysProxyMemory is our proxy with --data-dir=-: everything in memory,
	// each export forwarded before it is answered.
	sysProxyMemory    = "proxy-memory"
	sysCollector      = "collector"
	sysCollectorBatch = "collector+batch"
	// sysDirect is the generator straight into the sink: the sink's CPU
	// is then the floor, what only receiving and counting the load costs.
	sysDirect = "direct"
)

// ports are loopback addresses, chosen away from the OTLP defaults so that
// a proxy or Collector left running elsewhere is not measured by mistake.
type ports struct {
	sink, sinkGRPC, grpc, http, feedback string
}

var defaultPorts = ports{sink: "127.0.0.1:14328", sinkGRPC: "127.0.0.1:14329", grpc: "127.0.0.1:14317", http: "127.0.0.1:14318", feedback: "127.0.0.1:14380"}

// Generators and their spans.
const (
	genLoadgen = "loadgen"
	genTelem   = "telemetrygen"
	// telemetrygen's spans: small (a name and a few attributes, ~150
	// bytes), or carrying a payload attribute of telemAttrBytes, 1.3 KB a
	// span as the LLM-shaped load's average.
	telemAttrBytes = 1200
)

// scenario is one measured run.
type scenario struct {
	Group     string `json:"group"`
	System    string `json:"system"`
	Generator string `json:"generator"` // loadgen or telemetrygen
	Protocol  string `json:"protocol"`
	// Compression is the same on both sides of the system: the client's,
	// and what it sends upstream.
	Compression string `json:"compression"`
	// OutputBytes is the LLM span's output.value (loadgen); AttrBytes the
	// payload attribute of every span (telemetrygen; 0 for small spans).
	OutputBytes int `json:"output_bytes"`
	AttrBytes   int `json:"attr_bytes,omitempty"`
	// SpansPerExport: loadgen's traces have 5 spans, telemetrygen's 10.
	SpansPerExport int     `json:"spans_per_export"`
	Rate           float64 `json:"rate"` // spans/s; 0 as fast as possible
	// FeedbackRate, when set, sends that many feedbacks a second, each
	// FeedbackDelay after an export was answered, for its response.
	FeedbackRate  float64       `json:"feedback_rate,omitempty"`
	FeedbackDelay time.Duration `json:"feedback_delay,omitempty"`
}

// load names what is sent, whatever receives it.
func (s scenario) load() string {
	spans := "llm"
	if s.Generator == genTelem {
		spans = "tg-small"
		if s.AttrBytes > 0 {
			spans = fmt.Sprintf("tg-%dB", s.AttrBytes)
		}
	}
	return fmt.Sprintf("%s %s %s %d/export", s.Protocol, s.Compression, spans, s.SpansPerExport)
}

func (s scenario) String() string {
	rate := "max"
	if s.Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", s.Rate)
	}
	out := ""
	if s.Generator == genLoadgen && s.OutputBytes != defaultOutputBytes {
		out = fmt.Sprintf(" out=%d", s.OutputBytes)
	}
	fb := ""
	if s.FeedbackRate > 0 {
		fb = fmt.Sprintf(" feedback=%.0f/s+%s", s.FeedbackRate, s.FeedbackDelay)
	}
	return fmt.Sprintf("%-8s %-15s %-26s rate=%s%s%s", s.Group, s.System, s.load(), rate, out, fb)
}

// Groups of runs, one table each.
const (
	groupMatrix  = "matrix"
	groupSize    = "size"
	groupMax     = "max"
	groupLatency = "latency"
)

// defaultOutputBytes is the LLM span's output.value of the matrix: 1.3 KB
// a span on average.
const defaultOutputBytes = 2048

func (r *runner) plan() []scenario {
	all := r.allRuns()
	if r.o.groups == nil {
		return all
	}
	var plan []scenario
	for _, sc := range all {
		if r.o.groups[sc.Group] {
			plan = append(plan, sc)
		}
	}
	return plan
}

func (r *runner) allRuns() []scenario {
	var plan []scenario
	telem := r.have("telemetrygen")
	systems := []string{sysProxy, sysCollector, sysCollectorBatch, sysDirect}
	// The matrix: every load, each system, one load after the other.
	for _, proto := range []string{"http", "grpc"} {
		for _, comp := range []string{"gzip", "none"} {
			for _, spans := range []int{100, 10} {
				loads := []scenario{{Generator: genLoadgen, OutputBytes: defaultOutputBytes}}
				if telem && !r.o.quick {
					loads = append(loads, scenario{Generator: genTelem}, scenario{Generator: genTelem, AttrBytes: telemAttrBytes})
				}
				for _, l := range loads {
					for _, sys := range systems {
						sc := l
						sc.Group, sc.System, sc.Protocol, sc.Compression, sc.SpansPerExport, sc.Rate = groupMatrix, sys, proto, comp, spans, r.o.rate
						plan = append(plan, sc)
					}
				}
			}
		}
	}
	if r.o.quick {
		return plan
	}
	// Feedback to annotation under load, with the durable state (the
	// default) and without, the feedback at once after the export was
	// answered (before the span can be indexed: the worst case) and a
	// second later (as a user clicks).
	for _, delay := range []time.Duration{0, time.Second} {
		for _, sys := range []string{sysProxy, sysProxyMemory} {
			plan = append(plan, scenario{Group: groupLatency, System: sys, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
				OutputBytes: defaultOutputBytes, SpansPerExport: 100, Rate: r.o.rate, FeedbackRate: r.o.feedbackRate, FeedbackDelay: delay})
		}
	}
	for _, size := range r.o.sizes {
		if size == defaultOutputBytes {
			continue // the matrix has it
		}
		// Larger spans at a lower rate, so that the bytes per second (and
		// the machine's load) stay those of the matrix.
		rate := r.o.rate * min(1, float64(defaultOutputBytes)/float64(size))
		for _, sys := range []string{sysProxy, sysCollectorBatch} {
			plan = append(plan, scenario{Group: groupSize, System: sys, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
				OutputBytes: size, SpansPerExport: 100, Rate: rate})
		}
	}
	for _, sys := range []string{sysProxy, sysCollectorBatch} {
		plan = append(plan, scenario{Group: groupMax, System: sys, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
			OutputBytes: defaultOutputBytes, SpansPerExport: 100})
	}
	return plan
}

func (r *runner) have(binary string) bool {
	_, err := os.Stat(r.binary(binary))
	return err == nil
}

// Measurement is what one run measured.
type Measurement struct {
	scenario
	Seconds        float64 `json:"seconds"`
	BytesPerSpan   float64 `json:"bytes_per_span,omitempty"`
	SpansSent      int64   `json:"spans_sent"`
	SpansDelivered int64   `json:"spans_delivered"`
	SpansPerS      float64 `json:"spans_per_s"`
	// CPU of the system under test; nil for direct.
	CPUSeconds   *float64 `json:"cpu_seconds,omitempty"`
	CPUPerMSpans *float64 `json:"cpu_s_per_m_spans,omitempty"`
	PeakRSSMB    *float64 `json:"peak_rss_mb,omitempty"`
	// The sink's CPU per million spans: what the upstream pays for what the
	// system sends it (fewer, larger requests cost it less).
	SinkCPUPerMSpans float64  `json:"sink_cpu_s_per_m_spans"`
	UpstreamRequests int64    `json:"upstream_requests"`
	P50ms            float64  `json:"p50_ms,omitempty"`
	P99ms            float64  `json:"p99_ms,omitempty"`
	Late             int64    `json:"late,omitempty"`
	Failed           int64    `json:"failed,omitempty"`
	Errors           []string `json:"errors,omitempty"`
	Error            string   `json:"error,omitempty"`
	// Feedback is what became of the feedback sent during the run.
	Feedback *load.FeedbackReport `json:"feedback,omitempty"`
}

func (m Measurement) summary() string {
	s := fmt.Sprintf("%.0f spans/s, delivered %d of %d", m.SpansPerS, m.SpansDelivered, m.SpansSent)
	if m.CPUPerMSpans != nil {
		s += fmt.Sprintf(", %.2f CPU-s/M spans, peak RSS %.0f MB", *m.CPUPerMSpans, *m.PeakRSSMB)
	}
	if m.P50ms > 0 {
		s += fmt.Sprintf(", p50 %.1f ms, p99 %.1f ms", m.P50ms, m.P99ms)
	}
	if m.Late > 0 || m.Failed > 0 {
		s += fmt.Sprintf(", late %d, failed %d", m.Late, m.Failed)
	}
	if fb := m.Feedback; fb != nil {
		s += fmt.Sprintf("; feedback %d sent, %d annotated, p50 %.1f ms, p99 %.1f ms", fb.Sent, fb.Annotated, fb.P50ms, fb.P99ms)
	}
	return s
}

type runner struct {
	o      options
	ports  ports
	sink   *exec.Cmd
	states []string // the proxies' data directories, removed at the end
}

func (r *runner) binary(name string) string { return filepath.Join(r.o.bin, name) }

// env is the environment of every child: ours, without the variables that
// would point a proxy, Collector or SDK somewhere else.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OTEL_") || strings.HasPrefix(k, "PHOENIX_") || strings.HasPrefix(k, "FEEDBACK_PROXY_") || k == "GOGC" || k == "GOMEMLIMIT" || k == "XDG_STATE_HOME" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

func (r *runner) logFile(name string) (*os.File, error) {
	return os.Create(filepath.Join(r.o.out, "logs", name+".log"))
}

func (r *runner) startSink(ctx context.Context) error {
	log, err := r.logFile("sink")
	if err != nil {
		return err
	}
	cmd := exec.Command(r.binary("sink"), "-addr", r.ports.sink, "-grpc-addr", r.ports.sinkGRPC)
	cmd.Env, cmd.Stdout, cmd.Stderr = env(), log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	r.sink = cmd
	return waitListening(ctx, r.ports.sink, r.ports.sinkGRPC)
}

func (r *runner) removeStates() {
	for _, d := range r.states {
		_ = os.RemoveAll(d)
	}
}

func (r *runner) stopSink() {
	if r.sink != nil {
		stopProcess(r.sink)
	}
}

func (r *runner) sinkStats() (sink.Stats, error) {
	var st sink.Stats
	resp, err := http.Get("http://" + r.ports.sink + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func waitListening(ctx context.Context, addrs ...string) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s is not listening: %w", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// startSystem starts the system under test, listening on r.ports.grpc and
// r.ports.http and sending to the sink with compression comp.
func (r *runner) startSystem(ctx context.Context, sys, comp, logName string) (*exec.Cmd, error) {
	upstream := "http://" + r.ports.sink + "/v1/traces"
	var cmd *exec.Cmd
	switch sys {
	case sysDirect:
		return nil, nil
	case sysProxy, sysProxyMemory:
		args := []string{
			"--otlp-grpc-addr", r.ports.grpc, "--otlp-http-addr", r.ports.http,
			"--phoenix-otlp-endpoint", upstream,
			// The sink stands in for Phoenix's REST API too, where
			// annotations are written.
			"--phoenix-url", "http://" + r.ports.sink,
			"--phoenix-compression", comp,
			"--feedback-addr", r.ports.feedback, "--admin-addr", "127.0.0.1:0",
			"--log-level", "warn"}
		if sys == sysProxyMemory {
			args = append(args, "--data-dir=-")
		}
		cmd = exec.Command(r.binary("proxy"), args...)
		// Measured as users run it: durable state on, in its default
		// data directory, a fresh one for every run.
		state, err := os.MkdirTemp("", "bench-proxy-state")
		if err != nil {
			return nil, err
		}
		r.states = append(r.states, state)
		cmd.Env = env("XDG_STATE_HOME="+state, "FEEDBACK_PROXY_FEEDBACK_TOKEN="+feedbackToken)
	case sysCollector, sysCollectorBatch:
		cfg := "otelcol-nobatch.yaml"
		if sys == sysCollectorBatch {
			cfg = "otelcol-batch.yaml"
		}
		cmd = exec.Command(r.binary("otelcol-bench"), "--config", filepath.Join(r.o.collectorDir, cfg))
		cmd.Env = env("OTELCOL_GRPC_ADDR="+r.ports.grpc, "OTELCOL_HTTP_ADDR="+r.ports.http,
			"OTELCOL_UPSTREAM="+upstream, "OTELCOL_COMPRESSION="+comp)
	default:
		return nil, fmt.Errorf("unknown system %q", sys)
	}
	log, err := r.logFile(logName)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitListening(ctx, r.ports.grpc, r.ports.http); err != nil {
		stopProcess(cmd)
		return nil, err
	}
	return cmd, nil
}

// feedbackToken is the proxy's --feedback-token in the runs.
const feedbackToken = "bench-feedback-token"

// endpoint is where the generator sends for sc: host:port for gRPC, a URL
// for HTTP.
func (r *runner) endpoint(sc scenario) string {
	grpcAddr, httpAddr := r.ports.grpc, r.ports.http
	if sc.System == sysDirect {
		grpcAddr, httpAddr = r.ports.sinkGRPC, r.ports.sink
	}
	if sc.Protocol == "grpc" {
		return grpcAddr
	}
	return "http://" + httpAddr + "/v1/traces"
}

// generate runs the load generator of sc for d and returns its report
// (for telemetrygen, only what can be known: nothing but the time).
func (r *runner) generate(ctx context.Context, sc scenario, d time.Duration, seq uint64, logName string) (load.Report, error) {
	var rep load.Report
	var cmd *exec.Cmd
	switch sc.Generator {
	case genLoadgen:
		args := []string{"-json",
			"-protocol", sc.Protocol, "-endpoint", r.endpoint(sc), "-compression", sc.Compression,
			"-rate", strconv.FormatFloat(sc.Rate, 'f', -1, 64), "-duration", d.String(),
			"-output-bytes", strconv.Itoa(sc.OutputBytes), "-concurrency", "8",
			"-traces", strconv.Itoa(sc.SpansPerExport / 5),
			"-seq", strconv.FormatUint(seq, 10)}
		if sc.FeedbackRate > 0 {
			args = append(args, "-feedback-rate", strconv.FormatFloat(sc.FeedbackRate, 'f', -1, 64),
				"-feedback-delay", sc.FeedbackDelay.String(),
				"-feedback-url", "http://"+r.ports.feedback+"/feedback", "-feedback-token", feedbackToken,
				"-annotations-url", "http://"+r.ports.sink+"/annotations")
		}
		cmd = exec.CommandContext(ctx, r.binary("loadgen"), args...)
		cmd.Env = env()
	case genTelem:
		// Traces of a root and nine children, exported SpansPerExport at a
		// time; --rate is spans per second per worker, and one worker
		// makes no more than about 3,500 a second here.
		const workers = 8
		args := []string{"traces", "--otlp-insecure", "--workers", strconv.Itoa(workers),
			"--child-spans", "9", "--batch-size", strconv.Itoa(sc.SpansPerExport), "--duration", d.String(),
			"--rate", strconv.FormatFloat(sc.Rate/workers, 'f', -1, 64)}
		if sc.AttrBytes > 0 {
			args = append(args, "--telemetry-attributes", fmt.Sprintf("payload=%q", strings.Repeat("x", sc.AttrBytes)))
		}
		endpoint := r.endpoint(sc)
		if sc.Protocol == "http" {
			args = append(args, "--otlp-http")
			endpoint = strings.TrimSuffix(strings.TrimPrefix(endpoint, "http://"), "/v1/traces")
		}
		args = append(args, "--otlp-endpoint", endpoint)
		cmd = exec.CommandContext(ctx, r.binary("telemetrygen"), args...)
		// The OpenTelemetry Go SDK's exporter reads its compression from the
		// environment.
		cmd.Env = env("OTEL_EXPORTER_OTLP_COMPRESSION=" + sc.Compression)
	}
	var stdout bytes.Buffer
	log, err := r.logFile(logName)
	if err != nil {
		return rep, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = &stdout, log
	start := time.Now()
	err = cmd.Run()
	rep.Seconds = time.Since(start).Seconds()
	if sc.Generator == genTelem {
		return rep, err
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		return rep, fmt.Errorf("loadgen: %v; report %q: %v", err, stdout.String(), jerr)
	}
	// loadgen exits 1 when an export failed; the report says which.
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		err = nil
	}
	return rep, err
}

// settle waits until the sink has want spans (want < 0: until its count
// stops moving), at most 15s.
func (r *runner) settle(want int64) (sink.Stats, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last sink.Stats
	stable := 0
	for {
		st, err := r.sinkStats()
		if err != nil {
			return st, err
		}
		if want >= 0 && st.Spans >= want {
			return st, nil
		}
		if st.Spans == last.Spans {
			stable++
		} else {
			stable = 0
		}
		// Without a target, a count that has not moved for 1s is final (the
		// batch processor's timeout is 200ms).
		if want < 0 && stable >= 10 {
			return st, nil
		}
		if time.Now().After(deadline) {
			if want >= 0 {
				return st, fmt.Errorf("the sink got %d spans of %d in time", st.Spans, want)
			}
			return st, nil
		}
		last = st
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *runner) measure(ctx context.Context, i int, sc scenario) (m Measurement, err error) {
	m.scenario = sc
	logName := fmt.Sprintf("%02d-%s-%s-%s", i+1, sc.Group, strings.ReplaceAll(sc.System, "+", "-"), strings.NewReplacer(" ", "-", "/", "-").Replace(sc.load()))
	cmd, err := r.startSystem(ctx, sc.System, sc.Compression, logName+"-system")
	if err != nil {
		return m, err
	}
	if cmd != nil {
		defer stopProcess(cmd)
	}
	seq := uint64(i+1) << 32

	// Warm up (connections, pools, the index's and the heap's first growth),
	// then wait until the sink has all the warm-up's spans.
	s0, err := r.sinkStats()
	if err != nil {
		return m, err
	}
	warm, err := r.generate(ctx, sc, r.o.warmup, seq, logName+"-warmup")
	if err != nil {
		return m, fmt.Errorf("warm-up: %w", err)
	}
	want := int64(-1)
	if sc.Generator == genLoadgen {
		want = s0.Spans + warm.Spans
	}
	before, err := r.settle(want)
	if err != nil {
		return m, fmt.Errorf("warm-up: %w", err)
	}

	var cpu0, sinkCPU0 time.Duration
	if cmd != nil {
		if cpu0, err = procstat.CPU(cmd.Process.Pid); err != nil {
			return m, err
		}
	}
	if sinkCPU0, err = procstat.CPU(r.sink.Process.Pid); err != nil {
		return m, err
	}

	rep, err := r.generate(ctx, sc, r.o.duration, seq+1<<31, logName+"-load")
	if err != nil {
		return m, err
	}
	want = -1
	if sc.Generator == genLoadgen {
		want = before.Spans + rep.Spans
	}
	after, err := r.settle(want)
	if err != nil {
		return m, err
	}
	m.SpansDelivered = after.Spans - before.Spans
	m.UpstreamRequests = after.Requests - before.Requests
	m.Seconds = rep.Seconds
	m.SpansSent = rep.Spans
	if sc.Generator == genTelem {
		m.SpansSent = m.SpansDelivered
	}
	m.Feedback = rep.Feedback
	if m.Seconds > 0 {
		m.SpansPerS = float64(m.SpansDelivered) / m.Seconds
	}
	if rep.SpansPerExport > 0 {
		m.BytesPerSpan = float64(rep.ExportBytes) / float64(rep.SpansPerExport)
	} else if d := after.RawBytes - before.RawBytes; sc.System == sysDirect && m.SpansDelivered > 0 {
		// telemetrygen does not say; the sink, receiving it, does.
		m.BytesPerSpan = float64(d) / float64(m.SpansDelivered)
	}
	m.P50ms, m.P99ms, m.Late, m.Failed, m.Errors = rep.P50ms, rep.P99ms, rep.Late, rep.Failed, rep.Errors

	sinkCPU1, err := procstat.CPU(r.sink.Process.Pid)
	if err != nil {
		return m, err
	}
	if m.SpansDelivered > 0 {
		m.SinkCPUPerMSpans = (sinkCPU1 - sinkCPU0).Seconds() / float64(m.SpansDelivered) * 1e6
	}
	if cmd != nil {
		cpu1, err := procstat.CPU(cmd.Process.Pid)
		if err != nil {
			return m, err
		}
		mem, err := procstat.Mem(cmd.Process.Pid)
		if err != nil {
			return m, err
		}
		cpu := (cpu1 - cpu0).Seconds()
		m.CPUSeconds = &cpu
		if m.SpansDelivered > 0 {
			per := cpu / float64(m.SpansDelivered) * 1e6
			m.CPUPerMSpans = &per
		}
		rss := float64(mem.Peak) / (1 << 20)
		m.PeakRSSMB = &rss
	}
	if m.SpansDelivered == 0 {
		return m, errors.New("no span reached the sink")
	}
	return m, nil
}

// Profile is a CPU profile of the proxy under an LLM-shaped load.
type Profile struct {
	Protocol       string `json:"protocol"`
	Compression    string `json:"compression"`
	SpansPerExport int    `json:"spans_per_export"`
	// Spans were sent during the profile, CPUSeconds used by the proxy
	// then, as /proc counts it (the profile's samples should add up to
	// about as much).
	Spans      int64   `json:"spans"`
	CPUSeconds float64 `json:"cpu_seconds"`
	File       string  `json:"file"`
	Top        string  `json:"top"`
}

// profileProxy runs bench/proxyprof (the proxy in-process, with pprof, its
// durable state on as the proxy's is by default) under an LLM-shaped load
// and keeps its CPU profile and the top of it.
func (r *runner) profileProxy(ctx context.Context, pl profileLoad) (Profile, error) {
	proto, comp, spans := pl.protocol, pl.compression, pl.spans
	name := fmt.Sprintf("%s-%s-%d", proto, comp, spans)
	p := Profile{Protocol: proto, Compression: comp, SpansPerExport: spans, File: filepath.Join(r.o.out, "proxy-cpu-"+name+".pprof")}
	heap := filepath.Join(r.o.out, "proxy-heap-"+name+".pprof")
	log, err := r.logFile("profile-" + name)
	if err != nil {
		return p, err
	}
	defer log.Close()
	cmd := exec.Command(r.binary("proxyprof"), "-otlp-grpc-addr", r.ports.grpc, "-otlp-http-addr", r.ports.http,
		"-upstream", "http://"+r.ports.sink+"/v1/traces", "-compression", comp,
		"-cpuprofile", p.File, "-memprofile", heap)
	cmd.Env, cmd.Stdout, cmd.Stderr = env(), log, log
	if err := cmd.Start(); err != nil {
		return p, err
	}
	if err := waitListening(ctx, r.ports.grpc, r.ports.http); err != nil {
		stopProcess(cmd)
		return p, err
	}
	// Twice the matrix's rate, for more samples in the same time.
	sc := scenario{Group: groupMatrix, System: sysProxy, Generator: genLoadgen, Protocol: proto, Compression: comp,
		OutputBytes: defaultOutputBytes, SpansPerExport: spans, Rate: 2 * r.o.rate}
	if spans < 100 {
		sc.Rate = r.o.rate // small exports: the generator's own limit
	}
	cpu0, err := procstat.CPU(cmd.Process.Pid)
	if err != nil {
		stopProcess(cmd)
		return p, err
	}
	rep, err := r.generate(ctx, sc, r.o.profile, 1<<60, "profile-"+name+"-load")
	cpu1, cerr := procstat.CPU(cmd.Process.Pid)
	stopProcess(cmd)
	if err = errors.Join(err, cerr); err != nil {
		return p, err
	}
	p.Spans = rep.Spans
	p.CPUSeconds = (cpu1 - cpu0).Seconds()
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "30", r.binary("proxyprof"), p.File).Output()
	if err != nil {
		return p, fmt.Errorf("go tool pprof: %w", err)
	}
	p.Top = string(top)
	return p, os.WriteFile(strings.TrimSuffix(p.File, ".pprof")+"-top.txt", top, 0o644)
}
