package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/bench/internal/load"
)

// Loads of the matrix in the fixture, in the order of its runs: not sorted,
// so that a table that sorted its rows would show it.
var (
	llmLoad = scenario{Group: groupMatrix, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
		OutputBytes: defaultOutputBytes, SpansPerExport: 100, Rate: 5000}
	tgFatLoad = scenario{Group: groupMatrix, Generator: genTelem, Protocol: "grpc", Compression: "none",
		AttrBytes: telemAttrBytes, SpansPerExport: 10, Rate: 5000}
	tgSmallLoad = scenario{Group: groupMatrix, Generator: genTelem, Protocol: "http", Compression: "none",
		SpansPerExport: 10, Rate: 5000}
)

func on(sc scenario, sys string) scenario {
	sc.System = sys
	return sc
}

// fixture is a comparison with round numbers, so that every ratio the
// tables show can be worked out by hand, and with the holes real runs
// leave: a system not run, a run that failed, a CPU of zero.
func fixture() Results {
	size := func(sys string, out int, rate float64) scenario {
		return scenario{Group: groupSize, System: sys, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
			OutputBytes: out, SpansPerExport: 100, Rate: rate}
	}
	latency := func(sys string, delay time.Duration) scenario {
		return scenario{Group: groupLatency, System: sys, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
			OutputBytes: defaultOutputBytes, SpansPerExport: 100, Rate: 5000, FeedbackRate: 10, FeedbackDelay: delay}
	}
	maxLoad := func(sys string) scenario {
		return scenario{Group: groupMax, System: sys, Generator: genLoadgen, Protocol: "http", Compression: "gzip",
			OutputBytes: defaultOutputBytes, SpansPerExport: 100}
	}
	return Results{
		Started:          time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Seconds:          600,
		Machine:          "2 cores",
		CollectorVersion: "v0.1",
		Duration:         8,
		Rate:             5000,
		Runs: []Measurement{
			// The size table: 8192 before 512, the matrix's 2048 between them.
			{scenario: size(sysProxy, 8192, 1250), BytesPerSpan: 5500, SpansPerS: 1000, CPUPerMSpans: new(12.0), PeakRSSMB: new(40.0)},
			{scenario: size(sysCollectorBatch, 8192, 1250), CPUPerMSpans: new(30.0), PeakRSSMB: new(80.0)},

			// Every system ran; every ratio has a number.
			{scenario: on(tgFatLoad, sysProxy), CPUPerMSpans: new(9.0), PeakRSSMB: new(20.0)},
			{scenario: on(llmLoad, sysProxy), BytesPerSpan: 1282.19, CPUPerMSpans: new(10.0), PeakRSSMB: new(30.0),
				SpansDelivered: 40000, UpstreamRequests: 50, P99ms: 8.73},
			{scenario: on(llmLoad, sysCollector), CPUPerMSpans: new(40.0), PeakRSSMB: new(50.0)},
			{scenario: on(llmLoad, sysCollectorBatch), CPUPerMSpans: new(20.0), PeakRSSMB: new(60.0)},
			{scenario: on(llmLoad, sysDirect), BytesPerSpan: 1282.19, SinkCPUPerMSpans: 10},

			// No Collector run, the batched Collector failed: only the
			// floor to compare with; bytes per span from the direct run.
			{scenario: on(tgFatLoad, sysCollectorBatch), Error: "exit status 1", CPUPerMSpans: new(99.0)},
			{scenario: on(tgFatLoad, sysDirect), BytesPerSpan: 1388, SinkCPUPerMSpans: 6},

			// The proxy failed; the batched Collector's CPU rounds to zero,
			// and the sink's was not measured.
			{scenario: on(tgSmallLoad, sysProxy), Error: "no span reached the sink"},
			{scenario: on(tgSmallLoad, sysCollector), CPUPerMSpans: new(12.0)},
			{scenario: on(tgSmallLoad, sysCollectorBatch), CPUPerMSpans: new(0.0)},
			{scenario: on(tgSmallLoad, sysDirect)},

			{scenario: latency(sysProxy, 0), P50ms: 4.2, P99ms: 9.87, CPUPerMSpans: new(11.5),
				Feedback: &load.FeedbackReport{Sent: 100, Annotated: 99, P50ms: 12.34, P99ms: 45.6, Maxms: 60}},
			{scenario: latency(sysProxyMemory, time.Second),
				Feedback: &load.FeedbackReport{Sent: 50, Annotated: 50, P50ms: 1, P99ms: 2, Maxms: 3}},
			// A latency run that sent no feedback has no row.
			{scenario: latency(sysProxyMemory, 0), Error: "timeout"},

			{scenario: size(sysProxy, 512, 5000), BytesPerSpan: 400, CPUPerMSpans: new(8.0), PeakRSSMB: new(25.0)},

			{scenario: maxLoad(sysProxy), SpansPerS: 20000, CPUPerMSpans: new(25.0), PeakRSSMB: new(35.0), P50ms: 3, P99ms: 7.5},
			{scenario: maxLoad(sysCollectorBatch), SpansPerS: 15000, CPUPerMSpans: new(40.0), PeakRSSMB: new(70.0), P50ms: 4, P99ms: 9},
		},
		Profiles: []Profile{{Protocol: "http", Compression: "gzip", SpansPerExport: 100, Spans: 1_000_000, CPUSeconds: 1.5,
			File: "proxy-cpu.pprof", Top: "flat  flat%\n"}},
	}
}

func TestMarkdown(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Results) // nil: the fixture as it is
		check func(t *testing.T, md string)
	}{
		{
			name: "headline",
			check: func(t *testing.T, md string) {
				wantPrefix(t, md, "Run of 2026-01-02 03:04 UTC (600 s in all) of the proxy at an unrecorded commit: 2 cores; Collector v0.1; 8 s measured per run after a warm-up.\n")
			},
		},
		{
			name: "ratios against both Collectors, the floor and the memory",
			check: func(t *testing.T, md string) {
				// 10/40, 10/20, 10/10, 10/20 (floor against the batched
				// Collector), 30/60 MB; 40000 spans in 50 requests.
				wantLine(t, md, "| http | gzip | LLM-shaped | 100 | 1282 | **10.00** | 40.00 | 20.00 | 10.00 | 0.25× | 0.50× | 1.00× | 0.50× | 0.50× | 8.7 | 800 |")
			},
		},
		{
			name: "missing measurements are dashes",
			check: func(t *testing.T, md string) {
				// No Collector run, a failed batched Collector: dashes, and
				// the failed run's 99 CPU-s is not used.
				wantLine(t, md, "| grpc | none | telemetrygen 1.3 KB | 10 | 1388 | **9.00** | — | — | 6.00 | — | — | 1.50× | — | — | — | — |")
				// No proxy CPU, a zero to divide by, no floor.
				wantLine(t, md, "| http | none | telemetrygen small | 10 | 0 | — | 12.00 | 0.00 | — | — | — | — | — | — | — | — |")
			},
		},
		{
			name: "matrix rows in the order of the runs",
			check: func(t *testing.T, md string) {
				wantOrder(t, md, "| grpc | none | telemetrygen 1.3 KB |", "| http | gzip | LLM-shaped |", "| http | none | telemetrygen small |")
			},
		},
		{
			name: "summary under 0.5",
			check: func(t *testing.T, md string) {
				wantLine(t, md, "On 1 of the 3 loads the floor alone is 0.45× the batched Collector or more.")
				wantLine(t, md, "**Every load at or under 0.5× both Collectors** (the highest ratio: 0.50×). Highest ratio to the floor: 1.50×.")
			},
		},
		{
			name: "summary over 0.5",
			edit: func(res *Results) {
				for i := range res.Runs {
					if m := &res.Runs[i]; m.scenario == on(llmLoad, sysCollectorBatch) {
						m.CPUPerMSpans = new(15.0)
					}
				}
			},
			check: func(t *testing.T, md string) {
				wantLine(t, md, "| http | gzip | LLM-shaped | 100 | 1282 | **10.00** | 40.00 | 15.00 | 10.00 | 0.25× | 0.67× | 1.00× | 0.67× | 0.50× | 8.7 | 800 |")
				wantLine(t, md, "**Over 0.5×** (1 of 6 comparisons): http gzip LLM-shaped 100/export (0.67× collector+batch). Highest ratio to the floor: 1.50×.")
			},
		},
		{
			name: "latency table",
			check: func(t *testing.T, md string) {
				wantLine(t, md, "### Feedback to annotation under load (OTLP/HTTP, gzip, 5000 spans/s, 100-span exports)")
				wantOrder(t, md,
					"| durable state on (default) | 100 | 0s | 10 | 99 | 12.3 | 45.6 | 60.0 | 4.2 | 9.9 | 11.50 |",
					"| memory only (`--data-dir=-`) | 50 | 1s | 10 | 50 | 1.0 | 2.0 | 3.0 | — | — | — |")
				if n := strings.Count(md, "| memory only"); n != 1 {
					t.Errorf("%d rows of the memory-only proxy, want 1 (the run without feedback has none)", n)
				}
			},
		},
		{
			name: "size table sorted by output.value",
			check: func(t *testing.T, md string) {
				wantOrder(t, md,
					"| 512 | 400 | 5000 | 8.00 | — | — | 25 | — |",
					"| 2048 | 1282 | 5000 | 10.00 | 20.00 | 0.50× | 30 | 60 |",
					"| 8192 | 5500 | 1250 | 12.00 | 30.00 | 0.40× | 40 | 80 |")
			},
		},
		{
			name: "as fast as possible",
			check: func(t *testing.T, md string) {
				wantOrder(t, md,
					"| proxy | 20000 | 25.00 | 35 | 3.0 | 7.5 |",
					"| collector+batch | 15000 | 40.00 | 70 | 4.0 | 9.0 |")
			},
		},
		{
			name: "failures and runs behind their rate",
			check: func(t *testing.T, md string) {
				wantLine(t, md, "- `"+on(tgFatLoad, sysCollectorBatch).String()+"`: exit status 1")
				wantLine(t, md, "- `"+on(tgSmallLoad, sysProxy).String()+"`: no span reached the sink")
				wantLine(t, md, "- `"+scenario{Group: groupSize, System: sysProxy, Generator: genLoadgen, Protocol: "http",
					Compression: "gzip", OutputBytes: 8192, SpansPerExport: 100, Rate: 1250}.String()+"`: 1000 spans/s of 1250")
			},
		},
		{
			name: "profile",
			check: func(t *testing.T, md string) {
				if !strings.Contains(md, "1000000 spans, 1.50 CPU-s by /proc, 1.5 µs a span (<code>proxy-cpu.pprof</code>)</summary>\n\n```\nflat  flat%\n```") {
					t.Error("no profile summary with 1.5 µs a span")
				}
			},
		},
		{
			name: "tables left out without their runs",
			edit: func(res *Results) {
				res.Runs = slices.DeleteFunc(res.Runs, func(m Measurement) bool { return m.Group != groupMatrix })
				res.Profiles = nil
			},
			check: func(t *testing.T, md string) {
				for _, title := range []string{"### Feedback to annotation", "### CPU per span against span size", "### As fast as possible", "<details>"} {
					if strings.Contains(md, title) {
						t.Errorf("%q without its runs", title)
					}
				}
				wantLine(t, md, "### Every load: the proxy against both Collectors and the floor, 5000 spans/s")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := fixture()
			if tt.edit != nil {
				tt.edit(&res)
			}
			md := res.Markdown()
			tt.check(t, md)
			if t.Failed() {
				t.Logf("markdown:\n%s", md)
			}
		})
	}
}

// TestMarkdownOfResultsFile reads a few runs of a real results.json (trimmed
// from bench/results) and finds the rows bench/results/results.md has for
// them: a renamed JSON field fails here, not in plot.py or an old report.
func TestMarkdownOfResultsFile(t *testing.T) {
	b, err := os.ReadFile("testdata/results.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var res Results
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	md := res.Markdown()
	for _, line := range []string{
		"| http | gzip | LLM-shaped | 100 | 1282 | **15.25** | 91.27 | 72.00 | 9.75 | 0.17× | 0.21× | 1.56× | 0.14× | 0.71× | 8.7 | 580 |",
		"| durable state on (default) | 159 | 0s | 20 | 159 | 62.4 | 115.3 | 158.0 | 4.6 | 8.4 | 16.75 |",
	} {
		wantLine(t, md, line)
	}
	if !strings.Contains(md, "LLM-shaped load over http, gzip, 100 spans an export: 300100 spans, 3.60 CPU-s by /proc, 12.0 µs a span") {
		t.Error("no profile summary")
	}
	if t.Failed() {
		t.Logf("markdown:\n%s", md)
	}
}

func wantPrefix(t *testing.T, md, prefix string) {
	t.Helper()
	if !strings.HasPrefix(md, prefix) {
		t.Errorf("markdown does not start with\n%s", prefix)
	}
}

// wantLine wants line as a whole line of md.
func wantLine(t *testing.T, md, line string) {
	t.Helper()
	if !slices.Contains(strings.Split(md, "\n"), line) {
		t.Errorf("no line\n%s", line)
	}
}

// wantOrder wants a line starting with each prefix, in this order.
func wantOrder(t *testing.T, md string, prefixes ...string) {
	t.Helper()
	lines := strings.Split(md, "\n")
	at := -1
	for _, p := range prefixes {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, p) })
		switch {
		case i < 0:
			t.Errorf("no line starting with\n%s", p)
		case i < at:
			t.Errorf("line starting with\n%s\ncomes before the one above it", p)
		default:
			at = i
		}
	}
}
