"""Plots of the benchmark results for docs/benchmarks.md.

    target/peers-venv/bin/python benches/peers/plot.py [RESULTS_DIR] [PLOTS_DIR]

Reads peers.json, latency.json (and latency-*.json: other worker counts, spinning workers) and
memory.json, whichever exist, from RESULTS_DIR (default
target/bench-results) and writes throughput.png, latency.png and memory.png into PLOTS_DIR
(default docs/plots).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RESULTS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "bench-results")
PLOTS = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs", "plots")
os.makedirs(PLOTS, exist_ok=True)


def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def throughput(peers):
    jobs = [j for j in ("windows", "self_trades") if any(r["job"] == j for r in peers["rows"])]
    fig, axes = plt.subplots(1, len(jobs), figsize=(6.5 * len(jobs), 4.2), squeeze=False)
    for ax, job in zip(axes[0], jobs):
        rows = [r for r in peers["rows"] if r["job"] == job and "wall_seconds" in r]
        labels = [f"{r['system']}\n{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
                  if r["system"] in ("surveil", "Bytewax", "PyFlink") else r["system"].replace(" (", "\n(")
                  for r in rows]
        values = [r["trades_per_second"] / 1e6 for r in rows]
        colors = ["#1f77b4" if r["system"] == "surveil" else "#999999" for r in rows]
        bars = ax.barh(range(len(rows)), values, color=colors)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("million trades per second, end to end (log scale)")
        ax.set_title(f"{job.replace('_', '-')} job, {peers['trades'] / 1e6:.0f} M trades, same file, same run")
        for bar, r in zip(bars, rows):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {r['wall_seconds']:.2f} s",
                    va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(PLOTS, "throughput.png"), dpi=110)
    plt.close(fig)


def latency(results):
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for r in results:
        xs = [p for p, _ in r["distribution"] if p < 100]
        ys = [v for p, v in r["distribution"] if p < 100]
        # x as "nines": 1 / (1 - p)
        ax.plot([1 / (1 - p / 100) for p in xs], ys, marker="o", markersize=3,
                label=f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
                + (" spinning" if r.get("spin") else "")
                + f", {r['offered_per_second'] / 1e6:g} M events/s, epoch {r['epoch_ns'] / 1e3:g} µs"
                + (", restamped" if r.get("restamped") else ""))
    ticks = [0, 50, 90, 99, 99.9, 99.99, 99.999]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1 / (1 - t / 100) for t in ticks], [f"p{t:g}" for t in ticks])
    ax.set_ylabel("latency, µs (log scale)")
    ax.set_title("default job: arrival at the source to output released")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(PLOTS, "latency.png"), dpi=110)
    plt.close(fig)


def memory(result):
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.plot([s[0] for s in result["samples"]], [s[1] / 2**20 for s in result["samples"]])
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"default job, {result['events'] / 1e6:.0f} M events, {result['workers']} workers: resident memory")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(PLOTS, "memory.png"), dpi=110)
    plt.close(fig)


peers = load("peers.json")
if peers:
    throughput(peers)
# latency.json, then any latency-*.json beside it (other worker counts, spinning workers).
latency_results = load("latency.json") or []
names = os.listdir(RESULTS) if os.path.isdir(RESULTS) else []
for extra in sorted(f for f in names if f.startswith("latency-") and f.endswith(".json")):
    latency_results += load(extra) or []
if latency_results:
    latency(latency_results)
memory_result = load("memory.json")
if memory_result:
    memory(memory_result)
print(f"plots in {PLOTS}")
