"""udaci and llama.cpp on the same GGUF files, batch 1 (issue #22).

The quick half of bench/peers' equal-bits part, for kernel work: no
transformers or CTranslate2, any GGUF files (llama.cpp's quantiser makes them
from an F32 GGUF, see --make), the news articles of ../shared as prompts.
For every file both engines run in their own process (bench/peers/worker.py,
loaded once, warmed up on two articles); the articles run --rounds times per
engine, the order alternating per round. Reported per file: medians over
rounds of decode tokens/s and time to first token, the median of the
per-round udaci/llama.cpp ratios, and each process's peak RSS.

    .peers-venv/bin/python bench/peers/same_file.py --make F32.gguf:q4_0,q8_0,q4_k_m
    .peers-venv/bin/python bench/peers/same_file.py a.gguf b.gguf --articles 12 --rounds 3

Run it with the peers' venv (bench/peers/run.sh makes it; it needs
llama-cpp-python and gguf) and a udaci build (--build, default build/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import peers  # noqa: E402  (Worker, chunk_figures)

# llama_ftype values of llama.h
FTYPES = {"q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}


def make_files(spec: str, threads: int) -> list:
    src, _, kinds = spec.partition(":")
    out = []
    for kind in kinds.split(","):
        if kind not in FTYPES:
            sys.exit(f"same_file: unknown type '{kind}' (known: {', '.join(FTYPES)})")
        dst = src.replace(".gguf", "") + f"-{kind}.gguf"
        if not os.path.exists(dst):
            peers.log(f"llama.cpp's quantiser: {src} -> {dst}")
            code = ("import sys, ctypes, llama_cpp as L\n"
                    "p = L.llama_model_quantize_default_params()\n"
                    f"p.ftype = {FTYPES[kind]}\np.nthread = {threads}\n"
                    "sys.exit(L.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))\n")
            subprocess.run([sys.executable, "-c", code, src, dst], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        out.append(dst)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="GGUF files both engines run")
    ap.add_argument("--make", action="append", default=[],
                    help="F32.gguf:type,type... — quantise with llama.cpp's own quantiser first "
                         f"(types: {', '.join(FTYPES)})")
    ap.add_argument("--articles", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quantizer", default="gguf-native", help="udaci's quantizer (default gguf-native)")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--input", default=os.path.join(REPO, "..", "shared", "assets", "news", "news_category_sample.jsonl"))
    ap.add_argument("--logdir", default=os.path.join(REPO, ".peers-work", "logs"))
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)

    files = list(a.files)
    for spec in a.make:
        files += make_files(spec, a.threads)
    if not files:
        ap.error("no GGUF files (give some, or --make)")
    os.makedirs(a.logdir, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(a.build, "bindings", "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(a.threads)
    summaries = [r["short_description"] for r in peers.read_articles(a.input, a.articles)]
    results = []
    for path in files:
        eos = peers.eos_ids(path)
        common = ["--threads", str(a.threads)]
        wu = peers.Worker("udaci", ["--engine", "udaci", "--model", path, "--quantizer", a.quantizer,
                                    "--cache", "contiguous"] + common, env, a.logdir)
        ids = wu.call(cmd="prompt_ids", summaries=summaries)["ids"]
        wl = peers.Worker("llama.cpp", ["--engine", "llama.cpp", "--model", path] + common, env, a.logdir)
        engines = [("udaci", wu, summaries), ("llama.cpp", wl, ids)]
        for _, w, prompts in engines:  # warm-up, not measured
            w.call(cmd="run", prompts=prompts[:2], batch=1, max_new=a.max_new_tokens, eos=eos)
        figs = {"udaci": [], "llama.cpp": []}
        for r in range(a.rounds):
            for name, w, prompts in (engines if r % 2 == 0 else engines[::-1]):
                rep = w.call(cmd="run", prompts=prompts, batch=1, max_new=a.max_new_tokens, eos=eos)
                figs[name].append(peers.chunk_figures(rep["items"], rep["wall_s"]))
        row = {"file": os.path.basename(path), "file_bytes": os.path.getsize(path)}
        for name, w, _ in engines:
            row[name] = {"decode_tokens_per_s": statistics.median(f["decode_tokens_per_s"] for f in figs[name]),
                         "ttft_ms_p50": statistics.median(f["ttft_ms_p50"] for f in figs[name]),
                         "peak_rss_mb": w.peak_rss / 2 ** 20}
        row["decode_ratio"] = statistics.median(u["decode_tokens_per_s"] / l["decode_tokens_per_s"]
                                                for u, l in zip(figs["udaci"], figs["llama.cpp"]))
        row["ttft_ratio"] = statistics.median(u["ttft_ms_p50"] / l["ttft_ms_p50"]
                                              for u, l in zip(figs["udaci"], figs["llama.cpp"]))
        wu.close()
        wl.close()
        results.append(row)
        u, l = row["udaci"], row["llama.cpp"]
        print(f"| {row['file']} | {u['decode_tokens_per_s']:.1f} | {l['decode_tokens_per_s']:.1f} | "
              f"{row['decode_ratio']:.2f}x | {u['ttft_ms_p50']:.0f} | {l['ttft_ms_p50']:.0f} | "
              f"{row['ttft_ratio']:.2f}x | {u['peak_rss_mb']:.0f} | {l['peak_rss_mb']:.0f} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"schema": "udaci-same-file/1", "articles": len(summaries), "rounds": a.rounds,
                       "threads": a.threads, "max_new_tokens": a.max_new_tokens, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
