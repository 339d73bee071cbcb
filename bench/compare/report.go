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

// find returns the run of sys under the load of sc (its group, generator,
// protocol, compression, spans and export size), if it succeeded.
func (res Results) find(sc scenario, sys string) *Measurement {
	for i := range res.Runs {
		m := &res.Runs[i]
		if m.Group == sc.Group && m.System == sys && m.Generator == sc.Generator && m.Protocol == sc.Protocol &&
			m.Compression == sc.Compression && m.OutputBytes == sc.OutputBytes && m.AttrBytes == sc.AttrBytes &&
			m.SpansPerExport == sc.SpansPerExport && m.FeedbackDelay == sc.FeedbackDelay && m.Error == "" {
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

func cpuOf(m *Measurement) *float64 {
	if m == nil {
		return nil
	}
	return m.CPUPerMSpans
}

// floorOf is the sink's CPU per span in the direct run: what only
// receiving and counting the load costs.
func floorOf(m *Measurement) *float64 {
	if m == nil || m.SinkCPUPerMSpans == 0 {
		return nil
	}
	v := m.SinkCPUPerMSpans
	return &v
}

// spansName names a load's spans for a table.
func spansName(m *Measurement) string {
	switch {
	case m.Generator == genTelem && m.AttrBytes > 0:
		return "telemetrygen 1.3 KB"
	case m.Generator == genTelem:
		return "telemetrygen small"
	}
	return "LLM-shaped"
}

// Markdown renders the tables.
func (res Results) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("Run of %s (%.0f s in all) of the proxy at %s: %s; Collector %s; %.0f s measured per run after a warm-up.\n\n",
		res.Started.Format("2006-01-02 15:04 MST"), res.Seconds, cmp.Or(res.Commit, "an unrecorded commit"), res.Machine, res.CollectorVersion, res.Duration)
	p("**The proxy runs as users run it: its defaults, so with its durable state on** (a data directory, fresh for each run, " +
		"under a temporary $XDG_STATE_HOME): every export is forwarded to Phoenix (here the sink) before the app is answered, " +
		"and its spans are indexed once Phoenix has them; the index is written to its store (`state.db`, no fsync: " +
		"`--data-sync` off, the default) every 100 ms; the disk queue holds exports only while Phoenix is unavailable, " +
		"which it never is here. *proxy-memory* is `--data-dir=-`: everything in memory. " +
		"The Collector runs with its defaults (its exporter's sending queue in memory: it answers the app before the upstream has the spans). " +
		"All send to the same counting sink with the same compression as they receive. " +
		"CPU-s per million spans is CPU µs per span, user + system from /proc.\n\n")

	var matrix []*Measurement
	for i := range res.Runs {
		if m := &res.Runs[i]; m.Group == groupMatrix && m.System == sysProxy {
			matrix = append(matrix, m)
		}
	}
	if len(matrix) > 0 {
		p("### Every load: the proxy against both Collectors and the floor, %.0f spans/s\n\n", res.Rate)
		p("Each row is one load, sent to each system in turn. *Floor* is the sink's own CPU when the load is sent straight to it " +
			"(a process that only receives and counts); *floor × Collector+batch* is the least any system that receives the load could reach, " +
			"against the batched Collector. LLM-shaped exports are traces of 5 spans (the LLM span carries a 2 KB output.value, " +
			"1.3 KB a span on average); telemetrygen's are traces of 10 spans, small (~150 B) or with a 1.2 KB attribute (1.3 KB a span).\n\n")
		p("| protocol | compression | spans | spans/export | bytes/span | proxy CPU-s/M spans | Collector | Collector+batch | floor (sink) | proxy × Collector | proxy × Collector+batch | proxy × floor | floor × Collector+batch | proxy peak RSS × Collector+batch | proxy p99 ms | spans per upstream request |\n")
		p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		var over []string
		worst, worstFloor := 0.0, 0.0
		for _, m := range matrix {
			c, cb, d := res.find(m.scenario, sysCollector), res.find(m.scenario, sysCollectorBatch), res.find(m.scenario, sysDirect)
			bytesPerSpan := m.BytesPerSpan
			if bytesPerSpan == 0 && d != nil {
				bytesPerSpan = d.BytesPerSpan
			}
			var brss *float64
			if cb != nil {
				brss = cb.PeakRSSMB
			}
			perReq := "—"
			if m.UpstreamRequests > 0 {
				perReq = fmt.Sprintf("%.0f", float64(m.SpansDelivered)/float64(m.UpstreamRequests))
			}
			p("| %s | %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				m.Protocol, m.Compression, spansName(m), m.SpansPerExport, bytesPerSpan,
				f1(m.CPUPerMSpans, "**%.2f**"), f1(cpuOf(c), "%.2f"), f1(cpuOf(cb), "%.2f"), f1(floorOf(d), "%.2f"),
				ratio(m.CPUPerMSpans, cpuOf(c)), ratio(m.CPUPerMSpans, cpuOf(cb)), ratio(m.CPUPerMSpans, floorOf(d)),
				ratio(floorOf(d), cpuOf(cb)), ratio(m.PeakRSSMB, brss), ms(m.P99ms), perReq)
			if m.CPUPerMSpans == nil {
				continue
			}
			for _, other := range []*Measurement{c, cb} {
				if other != nil && other.CPUPerMSpans != nil && *other.CPUPerMSpans > 0 {
					r := *m.CPUPerMSpans / *other.CPUPerMSpans
					worst = max(worst, r)
					if r > 0.5 {
						over = append(over, fmt.Sprintf("%s %s %s %d/export (%.2f× %s)", m.Protocol, m.Compression, spansName(m), m.SpansPerExport, r, other.System))
					}
				}
			}
			if f := floorOf(d); f != nil && *f > 0 {
				worstFloor = max(worstFloor, *m.CPUPerMSpans / *f)
			}
		}
		p("\n")
		floorBound := 0
		for _, m := range matrix {
			if f, cb := floorOf(res.find(m.scenario, sysDirect)), cpuOf(res.find(m.scenario, sysCollectorBatch)); f != nil && cb != nil && *f >= 0.45**cb {
				floorBound++
			}
		}
		p("On %d of the %d loads the floor alone is 0.45× the batched Collector or more.\n\n", floorBound, len(matrix))
		if len(over) == 0 {
			p("**Every load at or under 0.5× both Collectors** (the highest ratio: %.2f×). Highest ratio to the floor: %.2f×.\n\n", worst, worstFloor)
		} else {
			p("**Over 0.5×** (%d of %d comparisons): %s. Highest ratio to the floor: %.2f×.\n\n", len(over), 2*len(matrix), strings.Join(over, "; "), worstFloor)
		}
	}

	var lat []*Measurement
	for i := range res.Runs {
		if m := &res.Runs[i]; m.Group == groupLatency && m.Feedback != nil {
			lat = append(lat, m)
		}
	}
	if len(lat) > 0 {
		p("### Feedback to annotation under load (OTLP/HTTP, gzip, %.0f spans/s, 100-span exports)\n\n", res.Rate)
		p("Feedback (a thumbs-up, `POST /feedback` with the server token) for the first response of an export, at the rate below, sent " +
			"at once after the proxy answered the export (the span is indexed by then: the proxy answers once Phoenix has it) or a second " +
			"later (as a user clicks). The time is from the POST to the annotation reaching the sink that stands in for Phoenix's REST API.\n\n")
		p("| proxy | feedback sent | after the export | feedbacks/s | annotated | p50 ms | p99 ms | max ms | export p50 ms | export p99 ms | CPU-s per M spans |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, m := range lat {
			name := "durable state on (default)"
			if m.System == sysProxyMemory {
				name = "memory only (`--data-dir=-`)"
			}
			fb := m.Feedback
			p("| %s | %d | %s | %.0f | %d | %.1f | %.1f | %.1f | %s | %s | %s |\n", name, fb.Sent, m.FeedbackDelay, m.FeedbackRate,
				fb.Annotated, fb.P50ms, fb.P99ms, fb.Maxms, ms(m.P50ms), ms(m.P99ms), f1(m.CPUPerMSpans, "%.2f"))
		}
		p("\n")
	}

	var sizes []*Measurement
	for i := range res.Runs {
		m := &res.Runs[i]
		if m.System == sysProxy && m.Generator == genLoadgen && m.Protocol == "http" && m.Compression == "gzip" && m.SpansPerExport == 100 &&
			m.Error == "" && (m.Group == groupSize || m.Group == groupMatrix) {
			sizes = append(sizes, m)
		}
	}
	if len(sizes) > 1 {
		p("### CPU per span against span size (OTLP/HTTP, gzip, 100-span exports)\n\n")
		p("Over 2 KB of output.value, the rate is lowered in proportion, so that the bytes per second stay those of the matrix.\n\n")
		p("| output.value bytes | bytes per span | spans/s | proxy CPU-s per M spans | Collector+batch CPU-s per M spans | ratio | proxy peak RSS MB | Collector+batch peak RSS MB |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, m := range sortedBySize(sizes) {
			c := res.find(m.scenario, sysCollectorBatch)
			var ccpu, crss *float64
			if c != nil {
				ccpu, crss = c.CPUPerMSpans, c.PeakRSSMB
			}
			p("| %d | %.0f | %.0f | %s | %s | %s | %s | %s |\n", m.OutputBytes, m.BytesPerSpan, m.Rate, f1(m.CPUPerMSpans, "%.2f"), f1(ccpu, "%.2f"),
				ratio(m.CPUPerMSpans, ccpu), f1(m.PeakRSSMB, "%.0f"), f1(crss, "%.0f"))
		}
		p("\n![CPU per span against span size](images/cpu-per-span.png)\n\n")
	}

	maxSc := scenario{Group: groupMax, Generator: genLoadgen, Protocol: "http", Compression: "gzip", OutputBytes: defaultOutputBytes, SpansPerExport: 100}
	if res.find(maxSc, sysProxy) != nil {
		p("### As fast as possible (OTLP/HTTP, gzip, 8 exports in flight)\n\n")
		p("| system | spans/s | CPU-s per M spans | peak RSS MB | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n")
		for _, sys := range []string{sysProxy, sysCollectorBatch} {
			if m := res.find(maxSc, sys); m != nil {
				p("| %s | %.0f | %s | %s | %s | %s |\n", sys, m.SpansPerS, f1(m.CPUPerMSpans, "%.2f"), f1(m.PeakRSSMB, "%.0f"), ms(m.P50ms), ms(m.P99ms))
			}
		}
		p("\nThe load generator, the system and the sink share the machine's cores, so this is the most the three reach together.\n\n")
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
		if m.Rate > 0 && m.SpansPerS > 0 && m.SpansPerS < 0.9*m.Rate {
			failed = append(failed, fmt.Sprintf("- `%s`: %.0f spans/s of %.0f", m.scenario, m.SpansPerS, m.Rate))
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
		p("<details><summary>CPU profile of the proxy (durable state on), LLM-shaped load over %s, %s, %d spans an export: %d spans, %.2f CPU-s by /proc, %.1f µs a span (<code>%s</code>)</summary>\n\n```\n%s```\n</details>\n\n",
			pr.Protocol, pr.Compression, pr.SpansPerExport, pr.Spans, pr.CPUSeconds, per, pr.File, pr.Top)
	}
	return b.String()
}

func sortedBySize(ms []*Measurement) []*Measurement {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b *Measurement) int { return cmp.Compare(a.OutputBytes, b.OutputBytes) })
	return out
}
