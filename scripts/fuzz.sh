#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) and runs each for
# a while on a copy of its committed seed corpus (docs/SECURITY.md, "Fuzzing").
#   bash scripts/fuzz.sh                      # every target, 20 s each (CI)
#   bash scripts/fuzz.sh --seconds 600 --target gguf
# Exits non-zero when a target finds a crash, sanitizer report, broken
# invariant, hang (> 10 s on one input) or memory blow-up (> 2 GiB), and
# prints the file holding the input. Build directory: $UDACI_FUZZ_BUILD_DIR
# (default ./build-fuzz); runs write under <build dir>/fuzz-runs/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=20
TARGETS=()
ALL_TARGETS=(gguf safetensors tokenizer_json tokenize chat_template jsonl)
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET="$2"; shift 2 ;;
    --target) TARGETS+=("${2#fuzz_}"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

# Longest input per target: room for a small model header, tokenizer or
# template plus what the mutator adds, small enough to keep runs fast.
max_len() {
  case "$1" in
    gguf|tokenizer_json) echo 65536 ;;
    tokenize) echo 4096 ;;
    *) echo 16384 ;;
  esac
}

BUILD_DIR=${UDACI_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=$(nproc 2>/dev/null || echo 2)
mkdir -p "$BUILD_DIR"
LOG="$BUILD_DIR/fuzz-build.log"
CC=${UDACI_FUZZ_CC:-clang} CXX=${UDACI_FUZZ_CXX:-clang++} \
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DUDACI_BUILD_FUZZERS=ON \
  -DUDACI_BUILD_TESTS=OFF -DUDACI_BUILD_EXAMPLES=OFF -DUDACI_BUILD_BENCHMARKS=OFF \
  > "$LOG" 2>&1 || { cat "$LOG"; exit 1; }
build_targets=()
for t in "${TARGETS[@]}"; do build_targets+=(--target "fuzz_$t"); done
cmake --build "$BUILD_DIR" -j"$JOBS" "${build_targets[@]}" >> "$LOG" 2>&1 \
  || { tail -80 "$LOG"; exit 1; }

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
summary=()
for t in "${TARGETS[@]}"; do
  bin="$BUILD_DIR/fuzz/fuzz_$t"
  seeds="fuzz/corpus/$t"
  [ -x "$bin" ] && [ -d "$seeds" ] || { echo "fuzz.sh: no target '$t'" >&2; exit 2; }
  run="$BUILD_DIR/fuzz-runs/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/artifacts"
  cp "$seeds"/* "$run/corpus/"  # the committed corpus is only read
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  echo "fuzz.sh: fuzz_$t for ${SECONDS_PER_TARGET}s (log $run/log)"
  rc=0
  "$bin" "$run/corpus" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$run/artifacts/" \
    > "$run/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/log")
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$run/log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    result="ok"
  else
    status=1
    artifact=$(sed -n 's/.*Test unit written to //p' "$run/log" | tail -1)
    result="FINDING (exit $rc): ${artifact:-see $run/log}"
    grep -E '^==[0-9]+==ERROR|^SUMMARY|fuzz invariant broken|terminate called|what\(\)' "$run/log" | head -5 || true
  fi
  summary+=("$(printf '%-20s %10s runs %7s exec/s  %-34s %s' "fuzz_$t" "${runs:-?}" "${speed:-?}" "${cov:-}" "$result")")
done

echo "fuzz.sh: ${SECONDS_PER_TARGET}s per target"
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
  echo "fuzz.sh: reproduce with <build dir>/fuzz/fuzz_<target> <file>; see docs/SECURITY.md" >&2
fi
exit "$status"
