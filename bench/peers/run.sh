#!/usr/bin/env bash
# udaci head to head with llama.cpp, transformers and CTranslate2 (issue #11).
#
#   bash bench/peers/run.sh [peers.py options]     e.g. --articles 200 --batch 16
#
# On a fresh machine of this kind (after scripts/setup.sh has built udaci) it
# installs the peers, makes their models from the default SmolLM2 GGUF and runs
# bench/peers/peers.py; every stage is timed into $WORK/stages.json.
#   UDACI_PEERS_VENV  the peers' venv        (default: .peers-venv)
#   UDACI_PEERS_WORK  models, logs, results  (default: .peers-work)
#   UDACI_BUILD       udaci's build folder   (default: build)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${UDACI_PEERS_VENV:-$REPO/.peers-venv}
WORK=${UDACI_PEERS_WORK:-$REPO/.peers-work}
BUILD=${UDACI_BUILD:-$REPO/build}
mkdir -p "$WORK"
STAGES="$WORK/stages.tsv"
: > "$STAGES"
T0=$(date +%s)
stage() {  # stage NAME COMMAND...: run and record its seconds
  local name=$1; shift
  local t=$(date +%s)
  echo "[run.sh $(date +%H:%M:%S)] $name" >&2
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - t ))" >> "$STAGES"
}

if [ ! -x "$BUILD/src/udaci" ] || [ ! -d "$BUILD/bindings/python/udaci" ]; then
  echo "run.sh: no udaci build with its Python module at $BUILD: run scripts/setup.sh first (or set UDACI_BUILD)" >&2
  exit 2
fi

# llama.cpp's CPU kernels: native (every instruction set this CPU has),
# except on CPUs with AMX: there its AMX matmul (ggml_backend_amx_mul_mat)
# crashes with SIGSEGV on the first prompt (llama-cpp-python 0.3.36, on the
# Xeon host of 2026-12-05, every GGUF tried; upstream: ggml-org/llama.cpp
# #20824, open), so it is built with the CPU's AVX-512 / VNNI / BF16 kernels
# listed explicitly and AMX left out -- what a user of this machine can run.
ggml_cpu_args() {
  local flags
  flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
  has() { [[ " $flags " == *" $1 "* ]]; }
  if ! has amx_int8; then
    echo "-DGGML_NATIVE=ON"
    return
  fi
  local a="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  has avx_vnni && a="$a -DGGML_AVX_VNNI=ON"
  has avx512f && a="$a -DGGML_AVX512=ON"
  has avx512vbmi && a="$a -DGGML_AVX512_VBMI=ON"
  has avx512_vnni && a="$a -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && a="$a -DGGML_AVX512_BF16=ON"
  echo "$a -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}

pip_deps() {
  [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
  # llama.cpp as llama-server's users get it: its CPU kernels (above), OpenMP;
  # without the multimodal library, tools, tests and examples.
  CMAKE_ARGS="$(ggml_cpu_args) -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DGGML_CUDA=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/bench/peers/requirements.txt"
}

stage pip pip_deps
stage bench "$VENV/bin/python" "$REPO/bench/peers/peers.py" --build "$BUILD" --workdir "$WORK" "$@"
printf '%s\t%s\n' total "$(( $(date +%s) - T0 ))" >> "$STAGES"
echo "[run.sh] stages (seconds):" >&2
cat "$STAGES" >&2
