#!/usr/bin/env bash
# Builds udaci with its tests and runs the whole suite through CTest, then
# short fuzz runs of the parsers (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
PY=${PYTHON:-$(command -v python3)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DUDACI_BUILD_TESTS=ON \
  -DUDACI_BUILD_PYTHON=ON -DPython_EXECUTABLE="$PY" > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build -j"$JOBS" >> build.log 2>&1 || { tail -80 build.log; exit 1; }
# The default model is installed by scripts/setup.sh: tests that need it fail
# instead of skipping when it is missing (set UDACI_REQUIRE_MODEL=0 to allow).
export UDACI_REQUIRE_MODEL=${UDACI_REQUIRE_MODEL:-1}
ctest --test-dir build --output-on-failure -j"$JOBS" "$@"
# Short libFuzzer runs of the parsers (issue #12, docs/SECURITY.md
# "Fuzzing"): a separate clang build in build-fuzz, 20 s per target
# (UDACI_FUZZ_SECONDS=0 skips them).
FUZZ_SECONDS=${UDACI_FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" != 0 ]; then
  bash scripts/fuzz.sh --seconds "$FUZZ_SECONDS"
fi
