#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer (+ LeakSanitizer) and
# UndefinedBehaviorSanitizer into build-asan/ and runs it (issue #12):
#   bash scripts/sanitize.sh            # unit + c_api suites (incl. the load tests)
#   bash scripts/sanitize.sh -L c_api   # any ctest arguments instead
# LibTorch and OpenBLAS are not instrumented: their one-time allocations are
# suppressed as leaks (tools/sanitize/lsan.supp) and container-overflow
# checks are off (libstdc++ containers cross the uninstrumented boundary).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUDACI_BUILD_TESTS=ON \
  -DUDACI_BUILD_PYTHON=OFF -DUDACI_BUILD_EXAMPLES=OFF -DUDACI_BUILD_BENCHMARKS=OFF \
  -DUDACI_CUDA_COMPILE_CHECK=OFF \
  -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" > build-asan.log 2>&1 \
  || { cat build-asan.log; exit 1; }
cmake --build build-asan -j"$JOBS" --target udaci_unit_tests udaci_c_api_tests udaci_cli \
  >> build-asan.log 2>&1 || { tail -60 build-asan.log; exit 1; }
export ASAN_OPTIONS="detect_leaks=1:detect_container_overflow=0:abort_on_error=0:halt_on_error=1:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$PWD/tools/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export UDACI_REQUIRE_MODEL=${UDACI_REQUIRE_MODEL:-1}
if [ $# -eq 0 ]; then set -- -L "unit|c_api" -E "install_and_find_package|header_c99"; fi
ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 3000 "$@"
