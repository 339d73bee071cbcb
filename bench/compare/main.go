// Command compare runs the same OTLP loads through our proxy, the
// OpenTelemetry Collector (with and without its batch processor) and
// straight into a counting sink (the floor: what only receiving a load
// costs), and measures each: spans/s, CPU-seconds per million spans, peak
// RSS and export latency; and the time from a feedback to its annotation
// under load, with the proxy's durable state and without. bench/compare.sh
// builds the binaries and runs it; run it with -h for the knobs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin, collectorDir, out, doc string
	collectorVersion, commit    string
	duration, warmup            time.Duration
	rate                        float64
	sizes                       []int
	quick                       bool
	groups                      map[string]bool
	profile                     time.Duration
	profileLoads                []profileLoad
	feedbackRate                float64
}

// profileLoad is an LLM-shaped load the proxy is profiled under.
type profileLoad struct {
	protocol, compression string
	spans                 int
}

// parseProfileLoads reads "http/gzip/10,grpc/none/100".
func parseProfileLoads(s string) ([]profileLoad, error) {
	var out []profileLoad
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		parts := strings.Split(f, "/")
		var pl profileLoad
		if len(parts) != 3 {
			return nil, fmt.Errorf("%q: want protocol/compression/spans, as http/gzip/10", f)
		}
		pl.protocol, pl.compression = parts[0], parts[1]
		if _, err := fmt.Sscan(parts[2], &pl.spans); err != nil || pl.spans <= 0 || pl.spans%5 != 0 ||
			(pl.protocol != "http" && pl.protocol != "grpc") || (pl.compression != "gzip" && pl.compression != "none") {
			return nil, fmt.Errorf("%q: want http or grpc, gzip or none, and spans a multiple of 5", f)
		}
		out = append(out, pl)
	}
	return out, nil
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	fs.StringVar(&o.bin, "bin", ".cache/bench/bin", "folder of the binaries: proxy, proxyprof, otelcol-bench, sink, loadgen, telemetrygen")
	fs.StringVar(&o.collectorDir, "collector-dir", "bench/collector", "folder of the Collector configurations")
	fs.StringVar(&o.collectorVersion, "collector-version", "", "the Collector's version, for the report")
	fs.StringVar(&o.commit, "commit", "", "the proxy's source (git commit), for the report")
	fs.StringVar(&o.out, "out", "bench/results", "folder for results.json, results.md, profiles and logs")
	fs.StringVar(&o.doc, "doc", "docs/benchmarks.md", "markdown file whose generated section is replaced by the results (\"\" leaves it alone)")
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "measured time of each run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load sent before each measured run, not counted")
	fs.Float64Var(&o.rate, "rate", 5000, "spans per second of the fixed-rate runs (larger spans get less, see -sizes)")
	sizes := fs.String("sizes", "512,2048,8192,32768", "output.value sizes (bytes) of the span-size sweep; the first table uses 2048")
	fs.BoolVar(&o.quick, "quick", false, "only the LLM-shaped loads of the matrix, and no profile, for a quick look")
	groups := fs.String("groups", "", "comma-separated groups of runs to make, of matrix, latency, size, max (default: all)")
	fs.DurationVar(&o.profile, "profile", 30*time.Second, "length of each CPU-profiled proxy run, at twice -rate (0: none)")
	profiles := fs.String("profile-loads", "http/gzip/100,http/gzip/10,grpc/gzip/10,grpc/none/100", "LLM-shaped loads to profile the proxy under, as protocol/compression/spans per export")
	fs.Float64Var(&o.feedbackRate, "feedback-rate", 20, "feedbacks per second in the latency runs")
	_ = fs.Parse(os.Args[1:])
	var err error
	if o.profileLoads, err = parseProfileLoads(*profiles); err != nil {
		fmt.Fprintln(os.Stderr, "compare: -profile-loads:", err)
		return 2
	}
	for _, s := range strings.Split(*sizes, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "compare: -sizes: %q is not a size in bytes\n", s)
			return 2
		}
		o.sizes = append(o.sizes, n)
	}

	if *groups != "" {
		o.groups = map[string]bool{}
		for _, g := range strings.Split(*groups, ",") {
			o.groups[strings.TrimSpace(g)] = true
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := compare(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		return 1
	}
	return 0
}

func compare(ctx context.Context, o options) error {
	if err := os.MkdirAll(filepath.Join(o.out, "logs"), 0o755); err != nil {
		return err
	}
	for _, name := range []string{"proxy", "otelcol-bench", "sink", "loadgen"} {
		if _, err := os.Stat(filepath.Join(o.bin, name)); err != nil {
			return fmt.Errorf("missing binary (bench/compare.sh builds it): %w", err)
		}
	}
	r := &runner{o: o, ports: defaultPorts}
	if err := r.startSink(ctx); err != nil {
		return err
	}
	defer r.stopSink()
	defer r.removeStates()

	plan := r.plan()
	res := Results{
		Started: time.Now().UTC(), Machine: machine(), CollectorVersion: o.collectorVersion, Commit: o.commit,
		Duration: o.duration.Seconds(), Rate: o.rate,
	}
	begin := time.Now()
	for i, sc := range plan {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "[%2d/%d %4.0fs] %s\n", i+1, len(plan), time.Since(begin).Seconds(), sc)
		m, err := r.measure(ctx, i, sc)
		if err != nil {
			fmt.Fprintf(os.Stderr, "    failed: %v\n", err)
			m.Error = err.Error()
		} else {
			fmt.Fprintf(os.Stderr, "    %s\n", m.summary())
		}
		res.Runs = append(res.Runs, m)
	}
	if o.profile > 0 && !o.quick && o.groups == nil {
		for _, pl := range o.profileLoads {
			fmt.Fprintf(os.Stderr, "[profile %4.0fs] proxy, %s %s %d spans/export, %s\n", time.Since(begin).Seconds(), pl.protocol, pl.compression, pl.spans, o.profile)
			p, err := r.profileProxy(ctx, pl)
			if err != nil {
				fmt.Fprintf(os.Stderr, "    failed: %v\n", err)
				continue
			}
			res.Profiles = append(res.Profiles, p)
		}
	}
	res.Seconds = time.Since(begin).Seconds()

	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := res.Markdown()
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	if o.doc != "" {
		if err := replaceSection(o.doc, md); err != nil {
			return fmt.Errorf("%s: %w", o.doc, err)
		}
	}
	return nil
}

// The generated part of the benchmarks document lies between these lines.
const (
	beginMarker = "<!-- results: generated by bench/compare.sh; do not edit by hand -->"
	endMarker   = "<!-- end of results -->"
)

func replaceSection(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return errors.New("no generated section (the marker lines) to replace")
	}
	s = s[:i+len(beginMarker)] + "\n\n" + md + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
