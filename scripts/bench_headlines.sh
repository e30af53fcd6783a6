#!/usr/bin/env bash
# Headlines per second and per-headline latency (p50/p95) for the first N
# records of the News Category Dataset sample with the default model, greedy,
# batch 1. Usage: scripts/bench_headlines.sh [N] [extra udaci headline flags]
# Prints one JSON object; the JSONL of headlines goes to build/bench_headlines.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
shift || true
DATA=../shared/assets/news/news_category_sample.jsonl
START=$(date +%s.%N)
./build/src/udaci --threads "${THREADS:-$(nproc)}" headline --input "$DATA" --limit "$N" \
  --output build/bench_headlines.jsonl "$@"
END=$(date +%s.%N)
python3 - "$START" "$END" "$N" "$@" <<'PY'
import json, statistics, sys
start, end, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open("build/bench_headlines.jsonl")]
lat = sorted(r["latency_ms"] for r in rows)
q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))]
print(json.dumps({
    "headlines": len(rows), "flags": sys.argv[4:], "wall_s": round(end - start, 2),
    "headlines_per_s": round(len(rows) / (end - start), 3),
    "latency_ms_p50": round(q(0.5), 1), "latency_ms_p95": round(q(0.95), 1),
    "new_tokens_mean": round(statistics.mean(r["new_tokens"] for r in rows), 2),
    "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in rows), 2),
    "empty_headlines": sum(1 for r in rows if not r["generated"]),
}))
PY
