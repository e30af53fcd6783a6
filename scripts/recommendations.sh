#!/usr/bin/env bash
# Regenerates docs/RECOMMENDATIONS.md from measurements on this machine and
# the default model (issue #26): `udaci tune` for the edge, server, realtime
# and cost scenarios, `udaci bench` of the parallel plans against one process
# (the report's cluster advice), then tools/bench/recommendations.py.
#
#   bash scripts/recommendations.sh [--budget-minutes 6] [--threads 2] [--out build/recommendations]
#
# --threads: the parallel plans' comparison (tune searches its scenarios'
# thread counts, all cores by default).
#
# About 4 x the budget plus a few minutes. Measurements are cached
# (~/.cache/udaci/tune), so a rerun of the same build resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=6
THREADS=$(nproc 2>/dev/null || echo 2)
OUT=build/recommendations
while [ $# -gt 0 ]; do
  case "$1" in
    --budget-minutes) BUDGET=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "recommendations.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
UDACI=build/src/udaci
[ -x "$UDACI" ] || { echo "recommendations.sh: build udaci first (bash scripts/setup.sh)" >&2; exit 1; }
mkdir -p "$OUT" docs/bench
for s in edge server realtime cost; do
  echo "== udaci tune --scenario $s (budget $BUDGET min)" >&2
  status=0
  # No global --threads: it would fix the scenarios' thread dimension (edge
  # and cost try 1 thread and all cores).
  "$UDACI" tune --scenario "$s" --budget-minutes "$BUDGET" --out "$OUT/$s" \
    2> "$OUT/$s.log" || status=$?
  # Exit 2: no candidate met the budgets; the report says which came closest.
  [ "$status" = 0 ] || [ "$status" = 2 ] || { tail -20 "$OUT/$s.log" >&2; exit "$status"; }
  [ -f "$OUT/$s/pareto.png" ] && cp "$OUT/$s/pareto.png" "docs/bench/tune-$s.png"
  cp "$OUT/$s/tune.json" "docs/bench/tune-$s.json"
done
echo "== udaci bench: one process vs tp-2 and pp-2 (batch 1)" >&2
"$UDACI" --threads "$THREADS" bench --quiet --techniques kv-cache,tp-2,pp-2 --samples 30 --batch 1 \
  --json "$OUT/cluster.json" > /dev/null
# The per-article items are left out of the committed copy (they are in $OUT).
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [r.pop("items",None) for r in d["results"]]; json.dump(d,open(sys.argv[2],"w"),indent=1)' \
  "$OUT/cluster.json" docs/bench/tune-cluster.json
python3 tools/bench/recommendations.py --edge "$OUT/edge/tune.json" --server "$OUT/server/tune.json" \
  --realtime "$OUT/realtime/tune.json" --cost "$OUT/cost/tune.json" --cluster "$OUT/cluster.json" \
  --command "bash scripts/recommendations.sh --budget-minutes $BUDGET --threads $THREADS" \
  > docs/RECOMMENDATIONS.md
echo "wrote docs/RECOMMENDATIONS.md" >&2
