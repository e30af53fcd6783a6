"""KL divergence from fp32 of udaci and llama.cpp on the same GGUF files (issue #22).

Quality measured as the engines measure it: for each quantised file, the
next-token distributions of every position of some news records
("headline. summary", BOS first) against those of the F32 file it was made
from — mean and 99th-percentile KL(p_fp32 || p), top-1 agreement, mean
|p(next) - p_fp32(next)| and perplexity — once for udaci (`udaci perplexity
--kl-divergence --kl-reference F32`: udaci's format against udaci's fp32) and
once for llama.cpp (its logits through llama-cpp-python: llama.cpp's format
against llama.cpp's fp32), on exactly the same token ids (udaci writes them
with --tokens-out). The definitions are those of udaci's eval/perplexity.cpp
(and of llama.cpp's `llama-perplexity --kl-divergence`): natural log,
nearest-rank percentile.

    .peers-venv/bin/python bench/peers/kl_llamacpp.py --reference F32.gguf Q4_0.gguf Q8_0.gguf --samples 40

Run it with the peers' venv (llama-cpp-python, numpy) and a udaci build.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


class Divergence:
    """Running sums of the per-position figures (as udaci's DivergenceSums)."""

    def __init__(self):
        self.kld = []
        self.top1_same = 0
        self.abs_dp = 0.0
        self.nll_ref = 0.0
        self.nll = 0.0

    def add(self, logits_ref, logits, targets):
        import numpy as np
        lr = log_softmax(np.asarray(logits_ref, dtype=np.float64))
        lq = log_softmax(np.asarray(logits, dtype=np.float64))
        kld = (np.exp(lr) * (lr - lq)).sum(-1)
        same = lr.argmax(-1) == lq.argmax(-1)
        rows = np.arange(len(targets))
        t = np.asarray(targets)
        self.kld.extend(max(0.0, float(k)) for k in kld)
        self.top1_same += int(same.sum())
        self.abs_dp += float(np.abs(np.exp(lq[rows, t]) - np.exp(lr[rows, t])).sum())
        self.nll_ref -= float(lr[rows, t].sum())
        self.nll -= float(lq[rows, t].sum())

    def result(self) -> dict:
        n = len(self.kld)
        if n == 0:
            raise ValueError("no positions scored")
        ks = sorted(self.kld)
        rank = max(math.ceil(0.99 * n), 1)
        return {"positions": n, "mean_kld": sum(ks) / n, "p99_kld": ks[rank - 1], "max_kld": ks[-1],
                "top1_agreement": self.top1_same / n, "mean_abs_dp": self.abs_dp / n,
                "perplexity": math.exp(self.nll / n), "reference_perplexity": math.exp(self.nll_ref / n)}


def log_softmax(x):
    import numpy as np
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def llama_logits(llm, ids):
    """Logits of every position of `ids` (row i predicts ids[i + 1])."""
    llm.reset()
    llm.eval(ids)
    return llm.scores[: len(ids)].copy()


def udaci_divergence(exe: str, model: str, reference: str, samples: int, seed: int, threads: int,
                     tokens_out: str) -> dict:
    cmd = [exe, "--threads", str(threads), "perplexity", "--model", model, "--kl-divergence", "--kl-reference",
           reference, "--samples", str(samples), "--seed", str(seed), "--tokens-out", tokens_out]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rep = json.loads(out.strip().splitlines()[-1])
    d = dict(rep["kl_divergence"])
    d["perplexity"] = rep["perplexity"]
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="quantised GGUF files made from --reference")
    ap.add_argument("--reference", required=True, help="the F32 GGUF the files were made from")
    ap.add_argument("--samples", type=int, default=40, help="news records scored")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)

    import llama_cpp
    exe = os.path.join(a.build, "src", "udaci")
    results = []

    def load(path):
        return llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=1024, n_threads=a.threads,
                               logits_all=True, verbose=False)

    ref = None
    with tempfile.TemporaryDirectory() as tmp:
        for path in a.files:
            tokens = os.path.join(tmp, "tokens.jsonl")
            u = udaci_divergence(exe, path, a.reference, a.samples, a.seed, a.threads, tokens)
            with open(tokens) as f:
                seqs = [json.loads(line)["ids"] for line in f if line.strip()]
            if ref is None:
                ref = load(a.reference)
            llm = load(path)
            div = Divergence()
            for ids in seqs:
                if len(ids) < 2:
                    continue
                lr = llama_logits(ref, ids)[:-1]
                lq = llama_logits(llm, ids)[:-1]
                div.add(lr, lq, ids[1:])
            del llm
            l = div.result()
            row = {"file": os.path.basename(path), "udaci": u, "llama.cpp": l,
                   "kld_ratio": u["mean_kld"] / l["mean_kld"] if l["mean_kld"] > 0 else None}
            results.append(row)
            print(f"| {row['file']} | {u['mean_kld']:.4f} | {l['mean_kld']:.4f} | "
                  f"{row['kld_ratio']:.2f}x | {u['p99_kld']:.3f} | {l['p99_kld']:.3f} | "
                  f"{100 * u['top1_agreement']:.1f}% | {100 * l['top1_agreement']:.1f}% | "
                  f"{u['positions']} / {l['positions']} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"schema": "udaci-kl-peers/1", "reference": os.path.basename(a.reference),
                       "samples": a.samples, "seed": a.seed, "llama_cpp_python": llama_cpp.__version__,
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
