package main

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is everything one comparison measured; bench/plot.py and the
// markdown read it.
type Results struct {
	Started          time.Time     `json:"started"`
	Seconds          float64       `json:"seconds"`
	Machine          string        `json:"machine"`
	Commit           string        `json:"commit,omitempty"`
	CollectorVersion string        `json:"collector_version"`
	Duration         float64       `json:"run_seconds"`
	Rate             float64       `json:"rate"`
	Runs             []Measurement `json:"runs"`
	Profiles         []Profile     `json:"profiles,omitempty"`
}

// machine describes where the numbers come from, load included: other
// work on the machine slows every system, and shows in latency first.
func machine() string {
	s := fmt.Sprintf("%d cores, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				s += ", " + strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			s += fmt.Sprintf(", load average at start %s %s %s", f[0], f[1], f[2])
		}
	}
	return s
}

func (res Results) find(group, sys, proto, comp string, size int) *Measurement {
	for i := range res.Runs {
		m := &res.Runs[i]
		if m.Group == group && m.System == sys && m.Protocol == proto && m.Compression == comp && m.OutputBytes == size && m.Error == "" {
			return m
		}
	}
	return nil
}

func f1(p *float64, format string) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf(format, *p)
}

func ratio(a, b *float64) string {
	if a == nil || b == nil || *b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", *a / *b)
}

func ms(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

// Markdown renders the tables.
func (res Results) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("Run of %s (%.0f s in all) of the proxy at %s: %s; Collector %s; %.0f s measured per run after a warm-up.\n\n",
		res.Started.Format("2006-01-02 15:04 MST"), res.Seconds, cmp.Or(res.Commit, "an unrecorded commit"), res.Machine, res.CollectorVersion, res.Duration)

	systemsTable := func(group, proto string, comps []string, size int) {
		p("| compression | system | spans/s | CPU-s per M spans | × Collector+batch | × Collector | peak RSS MB | × Collector+batch | p50 ms | p99 ms | spans per upstream request | sink CPU-s per M spans |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, comp := range comps {
			batch := res.find(group, sysCollectorBatch, proto, comp, size)
			plain := res.find(group, sysCollector, proto, comp, size)
			for _, sys := range []string{sysProxy, sysCollector, sysCollectorBatch, sysDirect} {
				m := res.find(group, sys, proto, comp, size)
				if m == nil {
					continue
				}
				var bcpu, pcpu, brss *float64
				if batch != nil {
					bcpu, brss = batch.CPUPerMSpans, batch.PeakRSSMB
				}
				if plain != nil {
					pcpu = plain.CPUPerMSpans
				}
				name := sys
				if sys == sysProxy {
					name = "**proxy (ours)**"
				}
				perReq := "—"
				if m.UpstreamRequests > 0 {
					perReq = fmt.Sprintf("%.0f", float64(m.SpansDelivered)/float64(m.UpstreamRequests))
				}
				p("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n",
					comp, name, m.SpansPerS, f1(m.CPUPerMSpans, "%.2f"), ratio(m.CPUPerMSpans, bcpu), ratio(m.CPUPerMSpans, pcpu),
					f1(m.PeakRSSMB, "%.0f"), ratio(m.PeakRSSMB, brss), ms(m.P50ms), ms(m.P99ms), perReq, m.SinkCPUPerMSpans)
			}
		}
		p("\n")
	}

	if m := res.find(groupMain, sysProxy, "http", "gzip", 2048); m != nil {
		p("### LLM-shaped load over OTLP/HTTP, %.0f spans/s, compression on in both and off in both\n\n", res.Rate)
		p("Exports of 20 traces × 5 spans (100 spans, %.0f bytes a span on average); the LLM span carries a 2 KB output.value. ", m.BytesPerSpan)
		p("The index is on in the proxy. Direct is the load generator straight into the sink.\n\n")
		systemsTable(groupMain, "http", []string{"gzip", "none"}, 2048)
	}
	if res.find(groupGRPC, sysProxy, "grpc", "gzip", 2048) != nil {
		p("### The same over OTLP/gRPC, gzip\n\n")
		systemsTable(groupGRPC, "grpc", []string{"gzip"}, 2048)
	}

	var sizes []*Measurement
	for i := range res.Runs {
		m := &res.Runs[i]
		if m.System == sysProxy && m.Protocol == "http" && m.Compression == "gzip" && m.Rate > 0 && m.Error == "" &&
			(m.Group == groupSize || m.Group == groupMain) {
			sizes = append(sizes, m)
		}
	}
	if len(sizes) > 1 {
		p("### CPU per span against span size (OTLP/HTTP, gzip)\n\n")
		p("Over 2 KB of output.value, the rate is lowered in proportion, so that the bytes per second stay those of the main table.\n\n")
		p("| output.value bytes | bytes per span | spans/s | proxy CPU-s per M spans | Collector+batch CPU-s per M spans | ratio | proxy peak RSS MB | Collector+batch peak RSS MB |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, m := range sortedBySize(sizes) {
			c := res.find(m.Group, sysCollectorBatch, "http", "gzip", m.OutputBytes)
			var ccpu, crss *float64
			if c != nil {
				ccpu, crss = c.CPUPerMSpans, c.PeakRSSMB
			}
			p("| %d | %.0f | %.0f | %s | %s | %s | %s | %s |\n", m.OutputBytes, m.BytesPerSpan, m.Rate, f1(m.CPUPerMSpans, "%.2f"), f1(ccpu, "%.2f"),
				ratio(m.CPUPerMSpans, ccpu), f1(m.PeakRSSMB, "%.0f"), f1(crss, "%.0f"))
		}
		p("\n![CPU per span against span size](images/cpu-per-span.png)\n\n")
	}

	if res.find(groupBatch, sysProxy, "http", "gzip", 2048) != nil {
		p("### CPU per span against spans per export (OTLP/HTTP, gzip, %.0f spans/s, 2 KB output.value)\n\n", res.Rate)
		p("| spans per export | proxy CPU-s per M spans | Collector CPU-s per M spans | Collector+batch CPU-s per M spans | proxy × Collector+batch | proxy p99 ms | Collector+batch p99 ms |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, traces := range []int{2, defaultTraces, 100} {
			group := groupBatch
			if traces == defaultTraces {
				group = groupMain
			}
			get := func(sys string) *Measurement {
				for i := range res.Runs {
					m := &res.Runs[i]
					if m.Group == group && m.System == sys && m.Protocol == "http" && m.Compression == "gzip" &&
						m.OutputBytes == 2048 && cmp.Or(m.Traces, defaultTraces) == traces && m.Error == "" {
						return m
					}
				}
				return nil
			}
			px, c, cb := get(sysProxy), get(sysCollector), get(sysCollectorBatch)
			cpu := func(m *Measurement) *float64 {
				if m == nil {
					return nil
				}
				return m.CPUPerMSpans
			}
			p99 := func(m *Measurement) string {
				if m == nil {
					return "—"
				}
				return ms(m.P99ms)
			}
			p("| %d | %s | %s | %s | %s | %s | %s |\n", traces*5, f1(cpu(px), "%.2f"), f1(cpu(c), "%.2f"), f1(cpu(cb), "%.2f"),
				ratio(cpu(px), cpu(cb)), p99(px), p99(cb))
		}
		p("\n")
	}

	if res.find(groupMax, sysProxy, "http", "gzip", 2048) != nil {
		p("### As fast as possible (OTLP/HTTP, gzip, 8 exports in flight)\n\n")
		p("| system | spans/s | CPU-s per M spans | peak RSS MB | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n")
		for _, sys := range []string{sysProxy, sysCollectorBatch} {
			if m := res.find(groupMax, sys, "http", "gzip", 2048); m != nil {
				p("| %s | %.0f | %s | %s | %s | %s |\n", sys, m.SpansPerS, f1(m.CPUPerMSpans, "%.2f"), f1(m.PeakRSSMB, "%.0f"), ms(m.P50ms), ms(m.P99ms))
			}
		}
		p("\nThe load generator, the system and the sink share the machine's cores, so this is the most the three reach together.\n\n")
	}

	if res.find(groupTelem, sysProxy, "grpc", "gzip", 0) != nil {
		p("### A second, independent load: the Collector's telemetrygen (OTLP/gRPC, gzip, %.0f spans/s)\n\n", res.Rate)
		p("telemetrygen sends small generic spans (a root and four children, no LLM attributes) in batches of 100.\n\n")
		systemsTable(groupTelem, "grpc", []string{"gzip"}, 0)
	}

	var failed []string
	for _, m := range res.Runs {
		if m.Error != "" {
			failed = append(failed, fmt.Sprintf("- `%s`: %s", m.scenario, m.Error))
		}
		if m.Failed > 0 || m.Late > 0 {
			line := fmt.Sprintf("- `%s`: %d exports failed, %d started late", m.scenario, m.Failed, m.Late)
			if len(m.Errors) > 0 {
				line += ": " + strings.Join(m.Errors, "; ")
			}
			failed = append(failed, line)
		}
	}
	if len(failed) > 0 {
		p("Runs with failures or that fell behind their rate:\n\n%s\n\n", strings.Join(failed, "\n"))
	}
	for _, pr := range res.Profiles {
		per := 0.0
		if pr.Spans > 0 {
			per = pr.CPUSeconds / float64(pr.Spans) * 1e6
		}
		p("<details><summary>CPU profile of the proxy, main load at twice the rate, compression %s: %d spans, %.2f CPU-s by /proc, %.1f µs a span (<code>%s</code>)</summary>\n\n```\n%s```\n</details>\n\n",
			pr.Compression, pr.Spans, pr.CPUSeconds, per, pr.File, pr.Top)
	}
	return b.String()
}

func sortedBySize(ms []*Measurement) []*Measurement {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b *Measurement) int { return cmp.Compare(a.OutputBytes, b.OutputBytes) })
	return out
}
