#!/usr/bin/env bash
# What each quantizer and pruner costs in quality without generating text:
# perplexity of the default model on news records ("headline. summary"),
# one `udaci perplexity` run per configuration, as JSON lines in
# docs/bench/quality-ppl.jsonl (the table in docs/BENCHMARKS.md, M6).
#   THREADS=2 SAMPLES=50 [UDACI=path/to/udaci] bash scripts/bench_quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
SAMPLES=${SAMPLES:-50}
OUT=${OUT:-docs/bench/quality-ppl.jsonl}
U=("${UDACI:-build/src/udaci}" --threads "$THREADS" perplexity --samples "$SAMPLES" --seed 2024)
: > "$OUT"
run() { "${U[@]}" "$@" | tee -a "$OUT"; }
run
run --quantizer int8
run --quantizer int4
run --quantizer int4 --quantizer-opt group=32
run --quantizer int4 --quantizer-opt group=128
run --quantizer nf4
run --quantizer gguf-native
for f in 0.1 0.2 0.3 0.4 0.5; do run --pruner magnitude --pruner-opt fraction=$f; done
run --pruner 2:4
for f in 0.1 0.2 0.3; do run --pruner structured --pruner-opt fraction=$f; done
run --quantizer int4 --pruner magnitude --pruner-opt fraction=0.3
