#!/usr/bin/env python3
"""Charts of a `udaci bench --json` result document.

    python3 tools/bench/plot_bench.py results.json --out docs/bench [--title TEXT]

Writes three PNGs into --out and prints their paths:
  <stem>-speed.png    per-headline latency p50 (with p95 whiskers) and decode tokens/s
  <stem>-memory.png   peak resident memory, weight bytes and KV-cache bytes
  <stem>-quality.png  ROUGE-L (95% bootstrap interval) against headlines/s

Techniques the run listed as unavailable or failed are named under the charts,
never drawn as bars. Exit status 2 with a message for a file that is not a
udaci-bench/1 document.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MB = 1024.0 * 1024.0


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"plot_bench: cannot read {path}: {e}")
    if not isinstance(doc, dict) or doc.get("schema") != "udaci-bench/1":
        raise SystemExit(f"plot_bench: {path} is not a udaci-bench/1 document")
    if not doc.get("results"):
        raise SystemExit(f"plot_bench: {path} has no results to plot")
    return doc


def footnote(doc):
    parts = [f"{u['technique']}: unavailable" for u in doc.get("unavailable", [])]
    parts += [f"{u['technique']}: failed" for u in doc.get("failed", [])]
    m = doc.get("machine", {})
    s = doc.get("settings", {})
    line = (f"{m.get('cpu', '?')}, {m.get('threads', '?')} threads; {s.get('samples', '?')} articles, "
            f"batch {s.get('batch', '?')}, seed {s.get('seed', '?')}; commit {doc.get('git_commit', '?')}")
    return line + ("\n" + "; ".join(parts) if parts else "")


def speed_chart(doc, path, title):
    res = doc["results"]
    names = [r["technique"] for r in res]
    p50 = [r["latency_ms_p50"] for r in res]
    p95 = [r["latency_ms_p95"] for r in res]
    tps = [r["decode_tokens_per_s"] for r in res]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.45 * len(res) + 2.2))
    y = range(len(res))
    a.barh(y, p50, xerr=[[0] * len(res), [max(0.0, h - m) for h, m in zip(p95, p50)]],
           color="#4472c4", capsize=3)
    a.set_yticks(list(y), names)
    a.invert_yaxis()
    a.set_xscale("log")
    a.set_xlabel("latency per headline, ms (p50, whisker to p95; log scale)")
    b.barh(y, tps, color="#70ad47")
    b.set_yticks(list(y), names)
    b.invert_yaxis()
    b.set_xlabel("decode tokens/s (batch %s)" % doc["settings"].get("batch", 1))
    for i, v in enumerate(tps):
        b.text(v, i, f" {v:.1f}", va="center", fontsize=8)
    fig.suptitle(title + " — speed")
    fig.text(0.01, 0.005, footnote(doc), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory_chart(doc, path, title):
    res = doc["results"]
    names = [r["technique"] for r in res]
    series = [("peak RSS", [r["peak_rss_bytes"] / MB for r in res], "#4472c4"),
              ("weights", [r["weight_bytes"] / MB for r in res], "#ed7d31"),
              ("KV cache (peak)", [r["kv_cache_bytes"] / MB for r in res], "#a5a5a5")]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(res) + 2.2))
    h = 0.27
    for k, (label, vals, color) in enumerate(series):
        ax.barh([i + (k - 1) * h for i in range(len(res))], vals, height=h, label=label, color=color)
    ax.set_yticks(list(range(len(res))), names)
    ax.invert_yaxis()
    ax.set_xlabel("MB")
    ax.legend(loc="lower right")
    ax.set_title(title + " — memory")
    fig.text(0.01, 0.005, footnote(doc), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quality_chart(doc, path, title):
    res = doc["results"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, r in enumerate(res):
        x = r["headlines_per_s"]
        m = r["rougeL"]
        lo, hi = r["rouge_ci95"]["rougeL"]
        ax.errorbar([x], [m], yerr=[[m - lo], [hi - m]], fmt="o", capsize=3)
        ax.annotate(r["technique"], (x, m), textcoords="offset points", xytext=(5, (4, -10, 12)[i % 3]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("headlines/s (log scale)")
    ax.set_ylabel("ROUGE-L F vs reference headline (95% bootstrap interval)")
    ax.set_title(title + " — quality against speed")
    ax.grid(True, alpha=0.3)
    fig.text(0.01, 0.005, footnote(doc), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="udaci bench --json output")
    ap.add_argument("--out", required=True, help="folder for the PNGs")
    ap.add_argument("--stem", default="bench", help="file name prefix (default: bench)")
    ap.add_argument("--title", default="udaci bench", help="chart title")
    a = ap.parse_args(argv)
    doc = load(a.input)
    os.makedirs(a.out, exist_ok=True)
    paths = []
    for suffix, fn in (("speed", speed_chart), ("memory", memory_chart), ("quality", quality_chart)):
        p = os.path.join(a.out, f"{a.stem}-{suffix}.png")
        fn(doc, p, a.title)
        paths.append(p)
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            sys.exit(2)
        raise
