#!/usr/bin/env bash
# Builds udaci with its tests and runs the whole suite through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DUDACI_BUILD_TESTS=ON > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build -j"$JOBS" >> build.log 2>&1 || { tail -80 build.log; exit 1; }
ctest --test-dir build --output-on-failure -j"$JOBS" "$@"
