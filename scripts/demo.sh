#!/usr/bin/env bash
# The main job until the tokenizer and the default model land (issue #3): a
# generation demo on the tiny committed checkpoint, with and without KV cache.
set -euo pipefail
cd "$(dirname "$0")/.."
M=tests/fixtures/golden/tiny-llama3-rope
./build/src/udaci info --model "$M"
echo "greedy, contiguous KV cache:"
./build/src/udaci generate --model "$M" --ids "36 115 7 201 9" --max-new-tokens 16 --ignore-eos
echo "greedy, no cache (prefix recomputed every step; same tokens):"
./build/src/udaci generate --model "$M" --ids "36 115 7 201 9" --max-new-tokens 16 --ignore-eos --cache none
echo "sampling (temperature 0.8, top-p 0.9, seed 7):"
./build/src/udaci generate --model "$M" --ids "36 115 7 201 9" --max-new-tokens 16 --ignore-eos \
  --temperature 0.8 --top-p 0.9 --seed 7
