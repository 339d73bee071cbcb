package main

import (
	"bytes"
	"cmp"
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
	sysProxy          = "proxy"
	sysCollector      = "collector"
	sysCollectorBatch = "collector+batch"
	sysDirect         = "direct"
)

// ports are loopback addresses, chosen away from the OTLP defaults so that
// a proxy or Collector left running elsewhere is not measured by mistake.
type ports struct {
	sink, grpc, http string
}

var defaultPorts = ports{sink: "127.0.0.1:14328", grpc: "127.0.0.1:14317", http: "127.0.0.1:14318"}

// scenario is one measured run.
type scenario struct {
	Group       string  `json:"group"`
	System      string  `json:"system"`
	Generator   string  `json:"generator"` // loadgen or telemetrygen
	Protocol    string  `json:"protocol"`
	Compression string  `json:"compression"`
	OutputBytes int     `json:"output_bytes"`
	Rate        float64 `json:"rate"` // spans/s; 0 as fast as possible
	// Traces is the number of traces (of 5 spans) per export; zero means
	// loadgen's default, 20.
	Traces int `json:"traces_per_export,omitempty"`
}

func (s scenario) String() string {
	rate := "max"
	if s.Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", s.Rate)
	}
	traces := s.Traces
	if traces == 0 {
		traces = defaultTraces
	}
	return fmt.Sprintf("%-13s %-16s %-12s %-4s %-4s out=%-6d traces=%-3d rate=%s", s.Group, s.System, s.Generator, s.Protocol, s.Compression, s.OutputBytes, traces, rate)
}

// Groups of runs, one table each.
const (
	groupMain  = "main"
	groupGRPC  = "grpc"
	groupSize  = "size"
	groupMax   = "max"
	groupTelem = "telemetrygen"
	groupBatch = "per-request"
)

// defaultTraces is loadgen's traces per export.
const defaultTraces = 20

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
	main := 2048
	for _, comp := range []string{"gzip", "none"} {
		for _, sys := range []string{sysProxy, sysCollector, sysCollectorBatch, sysDirect} {
			plan = append(plan, scenario{groupMain, sys, "loadgen", "http", comp, main, r.o.rate, 0})
		}
	}
	if r.o.quick {
		return plan
	}
	for _, sys := range []string{sysProxy, sysCollector, sysCollectorBatch} {
		plan = append(plan, scenario{groupGRPC, sys, "loadgen", "grpc", "gzip", main, r.o.rate, 0})
	}
	for _, size := range r.o.sizes {
		if size == main {
			continue // the main table has it
		}
		// Larger spans at a lower rate, so that the bytes per second (and
		// the machine's load) stay those of the main table.
		rate := r.o.rate * min(1, float64(main)/float64(size))
		for _, sys := range []string{sysProxy, sysCollectorBatch} {
			plan = append(plan, scenario{groupSize, sys, "loadgen", "http", "gzip", size, rate, 0})
		}
	}
	for _, traces := range []int{2, 100} {
		for _, sys := range []string{sysProxy, sysCollector, sysCollectorBatch} {
			plan = append(plan, scenario{groupBatch, sys, "loadgen", "http", "gzip", main, r.o.rate, traces})
		}
	}
	for _, sys := range []string{sysProxy, sysCollectorBatch} {
		plan = append(plan, scenario{groupMax, sys, "loadgen", "http", "gzip", main, 0, 0})
	}
	if _, err := os.Stat(filepath.Join(r.o.bin, "telemetrygen")); err == nil {
		for _, sys := range []string{sysProxy, sysCollector, sysCollectorBatch} {
			plan = append(plan, scenario{groupTelem, sys, "telemetrygen", "grpc", "gzip", 0, r.o.rate, 0})
		}
	}
	return plan
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
	return s
}

type runner struct {
	o     options
	ports ports
	sink  *exec.Cmd
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
	cmd := exec.Command(r.binary("sink"), "-addr", r.ports.sink)
	cmd.Env, cmd.Stdout, cmd.Stderr = env(), log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	r.sink = cmd
	return waitListening(ctx, r.ports.sink)
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
	case sysProxy:
		cmd = exec.Command(r.binary("proxy"),
			"--otlp-grpc-addr", r.ports.grpc, "--otlp-http-addr", r.ports.http,
			"--phoenix-otlp-endpoint", upstream,
			// Feedback is not exercised; the REST URL is never dialled.
			"--phoenix-url", "http://127.0.0.1:9",
			"--phoenix-compression", comp,
			"--feedback-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--log-level", "warn")
		// Measured as users run it: durable state on, in its default
		// data directory, a fresh one for every run.
		state, err := os.MkdirTemp("", "bench-proxy-state")
		if err != nil {
			return nil, err
		}
		cmd.Env = env("XDG_STATE_HOME=" + state)
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

// endpoint is where the generator sends for sc.
func (r *runner) endpoint(sc scenario) string {
	if sc.System == sysDirect {
		return "http://" + r.ports.sink + "/v1/traces"
	}
	if sc.Protocol == "grpc" {
		return r.ports.grpc
	}
	return "http://" + r.ports.http + "/v1/traces"
}

// generate runs the load generator of sc for d and returns its report
// (for telemetrygen, only what can be known: nothing but the time).
func (r *runner) generate(ctx context.Context, sc scenario, d time.Duration, seq uint64, logName string) (load.Report, error) {
	var rep load.Report
	var cmd *exec.Cmd
	switch sc.Generator {
	case "loadgen":
		cmd = exec.CommandContext(ctx, r.binary("loadgen"), "-json",
			"-protocol", sc.Protocol, "-endpoint", r.endpoint(sc), "-compression", sc.Compression,
			"-rate", strconv.FormatFloat(sc.Rate, 'f', -1, 64), "-duration", d.String(),
			"-output-bytes", strconv.Itoa(sc.OutputBytes), "-concurrency", "8",
			"-traces", strconv.Itoa(cmp.Or(sc.Traces, defaultTraces)),
			"-seq", strconv.FormatUint(seq, 10))
		cmd.Env = env()
	case "telemetrygen":
		// telemetrygen sends 100-span batches of small spans (a trace of a
		// root and four children); --rate is per worker.
		const workers = 2
		args := []string{"traces", "--otlp-insecure", "--workers", strconv.Itoa(workers),
			"--child-spans", "4", "--duration", d.String(),
			"--rate", strconv.FormatFloat(sc.Rate/workers, 'f', -1, 64)}
		if sc.Protocol == "http" {
			args = append(args, "--otlp-http")
		}
		if sc.System == sysDirect {
			args = append(args, "--otlp-http", "--otlp-endpoint", r.ports.sink)
		} else if sc.Protocol == "http" {
			args = append(args, "--otlp-endpoint", r.ports.http)
		} else {
			args = append(args, "--otlp-endpoint", r.ports.grpc)
		}
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
	if sc.Generator == "telemetrygen" {
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
	logName := fmt.Sprintf("%02d-%s-%s-%s-%s-%d-%d", i+1, sc.Group, strings.ReplaceAll(sc.System, "+", "-"), sc.Protocol, sc.Compression, sc.OutputBytes, cmp.Or(sc.Traces, defaultTraces))
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
	if sc.Generator == "loadgen" {
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
	if sc.Generator == "loadgen" {
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
	if sc.Generator == "telemetrygen" {
		m.SpansSent = m.SpansDelivered
	}
	if m.Seconds > 0 {
		m.SpansPerS = float64(m.SpansDelivered) / m.Seconds
	}
	if rep.SpansPerExport > 0 {
		m.BytesPerSpan = float64(rep.ExportBytes) / float64(rep.SpansPerExport)
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

// Profile is a CPU profile of the proxy under the main load.
type Profile struct {
	Compression string `json:"compression"`
	// Spans were sent during the profile, CPUSeconds used by the proxy
	// then, as /proc counts it (the profile's samples should add up to
	// about as much).
	Spans      int64   `json:"spans"`
	CPUSeconds float64 `json:"cpu_seconds"`
	File       string  `json:"file"`
	Top        string  `json:"top"`
}

// profileProxy runs bench/proxyprof (the proxy in-process, with pprof)
// under the main load and keeps its CPU profile and the top of it.
func (r *runner) profileProxy(ctx context.Context, comp string) (Profile, error) {
	p := Profile{Compression: comp, File: filepath.Join(r.o.out, "proxy-cpu-"+comp+".pprof")}
	heap := filepath.Join(r.o.out, "proxy-heap-"+comp+".pprof")
	log, err := r.logFile("profile-" + comp)
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
	// Twice the main rate, for more samples in the same time.
	sc := scenario{groupMain, sysProxy, "loadgen", "http", comp, 2048, 2 * r.o.rate, 0}
	cpu0, err := procstat.CPU(cmd.Process.Pid)
	if err != nil {
		stopProcess(cmd)
		return p, err
	}
	rep, err := r.generate(ctx, sc, r.o.profile, 1<<60, "profile-"+comp+"-load")
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
