"""Plots CPU per span against span size, our proxy against the Collector.

Usage: plot.py RESULTS_JSON OUTPUT_PNG (bench/compare.sh runs it).
CPU-seconds per million spans is the same number as CPU microseconds per span.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

SERIES = [
    ("proxy", "our proxy (index on)", "tab:blue", "o"),
    ("collector+batch", "Collector + batch processor", "tab:orange", "s"),
    ("collector", "Collector, no batch processor", "tab:red", "^"),
]


def points(runs, system):
    pts = {}
    for r in runs:
        if (
            r["system"] == system
            and r["protocol"] == "http"
            and r["compression"] == "gzip"
            and r["generator"] == "loadgen"
            and r["rate"] > 0
            and r["group"] in ("matrix", "size")
            and r.get("spans_per_export") == 100
            and not r.get("error")
            and r.get("cpu_s_per_m_spans")
        ):
            pts[r["bytes_per_span"]] = r["cpu_s_per_m_spans"]
    return sorted(pts.items())


def main(src, dst):
    with open(src) as f:
        res = json.load(f)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for system, label, color, marker in SERIES:
        pts = points(res["runs"], system)
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker=marker, color=color, label=label, linestyle="-" if len(pts) > 1 else "none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    kb = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1024:g} KB" if v >= 1024 else f"{v:g} B")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(kb)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("average encoded span size (bytes; the LLM span's output.value grows)")
    ax.set_ylabel("CPU µs per span (= CPU-s per million spans)")
    ax.set_title("OTLP/HTTP, gzip in and out, 100 spans per export")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, res["machine"][:140], fontsize=6, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
