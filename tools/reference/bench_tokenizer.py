#!/usr/bin/env python3
"""Encode throughput of Hugging Face `tokenizers` on the news strings, single
thread, for comparison with udaci's "[.bench]" test.

  RAYON_NUM_THREADS=1 /opt/udaci-ref/bin/python tools/reference/bench_tokenizer.py

Measures tok.encode(text) in a Python loop and tok.encode_batch(texts) (one
call; with RAYON_NUM_THREADS=1 it runs on one thread), median of 5 runs after
one warm-up run, add_special_tokens=False, like udaci's encode(text).
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_fixtures as fx  # noqa: E402
import tokenizers  # noqa: E402


def main():
    shared = os.path.join(fx.ROOT, "..", "shared")
    _, news = fx.news_texts(shared)
    texts = [t for (_, _, t) in news]
    nbytes = sum(len(t.encode()) for t in texts)
    _, llama3 = fx.load_llama3(shared)
    smollm2 = fx.load_smollm2(fx.find_smollm2_gguf(None))
    print(f"tokenizers {tokenizers.__version__}, RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}, "
          f"{len(texts)} strings, {nbytes} bytes")
    for name, tok in (("llama3", llama3), ("smollm2", smollm2)):
        for mode in ("encode loop", "encode_batch"):
            secs = []
            ntok = 0
            for run in range(6):
                t0 = time.perf_counter()
                if mode == "encode loop":
                    ntok = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
                else:
                    ntok = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
                secs.append(time.perf_counter() - t0)
            med = statistics.median(secs[1:])
            print(f"HF {name:8s} {mode:13s}: {ntok} tokens, median of 5 {med*1e3:.1f} ms = "
                  f"{nbytes/med/1e6:.2f} MB/s, {ntok/med:.0f} tokens/s (first run {secs[0]*1e3:.1f} ms)")


if __name__ == "__main__":
    main()
