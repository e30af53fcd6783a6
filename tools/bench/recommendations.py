#!/usr/bin/env python3
"""docs/RECOMMENDATIONS.md from measurements: the report's deployment table
redone on this machine and model (issue #26).

    python3 tools/bench/recommendations.py --edge E/tune.json --server S/tune.json \
        --realtime R/tune.json --cost C/tune.json --cluster cluster.json > docs/RECOMMENDATIONS.md

scripts/recommendations.sh runs the measurements (four `udaci tune` runs and a
`udaci bench` of the parallel plans) and this script in one command. Every
verdict below is computed from the files, so a rerun on another machine or
model says what holds there.
"""
import argparse
import json
import os
import re
import sys

# What the report this project grew from advised, per scenario.
CLAIMS = {
    "edge": "4-bit quantisation + pruning",
    "server": "KV cache + 4-bit quantisation",
    "realtime": "speculative decoding + everything",
    "cluster": "tensor / pipeline parallelism",
    "cost": "(not in the report)",
}
FOUR_BIT = ("int4", "nf4")


def load(path, schema):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"recommendations: cannot read {path}: {e}")
    if doc.get("schema") != schema:
        raise SystemExit(f"recommendations: {path} is not a {schema} document")
    return doc


def parts(recipe):
    return recipe.split("+")


def stored_bits(docs):
    """Bits per weight of the file's own blocks (as-stored), from the resident bytes tune measured
    for as-stored and no-quant (fp32, 32 bits); None when no run measured both."""
    for d in docs:
        w = {c["recipe"].split("+")[1]: c["weights"] for c in d["candidates"] if c.get("weights")}
        if "as-stored" in w and "no-quant" in w and w["no-quant"]["weight_mb"] > 0:
            return 32.0 * w["as-stored"]["weight_mb"] / w["no-quant"]["weight_mb"]
    return None


def is_four_bit(recipe, bits):
    p = parts(recipe)
    quant = p[1] if len(p) > 1 else ""
    if quant.startswith(FOUR_BIT):
        return True
    # as-stored runs the file's blocks: 4-bit when they hold at most ~6 bits a
    # weight (Q4_0 4.5, Q4_1 5, Q4_K 4.5 plus an unquantised norm here and there).
    return quant == "as-stored" and bits is not None and bits <= 6.5


def pruned(recipe):
    return any(x.startswith("prune-") for x in parts(recipe))


def speculative(recipe):
    return any(x.startswith("spec-") or x.startswith("speculative") for x in parts(recipe))


def cached(recipe):
    return parts(recipe)[0] not in ("no-cache", "baseline")


def full_candidates(doc):
    return [c for c in doc["candidates"] if c.get("full")]


def chosen(doc):
    i = doc.get("chosen")
    return doc["candidates"][i] if i is not None else None


def fmt_delta(c):
    d = c.get("rougeL_vs_fp32")
    if not d:
        return "—"
    return f"{d['mean']:+.3f} ({d['ci95'][0]:+.3f} .. {d['ci95'][1]:+.3f})"


def row(scenario, doc):
    c = chosen(doc)
    if c is None:
        closest = [doc["candidates"][i] for i in doc.get("closest", [])]
        miss = "; ".join(closest[0]["misses"]) if closest else "nothing measured fully"
        return (f"| {scenario} | {CLAIMS[scenario]} | none meets the budgets (closest misses: {miss}) "
                "| — | — | — | — | — |")
    f = c["full"]
    threads = f"{c['threads']} thread" + ("s" if c["threads"] != 1 else "")
    return (f"| {scenario} | {CLAIMS[scenario]} | `{c['recipe']}`, batch {c['batch']}, {threads} "
            f"| {f['headlines_per_s']:.2f} | {f['latency_p95_ms']:.0f} | {f['peak_rss_mb']:.0f} "
            f"| {fmt_delta(c)} | {100 * f['degenerate_share']:.0f}% |")


def best_where(doc, pred, key, lowest=False):
    """The fully measured candidate meeting every budget (or any, if none) with the best `key`."""
    cands = [c for c in full_candidates(doc) if pred(c["recipe"])]
    ok = [c for c in cands if not c["misses"]] or cands
    if not ok:
        return None
    return (min if lowest else max)(ok, key=lambda c: c["full"][key])


def decoding_of(c):
    """(repetition penalty, repetition stop) of a candidate; documents before the stop was
    searched lack the field (the engine's default, 8)."""
    m = re.search(r"repetition_penalty=([0-9.]+)", c["recipe"])
    return (float(m.group(1)) if m else 1.0), c.get("repetition_stop", 8)


def decoding_table(scenario, doc):
    """The decoding options a scenario searched (repetition penalty and stop), each measured
    fully on the chosen candidate's weights: what they did to the headlines."""
    space = doc.get("space", {})
    if len(space.get("repetition_stops", [8])) < 2 and len(space.get("repetition_penalties", [1])) < 2:
        return []
    c = chosen(doc)
    if c is None:
        return []
    weights = parts(c["recipe"])[1:3]
    best = {}
    for x in full_candidates(doc):
        if parts(x["recipe"])[1:3] != weights:
            continue
        k = decoding_of(x)
        if k not in best or x["full"]["headlines_per_s"] > best[k]["full"]["headlines_per_s"]:
            best[k] = x
    if len(best) < 2:
        return []
    out = [f"**{scenario}** (weights `{'+'.join(weights)}`; the degenerate floor is "
           f"{100 * doc['budgets'].get('max_degenerate_share', 1):.0f}%):\n",
           "| repetition penalty | repetition stop | degenerate headlines | ROUGE-L | ΔROUGE-L vs fp32 (95% CI) "
           "| headlines/s | verdict |",
           "|--:|--:|--:|--:|---|--:|---|"]
    for (pen, stop), x in sorted(best.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        f = x["full"]
        out.append(f"| {pen:g} | {stop if stop else 'off'} | {100 * f['degenerate_share']:.0f}% | {f['rougeL']:.4f} "
                   f"| {fmt_delta(x)} | {f['headlines_per_s']:.2f} | {x['verdict']}"
                   + (f": {'; '.join(x['misses'])}" if x["misses"] else "") + " |")
    out.append("")
    return out


def verdict_edge(doc, fmt):
    c = chosen(doc)
    lines = []
    if c is None:
        return "No edge candidate met the budgets; see the closest in the tune report."
    four, prn = is_four_bit(c["recipe"], fmt), pruned(c["recipe"])
    lines.append(f"Chosen: `{c['recipe']}` at {c['full']['peak_rss_mb']:.0f} MB peak. "
                 f"4-bit: {'yes' if four else 'no'}; pruning: {'yes' if prn else 'no'}.")
    p = [x for x in doc["candidates"] if pruned(x["recipe"])]
    if not prn and p:
        why = {}
        for x in p:
            why.setdefault(x["verdict"], x)
        ex = "; ".join(f"{v} — e.g. `{x.get('label', x['recipe'])}`: {x['why']}" for v, x in why.items())
        lines.append(f"Pruned candidates lost: {ex}.")
    lines.append("**Claim " + ("holds" if four and prn else "partly holds" if four or prn else "does not hold")
                 + " here.**")
    return " ".join(lines)


def verdict_server(doc, fmt):
    c = chosen(doc)
    if c is None:
        return "No server candidate met the budgets."
    four = is_four_bit(c["recipe"], fmt)
    kv = cached(c["recipe"])
    fp32 = best_where(doc, lambda r: "no-quant" in parts(r), "headlines_per_s")
    s = (f"Chosen: `{c['recipe']}`, batch {c['batch']}: {c['full']['headlines_per_s']:.2f} headlines/s. "
         f"KV cache: {'yes' if kv else 'no'}; 4-bit: {'yes' if four else 'no'}.")
    if fp32 and fp32 is not c:
        s += (f" The best fp32 candidate measured ({fp32['recipe']}, batch {fp32['batch']}) wrote "
              f"{fp32['full']['headlines_per_s']:.2f} headlines/s: the choice is "
              f"{c['full']['headlines_per_s'] / fp32['full']['headlines_per_s']:.2f}x.")
    return s + " **Claim " + ("holds" if four and kv else "partly holds" if four or kv else "does not hold") + " here.**"


def verdict_realtime(doc, fmt):
    c = chosen(doc)
    if c is None:
        return "No realtime candidate met the budgets."
    spec = speculative(c["recipe"])
    best_spec = best_where(doc, speculative, "latency_p95_ms", lowest=True)
    best_greedy = best_where(doc, lambda r: not speculative(r), "latency_p95_ms", lowest=True)
    s = f"Chosen: `{c['recipe']}`: p95 {c['full']['latency_p95_ms']:.0f} ms."
    if best_spec and best_greedy:
        s += (f" Best speculative measured: {best_spec['full']['latency_p95_ms']:.0f} ms "
              f"(`{best_spec['recipe']}`); best without: {best_greedy['full']['latency_p95_ms']:.0f} ms "
              f"(`{best_greedy['recipe']}`): speculation is "
              f"{best_greedy['full']['latency_p95_ms'] / best_spec['full']['latency_p95_ms']:.2f}x on p95.")
    return s + " **Claim " + ("holds" if spec else "does not hold") + " here.**"


def verdict_cluster(bench):
    if bench is None:
        return "Not measured (no --cluster file)."
    res = {r["technique"]: r for r in bench["results"]}
    single = res.get("kv-cache")
    out = []
    for plan in ("tp-2", "pp-2"):
        r = res.get(plan)
        if r is None or single is None:
            continue
        out.append(f"`{plan}` {r['headlines_per_s']:.2f} headlines/s vs one process {single['headlines_per_s']:.2f} "
                   f"({r['headlines_per_s'] / single['headlines_per_s']:.2f}x), p50 latency "
                   f"{r['latency_ms_p50']:.0f} vs {single['latency_ms_p50']:.0f} ms")
    m = bench.get("machine", {})
    if single is not None:
        q = single.get("config", {}).get("quantizer", "?")
        out.append(f"all three with quantizer `{q}`" + (" (fp32, the benchmark's base)" if q == "none" else "")
                   + f", batch {single['batch']}")
    gain = any(res[p]["headlines_per_s"] > 1.05 * single["headlines_per_s"] for p in ("tp-2", "pp-2")
               if p in res and single)
    return ("; ".join(out) + f" — two ranks sharing {m.get('logical_cpus', '?')} cores of one machine. **Claim "
            + ("holds" if gain else "does not hold") + " here** (a cluster of machines, each with its own "
            "memory bandwidth, is where it can pay; tune does not search parallel plans).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for s in ("edge", "server", "realtime", "cost"):
        ap.add_argument(f"--{s}", required=True, help=f"tune.json of --scenario {s}")
    ap.add_argument("--cluster", help="udaci bench --json of kv-cache,tp-2,pp-2")
    ap.add_argument("--command", default="bash scripts/recommendations.sh")
    args = ap.parse_args()
    docs = {s: load(getattr(args, s), "udaci-tune/1") for s in ("edge", "server", "realtime", "cost")}
    bench = load(args.cluster, "udaci-bench/1") if args.cluster else None
    server = docs["server"]
    machine = server.get("machine", {})
    model = server.get("model", "?")
    fmt = stored_bits(docs.values())
    out = []
    out.append("# Deployment recommendations, measured\n")
    out.append("Generated by `" + args.command + "` (tools/bench/recommendations.py over `udaci tune` "
               "results; docs/tune.md). Do not edit by hand: rerun it.\n")
    kernels = f", {machine['kernels']} kernels" if machine.get("kernels") else ""
    out.append(f"- Machine: {machine.get('cpu', '?')}, {machine.get('logical_cpus', '?')} logical CPUs{kernels}; "
               f"udaci {server.get('udaci_version', '?')} at commit {server.get('git_commit', '?')}; "
               f"{server.get('created_utc', '?')}")
    out.append(f"- Model: `{os.path.basename(model)}`" + (f" (its stored blocks: {fmt:.1f} bits per weight as loaded)" if fmt else ""))
    w = server["workload"]
    out.append(f"- Workload: {w['samples']} articles of `{w['input']}` per full run (seed {w['seed']}), "
               f"up to {w['max_new_tokens']} new tokens; each scenario's own concurrency and budget below\n")
    out.append("## The report's table, redone\n")
    out.append("| Scenario | The report advised | Measured choice | Headlines/s | p95 latency (ms) | Peak RSS (MB) "
               "| ΔROUGE-L vs fp32 (95% CI) | Degenerate |")
    out.append("|---|---|---|--:|--:|--:|---|--:|")
    for s in ("edge", "server", "realtime", "cost"):
        out.append(row(s, docs[s]))
    if bench:
        res = {r["technique"]: r for r in bench["results"]}
        best = max((res[p] for p in ("tp-2", "pp-2") if p in res), key=lambda r: r["headlines_per_s"], default=None)
        if best:
            out.append(f"| cluster | {CLAIMS['cluster']} | `{best['technique']}` (udaci bench) "
                       f"| {best['headlines_per_s']:.2f} | {best['latency_ms_p95']:.0f} "
                       f"| {best['peak_rss_bytes'] / 1048576:.0f} | — | — |")
    out.append("")
    out.append("## Each claim against the measurements\n")
    out.append("**Edge — " + CLAIMS["edge"] + ".** " + verdict_edge(docs["edge"], fmt) + "\n")
    out.append("**Single server — " + CLAIMS["server"] + ".** " + verdict_server(docs["server"], fmt) + "\n")
    out.append("**Ultra-low latency — " + CLAIMS["realtime"] + ".** " + verdict_realtime(docs["realtime"], fmt) + "\n")
    out.append("**Cluster — " + CLAIMS["cluster"] + ".** " + verdict_cluster(bench) + "\n")
    c = chosen(docs["cost"])
    if c:
        out.append(f"**Cost (headlines per core-second, not in the report).** `{c['recipe']}`, batch {c['batch']}, "
                   f"{c['threads']} thread{'s' if c['threads'] != 1 else ''}: {c['full']['headlines_per_s'] / c['threads']:.2f} headlines per "
                   "core-second.\n")
    out.append("**The report's future work.** \"Dynamic optimization\" — runtime technique selection by workload — "
               "is adaptive speculation (issue #25: drafts only where the measured step cost says they gain). "
               "\"Quality-aware optimization\" is what `udaci tune` does: every choice above is held to a quality "
               "floor (ROUGE-L paired with the fp32 reference, degenerate headlines), not only to speed.\n")
    decoding = [line for s in ("edge", "server", "realtime", "cost") for line in decoding_table(s, docs[s])]
    if decoding:
        out.append("## Decoding options: what the speed figures do not show\n")
        out.append("The repetition stop (cut a headline where it starts repeating itself, the engine's "
                   "`generation.repetition_stop`) and the greedy decoder's repetition penalty, each measured "
                   "fully on the chosen weights; the best run of each.\n")
        out.extend(decoding)
    out.append("## Charts and data\n")
    for s in ("edge", "server", "realtime", "cost"):
        out.append(f"- {s}: [bench/tune-{s}.png](bench/tune-{s}.png), [bench/tune-{s}.json](bench/tune-{s}.json)")
    if bench:
        out.append("- cluster: [bench/tune-cluster.json](bench/tune-cluster.json)")
    out.append("")
    out.append("## Budgets and searches\n")
    out.append("| Scenario | Objective | Budgets | Concurrency | Candidates | Measured (weights / short / full) "
               "| Minutes |")
    out.append("|---|---|---|--:|--:|---|--:|")
    for s in ("edge", "server", "realtime", "cost"):
        d = docs[s]
        b = ", ".join(f"{k} {v:.4g}" for k, v in d["budgets"].items() if v is not None)
        m = d["measurements"]
        out.append(f"| {s} | {d['objective']} | {b} | {d['workload']['concurrency']} | {len(d['candidates'])} "
                   f"| {m['weights']} / {m['short_runs']} / {m['full_runs']} | {d['elapsed_s'] / 60:.1f} |")
    out.append("")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
