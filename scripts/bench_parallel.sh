#!/usr/bin/env bash
# The parallelism figures of issue #9 (docs/BENCHMARKS.md, "M8 — tensor and
# pipeline parallelism"), default model, fp32, greedy: one process (2
# threads) against tp-2 and pp-2 (two processes, 1 thread each, Gloo on
# loopback) on N articles (default 50), at --batch 1 and --batch 8 (where
# pipeline micro-batches can overlap). Writes docs/bench/parallel-*.json|md
# and prints per-rank weight bytes and transfer time.
#   THREADS=2 N=50 [UDACI=path/to/udaci] bash scripts/bench_parallel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
THREADS=${THREADS:-2}
OUT=${OUT:-docs/bench}
mkdir -p "$OUT"
U=("${UDACI:-build/src/udaci}" --threads "$THREADS")
for b in 1 8; do
  "${U[@]}" bench --techniques kv-cache,tp-2,pp-2 --samples "$N" --batch "$b" \
    --json "$OUT/parallel-$N-b$b.json" --markdown "$OUT/parallel-$N-b$b.md" --quiet
  python3 - "$OUT/parallel-$N-b$b.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
base = d["results"][0]
for r in d["results"]:
    same = sum(a["headline"] == b["headline"] for a, b in zip(r["items"], base["items"]))
    print(f'{r["technique"]:9} batch {d["settings"]["batch"]}: decode {r["decode_tokens_per_s"]:6.1f} tok/s, '
          f'{r["headlines_per_s"]:.2f} headlines/s, p50 {r["latency_ms_p50"]:.0f} ms, '
          f'same headline as kv-cache {same}/{len(r["items"])}')
    for k in r["parallel"]["ranks"]:
        print(f'    rank {k["rank"]}: weights {k["weight_bytes"] / 2**20:6.1f} MiB, peak RSS '
              f'{k["peak_rss_bytes"] / 2**20:6.1f} MiB, transfers {k["comm_seconds"]:.1f} s in '
              f'{k["comm_calls"]} calls; {k["holds"] or "everything"}')
PY
done
