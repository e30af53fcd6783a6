#!/usr/bin/env python3
"""Chart of a `udaci tune` result (tune.json, schema udaci-tune/1).

    python3 tools/bench/plot_tune.py tune-out/tune.json --out tune-out/pareto.png

One PNG, two panels over the fully measured candidates: ROUGE-L against
headlines/s and peak memory against headlines/s. The Pareto front (on
headlines/s, p95 latency, peak memory and ROUGE-L together) is drawn filled,
the chosen configuration ringed, candidates that miss a budget drawn as
crosses, the fp32 reference as a dashed line; the budgets that bound an axis
are drawn too. `udaci tune` runs this itself when python3 has matplotlib.
Exit status 2 with a message for a file that is not a udaci-tune/1 document.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"plot_tune: cannot read {path}: {e}")
    if not isinstance(doc, dict) or doc.get("schema") != "udaci-tune/1":
        raise SystemExit(f"plot_tune: {path} is not a udaci-tune/1 document")
    if not any(c.get("full") for c in doc.get("candidates", [])):
        raise SystemExit(f"plot_tune: {path} has no fully measured candidate to plot")
    return doc


def short_label(c):
    parts = c["recipe"].split("+")
    return f"{'+'.join(parts)} b{c['batch']} t{c['threads']}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tune_json")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    try:
        doc = load(args.tune_json)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    cands = doc["candidates"]
    pareto = set(doc.get("pareto", []))
    chosen = doc.get("chosen")
    full = [(i, c) for i, c in enumerate(cands) if c.get("full")]
    # Names on the chart: the chosen one, and the front when it is small;
    # otherwise its extremes (least memory, best ROUGE-L). tune.md lists all.
    front = [(i, c) for i, c in full if i in pareto]
    if len(front) <= 5:
        named = {i for i, _ in front}
    else:
        named = {min(front, key=lambda ic: ic[1]["full"]["peak_rss_mb"])[0],
                 max(front, key=lambda ic: ic[1]["full"]["rougeL"])[0]}

    fig, (ax_q, ax_m) = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key, ylabel in ((ax_q, "rougeL", "ROUGE-L (mean F)"), (ax_m, "peak_rss_mb", "peak RSS (MB)")):
        for i, c in full:
            f = c["full"]
            x, y = f["headlines_per_s"], f[key]
            infeasible = c["verdict"] == "infeasible"
            marker = "x" if infeasible else "o"
            face = "tab:blue" if i in pareto else "none"
            if infeasible:
                ax.scatter([x], [y], marker="x", color="tab:red", s=40, zorder=3)
            else:
                ax.scatter([x], [y], marker=marker, facecolors=face, edgecolors="tab:blue", s=45, zorder=3)
            if i == chosen:
                ax.scatter([x], [y], marker="o", facecolors="none", edgecolors="tab:green", s=260, linewidths=2,
                           zorder=4)
                ax.annotate("chosen: " + short_label(c), (x, y), xytext=(8, 8), textcoords="offset points",
                            fontsize=8, color="tab:green")
            elif i in named:
                ax.annotate(short_label(c), (x, y), xytext=(6, -10), textcoords="offset points", fontsize=6,
                            color="0.3")
        ref = (doc.get("reference") or {}).get("figures")
        if ref:
            ax.axhline(ref[key], color="0.5", linestyle="--", linewidth=1)
            ax.annotate("fp32 reference", (ax.get_xlim()[0], ref[key]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="0.4")
        ax.set_xlabel("headlines/s")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    b = doc.get("budgets", {})
    if b.get("min_headlines_per_s"):
        for ax in (ax_q, ax_m):
            ax.axvline(b["min_headlines_per_s"], color="tab:orange", linestyle=":", linewidth=1)
    if b.get("max_memory_mb"):
        ax_m.axhline(b["max_memory_mb"], color="tab:orange", linestyle=":", linewidth=1)
    ax_q.set_title("quality vs speed")
    ax_m.set_title("memory vs speed")
    w = doc.get("workload", {})
    title = args.title or (f"udaci tune — scenario {doc.get('scenario')}, objective {doc.get('objective')}; "
                           f"{w.get('samples')} articles, {w.get('concurrency')} in flight")
    fig.suptitle(title)
    fig.text(0.01, 0.01, "filled: Pareto front (headlines/s, p95 latency, memory, ROUGE-L); ring: chosen; "
             "x: misses a budget; dotted: budgets", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
