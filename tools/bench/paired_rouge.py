#!/usr/bin/env python3
"""Paired comparison of a per-article ROUGE score between techniques of one
`udaci bench --json` run: how much quality a quantizer or pruner costs, with a
95% bootstrap interval that is much narrower than comparing the two means'
own intervals, because every article is scored by both techniques (most
articles even get the same headline, a difference of exactly 0).

    python3 tools/bench/paired_rouge.py RUN.json [--baseline kv-cache]
        [--techniques int8,int4] [--metric rougeL] [--resamples 10000] [--seed 0]

For each technique: articles compared, identical headlines, the mean score of
both, the relative difference (technique / baseline - 1) and its 95%
percentile bootstrap interval (articles resampled with replacement, the same
draw for both sides). Prints one JSON object; exit status 0, or 2 with a
message for unreadable input, an unknown technique or a missing score.
"""
import argparse
import json
import random
import sys

from compare_headlines import read_results


def fail(message):
    print(f"paired_rouge: {message}", file=sys.stderr)
    sys.exit(2)


def load(path):
    return {r.get("technique"): r for r in read_results(path, fail)}


def scores(result, metric):
    out = {}
    for item in result.get("items", []):
        if metric not in item or "id" not in item:
            fail(f"technique '{result.get('technique')}': an item has no '{metric}' or 'id'")
        out[item["id"]] = (float(item[metric]), item.get("headline"))
    return out


def compare(base, other, resamples, rng):
    ids = sorted(set(base) & set(other))
    if not ids:
        return None
    b = [base[i][0] for i in ids]
    o = [other[i][0] for i in ids]
    n = len(ids)
    mb, mo = sum(b) / n, sum(o) / n
    rel = (mo / mb - 1.0) if mb > 0 else 0.0
    draws = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        sb = sum(b[i] for i in idx)
        so = sum(o[i] for i in idx)
        draws.append(so / sb - 1.0 if sb > 0 else 0.0)
    draws.sort()
    lo = draws[int(0.025 * (resamples - 1))]
    hi = draws[int(0.975 * (resamples - 1))]
    return {
        "compared": n,
        "identical_headlines": sum(base[i][1] == other[i][1] for i in ids),
        "baseline_mean": mb,
        "mean": mo,
        "relative_difference": rel,
        "relative_ci95": [lo, hi],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--baseline", default="kv-cache")
    p.add_argument("--techniques", default="", help="comma-separated; default: every other technique")
    p.add_argument("--metric", default="rougeL")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.resamples < 100:
        fail("--resamples must be at least 100")
    runs = load(a.run)
    if a.baseline not in runs:
        fail(f"technique '{a.baseline}' is not in '{a.run}' (it has: {', '.join(map(str, runs))})")
    names = [t for t in a.techniques.split(",") if t] or [t for t in runs if t != a.baseline]
    base = scores(runs[a.baseline], a.metric)
    out = {"run": a.run, "baseline": a.baseline, "metric": a.metric, "resamples": a.resamples, "techniques": {}}
    for t in names:
        if t not in runs:
            fail(f"technique '{t}' is not in '{a.run}'")
        rng = random.Random(a.seed)
        out["techniques"][t] = compare(base, scores(runs[t], a.metric), a.resamples, rng)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
