#!/usr/bin/env bash
# The continuous-batching figures of issue #6 (docs/BENCHMARKS.md, "M5 —
# continuous batching"), default model, fp32, greedy:
#   1. throughput at --batch 1, 8, 32, 128 on N articles (default 200), with
#      prefix sharing (paged-prefix) and the batch-invariant mode at batch 32;
#   2. batch invariance on M articles (default 500): the headlines of the
#      default mode at batch 32 against the batch-invariant mode at batch 32,
#      which computes every article exactly as it is computed alone (checked
#      against --batch 1 on the N articles of step 1).
# Writes docs/bench/batching-*.json|md and prints the comparisons.
#   THREADS=2 N=200 M=500 [UDACI=path/to/udaci] bash scripts/bench_batching.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
M=${M:-500}
THREADS=${THREADS:-2}
OUT=${OUT:-docs/bench}
mkdir -p "$OUT"
U=("${UDACI:-build/src/udaci}" --threads "$THREADS")
for b in 1 8 32 128; do
  techs=kv-cache
  if [ "$b" = 32 ]; then techs=kv-cache,paged,paged-prefix,kv-cache+batch-invariant; fi
  "${U[@]}" bench --techniques "$techs" --samples "$N" --batch "$b" \
    --json "$OUT/batching-$N-b$b.json" --markdown "$OUT/batching-$N-b$b.md" --quiet
done
echo "== alone (--batch 1) vs batch-invariant mode at batch 32, $N articles"
python3 tools/bench/compare_headlines.py "$OUT/batching-$N-b1.json" "$OUT/batching-$N-b32.json" \
  --technique-b kv-cache+batch-invariant
echo "== alone (--batch 1) vs default mode at batch 32, $N articles"
python3 tools/bench/compare_headlines.py "$OUT/batching-$N-b1.json" "$OUT/batching-$N-b32.json" \
  --technique-b kv-cache
"${U[@]}" bench --techniques kv-cache,kv-cache+batch-invariant --samples "$M" --batch 32 \
  --json "$OUT/invariance-$M-b32.json" --markdown "$OUT/invariance-$M-b32.md" --quiet
echo "== default mode vs batch-invariant mode at batch 32, $M articles"
python3 tools/bench/compare_headlines.py "$OUT/invariance-$M-b32.json" "$OUT/invariance-$M-b32.json" \
  --technique-a kv-cache --technique-b kv-cache+batch-invariant
