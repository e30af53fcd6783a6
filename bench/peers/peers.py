"""udaci head to head with llama.cpp, Hugging Face transformers and CTranslate2.

Same machine, same model, same articles, same prompt token ids, greedy, same
max_new_tokens, same end token, same thread count. Every engine runs in its own
process (bench/peers/worker.py), loaded once; the articles are cut into chunks
and the engines take turns on each chunk (the order rotates per chunk), so
every figure has one value per chunk and a udaci/peer ratio per chunk measured
minutes apart at most. Medians over the chunks are reported.

Two parts:
  headline  all articles (default 200), the default SmolLM2 GGUF for udaci and
            llama.cpp, its dequantised HF folder for transformers (fp32) and
            CTranslate2 (int8, its CPU default), at batch 1 and at --batch.
  bits      a subset, batch 1: udaci and llama.cpp on the same Q4_0, Q8_0 and
            F32 GGUF files (made from the F32 dequantisation by llama.cpp's own
            quantizer), plus udaci's own int4 / int8 from the HF folder.

Writes --json (schema udaci-peers/1) and --markdown. Run through
bench/peers/run.sh, which installs the peers first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------ the workers


class Worker:
    def __init__(self, name: str, argv: List[str], env: Dict[str, str], logdir: str):
        self.name = name
        self.log = open(os.path.join(logdir, name.replace(" ", "_").replace("/", "_") + ".log"), "w")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "worker.py")] + argv,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     env=env, text=True, bufsize=1)
        hello = self._read()
        if not hello.get("ok"):
            raise RuntimeError(f"{name}: {hello.get('error')}")
        self.load_s = hello["load_s"]
        self.peak_rss = 0

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the worker exited (rc {self.proc.poll()}); see its log {self.log.name}")
        return json.loads(line)

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name}: {reply.get('error')}")
        self.peak_rss = max(self.peak_rss, reply.get("peak_rss_bytes", 0))
        return reply

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()
        self.log.close()


# ------------------------------------------------------------- preparing models


def run(cmd: List[str], **kw) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def prepare_models(a, default_gguf: str) -> Dict[str, str]:
    """The HF folder, CTranslate2 model and GGUF files every engine runs, made
    from the default GGUF (kept in --workdir between runs)."""
    w = a.workdir
    paths = {
        "default": default_gguf,
        "hf": os.path.join(w, "smollm2-hf-f32"),
        "ct2_int8": os.path.join(w, "smollm2-ct2-int8"),
        "f32": os.path.join(w, "smollm2-f32.gguf"),
        "q8_0": os.path.join(w, "smollm2-q8_0.gguf"),
        "q4_0": os.path.join(w, "smollm2-q4_0.gguf"),
    }
    if not os.path.exists(os.path.join(paths["hf"], "tokenizer.json")):
        # the weights: udaci's dequantisation of the GGUF's Q4_1 blocks to fp32
        run([a.udaci_cli, "convert", "--model", default_gguf, "--output", paths["hf"], "--dequantize", "f32"])
        # the tokenizer: transformers' own conversion of the GGUF's tokenizer
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(os.path.dirname(default_gguf),
                                            gguf_file=os.path.basename(default_gguf))
        tok.save_pretrained(paths["hf"])
    if not os.path.exists(os.path.join(paths["ct2_int8"], "model.bin")):
        from ctranslate2.converters import TransformersConverter

        log("converting the HF folder to CTranslate2 int8")
        TransformersConverter(paths["hf"]).convert(paths["ct2_int8"], quantization="int8", force=True)
    if not os.path.exists(paths["f32"]):
        run([a.udaci_cli, "convert", "--model", paths["hf"], "--output", paths["f32"],
             "--tokenizer", default_gguf])
    for key, ftype in (("q8_0", 7), ("q4_0", 2)):  # llama_ftype MOSTLY_Q8_0, MOSTLY_Q4_0
        if not os.path.exists(paths[key]):
            log(f"llama.cpp's quantizer: F32 -> {key.upper()}")
            code = ("import sys, ctypes, llama_cpp as L\n"
                    "p = L.llama_model_quantize_default_params()\n"
                    f"p.ftype = {ftype}\np.nthread = {a.threads}\n"
                    "rc = L.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))\n"
                    "sys.exit(rc)\n")
            with open(os.path.join(a.logdir, f"quantize_{key}.log"), "w") as lf:
                subprocess.run([sys.executable, "-c", code, paths["f32"], paths[key]], check=True,
                               stdout=lf, stderr=lf)
    return paths


# ------------------------------------------------------------------ the configs


def headline_configs(a, m) -> List[dict]:
    B = str(a.batch)
    return [
        {"key": "udaci", "engine": "udaci", "label": "udaci gguf-native (Q4_1 file)", "bits": "Q4_1",
         "argv": ["--engine", "udaci", "--model", m["default"], "--quantizer", "gguf-native",
                  "--cache", a.udaci_cache, "--max-batch", B]},
        {"key": "llama.cpp", "engine": "llama.cpp", "label": "llama.cpp (Q4_1 file)", "bits": "Q4_1",
         "argv": ["--engine", "llama.cpp", "--model", m["default"], "--max-batch", B]},
        {"key": "transformers", "engine": "transformers", "label": "transformers fp32", "bits": "F32",
         "argv": ["--engine", "transformers", "--model", m["hf"], "--max-batch", B]},
        {"key": "ctranslate2", "engine": "ctranslate2", "label": "CTranslate2 int8", "bits": "int8",
         "argv": ["--engine", "ctranslate2", "--model", m["ct2_int8"], "--compute-type", "int8",
                  "--max-batch", B]},
    ]


def bits_configs(a, m) -> List[dict]:
    def u(key, label, model, quantizer, bits):
        return {"key": key, "engine": "udaci", "label": label, "bits": bits,
                "argv": ["--engine", "udaci", "--model", model, "--quantizer", quantizer,
                         "--cache", a.udaci_cache]}

    def l(key, label, model, bits):
        return {"key": key, "engine": "llama.cpp", "label": label, "bits": bits,
                "argv": ["--engine", "llama.cpp", "--model", model]}

    return [
        u("udaci Q4_0", "udaci gguf-native (Q4_0 file)", m["q4_0"], "gguf-native", "Q4_0"),
        l("llama.cpp Q4_0", "llama.cpp (Q4_0 file)", m["q4_0"], "Q4_0"),
        u("udaci int4", "udaci int4 g32 (F32 file)", m["f32"], "int4", "Q4_0"),
        u("udaci Q8_0", "udaci gguf-native (Q8_0 file)", m["q8_0"], "gguf-native", "Q8_0"),
        l("llama.cpp Q8_0", "llama.cpp (Q8_0 file)", m["q8_0"], "Q8_0"),
        u("udaci int8", "udaci int8 (F32 file)", m["f32"], "int8", "Q8_0"),
        u("udaci F32", "udaci fp32 (F32 file)", m["f32"], "none", "F32"),
        l("llama.cpp F32", "llama.cpp (F32 file)", m["f32"], "F32"),
    ]


# ------------------------------------------------------------------- measuring


def eos_ids(gguf_path: str) -> List[int]:
    """The end token every engine stops at, as llama.cpp's reader sees it."""
    import gguf

    field = gguf.GGUFReader(gguf_path).fields["tokenizer.ggml.eos_token_id"]
    return [int(field.parts[field.data[0]][0])]


def read_articles(path: str, count: int) -> List[dict]:
    """The first `count` records of a News Category JSONL file with a summary
    and a headline (malformed lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(r, dict) and str(r.get("short_description", "")).strip() and \
                    str(r.get("headline", "")).strip():
                records.append(r)
            if len(records) >= count:
                break
    return records


def split_articles(count: int, parts: int) -> List[List[int]]:
    """Article indices in `parts` interleaved chunks (a similar mix in each)."""
    parts = max(1, min(parts, count))
    return [list(range(count))[k::parts] for k in range(parts)]


def chunk_figures(items: List[dict], wall: float) -> dict:
    fig = {"headlines_per_s": len(items) / wall, "generated_tokens_per_s": sum(i["n_new"] for i in items) / wall}
    timed = [i for i in items if "decode_s" in i]
    if timed:
        dec_tokens = sum(i["n_new"] - 1 for i in timed)
        dec_s = sum(i["decode_s"] for i in timed)
        fig["decode_tokens_per_s"] = dec_tokens / dec_s if dec_s > 0 else None
        fig["ttft_ms_p50"] = 1e3 * statistics.median(i["ttft_s"] for i in timed)
    return fig


def measure(part: str, configs: List[dict], workers: Dict[str, Worker], prompts_of, chunks: List[List[int]],
            batches: List[int], a) -> Dict[str, dict]:
    """Every (config, batch) on every chunk, the order rotating per chunk."""
    res = {f"{c['key']}@{b}": {"config": c, "batch": b, "chunks": [], "items": {}}
           for c in configs for b in batches if c["key"] in workers}
    runs = [(c, b) for b in batches for c in configs if c["key"] in workers]
    for ci, chunk in enumerate(chunks):
        order = runs[ci % len(runs):] + runs[:ci % len(runs)]
        for c, b in order:
            w = workers[c["key"]]
            expected = [a.prompt_ids[i] for i in chunk] if c["engine"] == "udaci" else None
            reply = w.call(cmd="run", prompts=prompts_of(c, chunk), batch=b, max_new=a.max_new_tokens,
                           eos=a.eos, expected=expected)
            r = res[f"{c['key']}@{b}"]
            r["chunks"].append(chunk_figures(reply["items"], reply["wall_s"]))
            for idx, item in zip(chunk, reply["items"]):
                r["items"][idx] = item
            f = r["chunks"][-1]
            log(f"{part} chunk {ci + 1}/{len(chunks)} {c['label']} batch {b}: "
                f"{f['headlines_per_s']:.2f} headlines/s"
                + (f", decode {f['decode_tokens_per_s']:.1f} tok/s" if f.get("decode_tokens_per_s") else ""))
    return res


def summarize(res: Dict[str, dict], workers, texts_of, references, udaci_ref_key: str, a) -> Dict[str, dict]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    ref_items = res[udaci_ref_key]["items"] if udaci_ref_key in res else {}
    out = {}
    for key, r in res.items():
        c = r["config"]
        idxs = sorted(r["items"])
        texts = {i: texts_of(r["items"][i]["ids"]) for i in idxs}
        scores = [scorer.score(references[i], texts[i]) for i in idxs]
        same = [r["items"][i]["ids"] == ref_items[i]["ids"] for i in idxs
                if i in ref_items and key != udaci_ref_key]
        figs = {k: median([ch.get(k) for ch in r["chunks"]])
                for k in ("headlines_per_s", "generated_tokens_per_s", "decode_tokens_per_s", "ttft_ms_p50")}
        out[key] = {
            "engine": c["engine"], "label": c["label"], "bits": c["bits"], "batch": r["batch"],
            "articles": len(idxs), "chunks": r["chunks"], **figs,
            "new_tokens_mean": statistics.mean(r["items"][i]["n_new"] for i in idxs),
            "peak_rss_mb": workers[c["key"]].peak_rss / 2 ** 20,
            "load_s": workers[c["key"]].load_s,
            "rouge1": statistics.mean(s["rouge1"].fmeasure for s in scores),
            "rouge2": statistics.mean(s["rouge2"].fmeasure for s in scores),
            "rougeL": statistics.mean(s["rougeL"].fmeasure for s in scores),
            "same_as_udaci": (sum(same) / len(same)) if same else None,
            "same_as_udaci_ref": udaci_ref_key,
            "headlines": {str(i): texts[i] for i in idxs[: a.keep_headlines]},
        }
    return out


def ratios(summary: Dict[str, dict], res: Dict[str, dict], udaci_key: str, peer_key: str) -> dict:
    """udaci / peer for each figure: per chunk (both measured within minutes), then the median."""
    u, p = res[udaci_key]["chunks"], res[peer_key]["chunks"]
    out = {}
    for k in ("headlines_per_s", "decode_tokens_per_s", "ttft_ms_p50"):
        rs = [x[k] / y[k] for x, y in zip(u, p) if x.get(k) and y.get(k)]
        out[k] = median(rs)
    su, sp = summary[udaci_key], summary[peer_key]
    out["peak_rss"] = su["peak_rss_mb"] / sp["peak_rss_mb"] if sp["peak_rss_mb"] else None
    out["rougeL"] = su["rougeL"] / sp["rougeL"] if sp["rougeL"] else None
    return out


# ---------------------------------------------------------------------- report


def fmt(x, spec=".2f", none="—"):
    return none if x is None else format(x, spec)


def rat(x):
    return "—" if x is None else f"{x:.2f}×"


def pct(x):
    return "—" if x is None else f"{100 * x:.0f}%"


def table(header: List[str], rows: List[List[str]], first_text_columns: int = 1) -> List[str]:
    """A Markdown table: the first columns left-aligned, numbers right-aligned."""
    align = ["---"] * first_text_columns + ["--:"] * (len(header) - first_text_columns)
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(report: dict) -> str:
    L = []
    m = report["machine"]
    L.append(f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['threads']} threads per engine; "
             f"{report['created_utc']}; udaci {report['udaci_commit']}; "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".")
    L.append("")
    h = report["headline"]
    L.append(f"Headline run: {h['articles']} articles in {h['chunks']} chunks (engines alternated per chunk; "
             f"medians over chunks), greedy, max_new_tokens {report['settings']['max_new_tokens']}, "
             f"same prompt ids for all.")
    L.append("")
    L += table(["Engine", "Batch", "Headlines/s", "Decode tok/s", "TTFT p50 (ms)", "Peak RSS (MB)", "ROUGE-1",
                "ROUGE-2", "ROUGE-L", "Same as udaci"],
               [[s["label"], str(s["batch"]), fmt(s["headlines_per_s"]), fmt(s["decode_tokens_per_s"], ".1f"),
                 fmt(s["ttft_ms_p50"], ".0f"), f"{s['peak_rss_mb']:.0f}", f"{s['rouge1']:.3f}",
                 f"{s['rouge2']:.3f}", f"{s['rougeL']:.3f}", pct(s["same_as_udaci"])]
                for s in h["results"].values()])
    L.append("")
    L.append("udaci / peer (median of per-chunk ratios; TTFT and memory: below 1 is better for udaci):")
    L.append("")
    L += table(["udaci vs", "Batch", "Headlines/s", "Decode tok/s", "TTFT", "Peak RSS", "ROUGE-L"],
               [[r["peer"], str(r["batch"])] + [rat(r["ratios"][k]) for k in
                                                 ("headlines_per_s", "decode_tokens_per_s", "ttft_ms_p50",
                                                  "peak_rss", "rougeL")]
                for r in h["ratios"]])
    b = report.get("bits")
    if b:
        L.append("")
        L.append(f"Equal bits per weight, batch 1: {b['articles']} articles in {b['chunks']} chunks, "
                 "udaci and llama.cpp on the same GGUF file.")
        L.append("")
        L += table(["Engine", "Format", "Decode tok/s", "TTFT p50 (ms)", "Headlines/s", "Peak RSS (MB)", "ROUGE-L",
                    "Same as udaci"],
                   [[s["label"], s["bits"], fmt(s["decode_tokens_per_s"], ".1f"), fmt(s["ttft_ms_p50"], ".0f"),
                     fmt(s["headlines_per_s"]), f"{s['peak_rss_mb']:.0f}", f"{s['rougeL']:.3f}",
                     pct(s["same_as_udaci"])]
                    for s in b["results"].values()], first_text_columns=2)
        L.append("")
        L += table(["udaci vs llama.cpp", "Decode tok/s", "TTFT", "Headlines/s"],
                   [[f"{r['udaci']} / {r['peer']}"] + [rat(r["ratios"][k]) for k in
                                                       ("decode_tokens_per_s", "ttft_ms_p50", "headlines_per_s")]
                    for r in b["ratios"]])
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------------ main


def versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("llama-cpp-python", "transformers", "torch", "ctranslate2", "rouge-score", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="udaci vs llama.cpp, transformers and CTranslate2 on news headlines")
    ap.add_argument("--articles", type=int, default=200)
    ap.add_argument("--chunks", type=int, default=5, help="headline run: chunks the engines alternate over")
    ap.add_argument("--bits-articles", type=int, default=40, help="equal-bits part: articles (0: skip the part)")
    ap.add_argument("--bits-chunks", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="the batched runs' batch size")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--udaci-cache", default="contiguous")
    ap.add_argument("--input", default=os.path.join(REPO, "..", "shared", "assets", "news", "news_category_sample.jsonl"))
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="udaci build folder (CLI + Python module)")
    ap.add_argument("--workdir", default=os.path.join(REPO, ".peers-work"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--keep-headlines", type=int, default=20, help="headlines per config written to the JSON")
    a = ap.parse_args(argv)
    t_start = time.time()

    a.udaci_cli = os.path.join(a.build, "src", "udaci")
    pymod = os.path.join(a.build, "bindings", "python")
    for p, what in ((a.udaci_cli, "the udaci CLI"), (os.path.join(pymod, "udaci"), "udaci's Python module")):
        if not os.path.exists(p):
            sys.exit(f"peers: {what} is not at {p}: build udaci first (scripts/setup.sh) or pass --build")
    if not os.path.exists(a.input):
        sys.exit(f"peers: no news data at {a.input} (--input)")
    os.makedirs(a.workdir, exist_ok=True)
    a.logdir = os.path.join(a.workdir, "logs")
    os.makedirs(a.logdir, exist_ok=True)
    a.json = a.json or os.path.join(a.workdir, "peers.json")
    a.markdown = a.markdown or os.path.join(a.workdir, "peers.md")

    env = dict(os.environ)
    env["PYTHONPATH"] = pymod + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(a.threads)
    default_gguf = subprocess.run([sys.executable, "-c", "import udaci; print(udaci.default_model_path())"],
                                  env=env, check=True, capture_output=True, text=True).stdout.strip()
    a.eos = eos_ids(default_gguf)
    records = read_articles(a.input, a.articles)
    n = len(records)
    log(f"{n} articles from {a.input}; model {default_gguf}; end token {a.eos}")

    t_prep = time.time()
    models = prepare_models(a, default_gguf)
    prep_s = time.time() - t_prep

    texts: Dict[tuple, str] = {}  # filled by udaci's detokenizer once every engine has run

    def text_of(ids: List[int]) -> str:
        text = texts[tuple(ids)]
        lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
        return lines[0] if lines else ""

    summaries = [r["short_description"] for r in records]
    references = [r["headline"] for r in records]

    workers: Dict[str, Worker] = {}
    failed = {}

    def start(configs):
        for c in configs:
            if c["key"] in workers:
                continue
            try:
                log(f"starting {c['label']}")
                workers[c["key"]] = Worker(c["key"], c["argv"] + ["--threads", str(a.threads)], env, a.logdir)
            except Exception as e:
                failed[c["key"]] = str(e)
                log(f"{c['label']} did not start: {e}")

    hconf = headline_configs(a, models)
    start(hconf)
    if "udaci" not in workers:
        sys.exit(f"peers: udaci did not start: {failed.get('udaci')}")
    prompt_ids = a.prompt_ids = workers["udaci"].call(cmd="prompt_ids", summaries=summaries)["ids"]

    def prompts_of(c, chunk):
        return [summaries[i] for i in chunk] if c["engine"] == "udaci" else [prompt_ids[i] for i in chunk]

    # warm-up: two articles through every engine at both batch sizes, not measured
    for c in hconf:
        if c["key"] in workers:
            for b in (1, a.batch):
                workers[c["key"]].call(cmd="run", prompts=prompts_of(c, [0, 1]), batch=b, max_new=a.max_new_tokens,
                                       eos=a.eos)

    t_head = time.time()
    hres = measure("headline", hconf, workers, prompts_of, split_articles(n, a.chunks), [1, a.batch], a)
    head_s = time.time() - t_head

    bits, bres = None, {}
    if a.bits_articles > 0:
        bconf = bits_configs(a, models)
        start(bconf)
        for c in bconf:
            if c["key"] in workers:
                workers[c["key"]].call(cmd="run", prompts=prompts_of(c, [0, 1]), batch=1, max_new=a.max_new_tokens,
                                       eos=a.eos)
        nb = min(a.bits_articles, n)
        t_bits = time.time()
        a.bits_chunks_used = len(split_articles(nb, a.bits_chunks))
        bres = measure("bits", bconf, workers, prompts_of, split_articles(nb, a.bits_chunks), [1], a)
        bits_s = time.time() - t_bits

    # one detokenizer for every engine's ids: udaci's (tested against HF tokenizers)
    all_ids = {tuple(it["ids"]) for r in list(hres.values()) + list(bres.values()) for it in r["items"].values()}
    all_ids = [list(x) for x in all_ids]
    for text, ids in zip(workers["udaci"].call(cmd="detokenize", ids=all_ids)["texts"], all_ids):
        texts[tuple(ids)] = text
    hsum = summarize(hres, workers, text_of, references, "udaci@1", a)
    hrat = []
    for b in (1, a.batch):
        for peer in ("llama.cpp", "transformers", "ctranslate2"):
            if f"udaci@{b}" in hres and f"{peer}@{b}" in hres:
                hrat.append({"peer": peer, "batch": b, "ratios": ratios(hsum, hres, f"udaci@{b}", f"{peer}@{b}")})
    if bres:
        bsum = {}
        pairs = [("udaci Q4_0", "llama.cpp Q4_0"), ("udaci int4", "llama.cpp Q4_0"),
                 ("udaci Q8_0", "llama.cpp Q8_0"), ("udaci int8", "llama.cpp Q8_0"),
                 ("udaci F32", "llama.cpp F32")]
        # agreement: each llama.cpp run against udaci on the same file
        for key in bres:
            ref = {"llama.cpp Q4_0@1": "udaci Q4_0@1", "llama.cpp Q8_0@1": "udaci Q8_0@1",
                   "llama.cpp F32@1": "udaci F32@1"}.get(key, key)
            bsum[key] = summarize({key: bres[key], **({ref: bres[ref]} if ref in bres else {})}, workers, text_of,
                                  references, ref, a)[key]
        brat = [{"udaci": u, "peer": p, "ratios": ratios(bsum, bres, f"{u}@1", f"{p}@1")}
                for u, p in pairs if f"{u}@1" in bres and f"{p}@1" in bres]
        bits = {"articles": len(bres[next(iter(bres))]["items"]), "chunks": a.bits_chunks_used,
                "results": bsum, "ratios": brat, "seconds": bits_s}
    for w in list(workers.values()):
        w.close()

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {
        "schema": "udaci-peers/1",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "udaci_commit": commit,
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": a.threads,
                    "os": f"{platform.system()} {platform.release()}"},
        "versions": versions(),
        "settings": {"articles": n, "input": os.path.relpath(a.input, REPO), "max_new_tokens": a.max_new_tokens,
                     "batch": a.batch, "eos": a.eos, "threads": a.threads, "udaci_cache": a.udaci_cache,
                     "rouge": "rouge-score, use_stemmer=False, reference = the dataset headline, "
                              "generated = first non-empty line of the decoded ids"},
        "models": {k: os.path.relpath(v, REPO) if v.startswith(REPO) else v for k, v in models.items()},
        "failed_to_start": failed,
        "headline": {"articles": n, "chunks": len(split_articles(n, a.chunks)), "results": hsum, "ratios": hrat,
                     "seconds": head_s},
        "bits": bits,
        "seconds": {"prepare_models": prep_s, "total": time.time() - t_start},
    }
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    md = markdown(report)
    with open(a.markdown, "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    log(f"wrote {a.json} and {a.markdown} in {time.time() - t_start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
