#!/usr/bin/env python3
"""Writes the GGUF fixtures of tests/unit/test_gguf*.cpp into tests/fixtures/gguf/.

  quants.gguf + quants_expected.safetensors
      One tensor per block format (Q4_0 ... Q6_K, F16, BF16, F32) made of random
      blocks (random quant bits, sane random f16 scales) and written with
      general.alignment = 64; the expected floats come from gguf-py's reference
      dequantiser (gguf.quants.dequantize).
  tiny_llama.gguf + tiny_llama_expected.safetensors
      A tiny llama-shaped model (hidden 64, 2 layers, 4 heads / 2 kv heads,
      head_dim 16, ffn 256, vocab 96) written the way convert_hf_to_gguf.py does:
      Q and K rows permuted for llama.cpp's rotary layout, a mix of tensor types,
      llama.* hyper-parameters, a small gpt2 tokenizer, rope_freqs.weight, and
      udaci.test.* keys holding every metadata value type. The expected
      safetensors file holds every tensor under its Hugging Face name, in HF
      row order (the permutation undone), as float32 = what
      WeightStore::tensor(name, kFloat) must return.

Run with the reference venv:  /opt/udaci-ref/bin/python tools/reference/make_gguf_fixtures.py
Versions used are written to tests/fixtures/gguf/VERSIONS.json.
"""

import json
import os
import platform
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import dequantize, quantize
import safetensors
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "gguf")
rng = np.random.default_rng(20240611)

# (type, offsets of f16 scale fields inside a block, whether the 2nd scale is a "min" (positive))
BLOCK_SCALES = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def random_blocks(qtype, rows, cols):
    """Random raw blocks for a [rows, cols] tensor: random quant bits, f16 scales in a sane range."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    assert cols % block_elems == 0
    n_blocks = rows * cols // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in BLOCK_SCALES[qtype]:
        scale = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, cols // block_elems * block_bytes)


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: rows of Q/K reordered for llama.cpp's rotary."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute_rows(stored, n_head):
    """Inverse of permute, computed through the row index map (independent of the C++ formula)."""
    rows = stored.shape[0]
    src = permute(np.arange(rows), n_head)  # stored[i] = original[src[i]]
    out = np.empty_like(stored)
    out[src] = stored
    return out


def make_quants():
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, arch="udaci-quant-test")
    w.add_custom_alignment(64)
    expected = {}
    for qtype in BLOCK_SCALES:
        block_elems = gguf.GGML_QUANT_SIZES[qtype][0]
        rows, cols = 3, 2 * block_elems if block_elems == 256 else 4 * block_elems
        raw = random_blocks(qtype, rows, cols)
        w.add_tensor(qtype.name, raw, raw_dtype=qtype)
        expected[qtype.name] = dequantize(raw, qtype).astype(np.float32)
        assert expected[qtype.name].shape == (rows, cols)
    # F16 with specials: subnormals, signed zero, infinities, the largest half.
    f16 = rng.normal(0, 2, size=(4, 40)).astype(np.float16)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, -65504.0, 6e-8, -6e-8, 3e-5, 1e-4],
                        dtype=np.float16)
    f16.reshape(-1)[:specials.size] = specials
    w.add_tensor("F16", f16)
    expected["F16"] = f16.astype(np.float32)
    # BF16: random finite bit patterns (exponent field not all ones).
    bits = rng.integers(0, 1 << 16, size=(2, 48), dtype=np.uint16)
    bits = np.where((bits & 0x7F80) == 0x7F80, bits & 0xBFFF, bits).astype(np.uint16)
    w.add_tensor("BF16", bits.view(np.uint8).reshape(2, 96), raw_dtype=T.BF16)
    expected["BF16"] = dequantize(bits.view(np.uint8).reshape(2, 96), T.BF16).astype(np.float32)
    f32 = rng.normal(0, 1, size=(5, 7)).astype(np.float32)
    w.add_tensor("F32", f32)
    expected["F32"] = f32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, os.path.join(OUT, "quants_expected.safetensors"))
    os.chmod(os.path.join(OUT, "quants_expected.safetensors"), 0o644)


def make_tiny_llama():
    hidden, n_layers, n_head, n_head_kv, head_dim, ffn, vocab = 64, 2, 4, 2, 16, 256, 96
    path = os.path.join(OUT, "tiny_llama.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_string("general.name", "udaci tiny llama fixture")
    w.add_uint32("llama.context_length", 512)
    w.add_uint32("llama.embedding_length", hidden)
    w.add_uint32("llama.block_count", n_layers)
    w.add_uint32("llama.feed_forward_length", ffn)
    w.add_uint32("llama.attention.head_count", n_head)
    w.add_uint32("llama.attention.head_count_kv", n_head_kv)
    w.add_uint32("llama.rope.dimension_count", head_dim)
    w.add_float32("llama.rope.freq_base", 50000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_string("llama.rope.scaling.type", "linear")
    w.add_float32("llama.rope.scaling.factor", 2.0)
    w.add_uint32("general.file_type", 7)

    # Tokenizer (tokenizer.ggml.*): specials first, then plain tokens.
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"t{i}" for i in range(3, vocab)]
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "smollm")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", [3, 3, 3] + [1] * (vocab - 3))
    w.add_array("tokenizer.ggml.merges", ["t 1", "t 2", "t1 0"])
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_uint32("tokenizer.ggml.eot_token_id", 0)
    w.add_uint32("tokenizer.ggml.padding_token_id", 2)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_eos_token", False)
    w.add_string("tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}")

    # Every metadata value type, with the values the C++ test checks.
    w.add_uint8("udaci.test.u8", 200)
    w.add_int8("udaci.test.i8", -100)
    w.add_uint16("udaci.test.u16", 60000)
    w.add_int16("udaci.test.i16", -30000)
    w.add_uint32("udaci.test.u32", 4000000000)
    w.add_int32("udaci.test.i32", -2000000000)
    w.add_float32("udaci.test.f32", 1.5)
    w.add_uint64("udaci.test.u64", 18000000000000000000)
    w.add_int64("udaci.test.i64", -9000000000000000000)
    w.add_float64("udaci.test.f64", 3.141592653589793)
    w.add_bool("udaci.test.bool", True)
    w.add_string("udaci.test.string", "h\u00e9llo\nworld")
    # add_string() skips empty values; an empty string is still legal GGUF.
    w.add_key_value("udaci.test.empty_string", "", V.STRING)
    w.add_array("udaci.test.i32_array", [1, -2, 3])
    w.add_array("udaci.test.f32_array", [0.5, -1.25])
    w.add_array("udaci.test.string_array", ["a", "bc", ""])
    w.add_array("udaci.test.bool_array", [True, False, True])
    w.add_key_value("udaci.test.u8_array", [7, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("udaci.test.i64_array", [-5, 1 << 40], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("udaci.test.f64_array", [0.25, -2.5], V.ARRAY, sub_type=V.FLOAT64)
    w.add_array("udaci.test.nested_array", [[1, 2], [3]])

    expected = {}

    def add_plain(gname, hfname, arr):
        w.add_tensor(gname, arr)
        expected[hfname] = arr.astype(np.float32)

    def add_quant(gname, hfname, hf_w, qtype, n_perm=0):
        stored = permute(hf_w, n_perm) if n_perm else hf_w
        raw = quantize(stored.astype(np.float32), qtype)
        w.add_tensor(gname, raw, raw_dtype=qtype)
        deq = dequantize(raw, qtype).astype(np.float32)
        expected[hfname] = unpermute_rows(deq, n_perm) if n_perm else deq

    def add_random_k(gname, hfname, rows, cols, qtype):
        raw = random_blocks(qtype, rows, cols)
        w.add_tensor(gname, raw, raw_dtype=qtype)
        expected[hfname] = dequantize(raw, qtype).astype(np.float32)

    def normal(*shape):
        return rng.normal(0, 0.1, size=shape).astype(np.float32)

    add_quant("token_embd.weight", "model.embed_tokens.weight", normal(vocab, hidden), T.Q8_0)
    for i in range(n_layers):
        b, h = f"blk.{i}", f"model.layers.{i}"
        add_plain(f"{b}.attn_norm.weight", f"{h}.input_layernorm.weight", 1 + normal(hidden))
        # Q and K: permuted like the converter, in two block formats.
        add_quant(f"{b}.attn_q.weight", f"{h}.self_attn.q_proj.weight",
                  normal(n_head * head_dim, hidden), T.Q4_0 if i == 0 else T.Q5_0, n_head)
        if i == 0:
            add_quant(f"{b}.attn_k.weight", f"{h}.self_attn.k_proj.weight",
                      normal(n_head_kv * head_dim, hidden), T.Q4_1, n_head_kv)
        else:
            # F16 K: the zero-copy path of WeightStore::tensor must unpermute too.
            k = normal(n_head_kv * head_dim, hidden).astype(np.float16)
            w.add_tensor(f"{b}.attn_k.weight", permute(k, n_head_kv))
            expected[f"{h}.self_attn.k_proj.weight"] = k.astype(np.float32)
        add_plain(f"{b}.attn_v.weight", f"{h}.self_attn.v_proj.weight",
                  normal(n_head_kv * head_dim, hidden).astype(np.float16))
        o = normal(hidden, n_head * head_dim)
        o_bf16 = quantize(o, T.BF16)
        w.add_tensor(f"{b}.attn_output.weight", o_bf16, raw_dtype=T.BF16)
        expected[f"{h}.self_attn.o_proj.weight"] = dequantize(o_bf16, T.BF16).astype(np.float32)
        add_plain(f"{b}.ffn_norm.weight", f"{h}.post_attention_layernorm.weight", 1 + normal(hidden))
        add_quant(f"{b}.ffn_gate.weight", f"{h}.mlp.gate_proj.weight", normal(ffn, hidden), T.Q8_0)
        add_quant(f"{b}.ffn_up.weight", f"{h}.mlp.up_proj.weight", normal(ffn, hidden), T.Q5_1)
        add_random_k(f"{b}.ffn_down.weight", f"{h}.mlp.down_proj.weight", hidden, ffn,
                     T.Q6_K if i == 0 else T.Q4_K)
    add_plain("output_norm.weight", "model.norm.weight", 1 + normal(hidden))
    add_plain("output.weight", "lm_head.weight", normal(vocab, hidden).astype(np.float16))
    freqs = np.array([1, 1, 1, 1.5, 2, 4, 8, 8], dtype=np.float32)
    add_plain("rope_freqs.weight", "rope_freqs.weight", freqs)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, os.path.join(OUT, "tiny_llama_expected.safetensors"))
    os.chmod(os.path.join(OUT, "tiny_llama_expected.safetensors"), 0o644)


def main():
    os.makedirs(OUT, exist_ok=True)
    make_quants()
    make_tiny_llama()
    versions = {
        "script": "tools/reference/make_gguf_fixtures.py",
        "python": platform.python_version(),
        "gguf": gguf.__version__ if hasattr(gguf, "__version__") else __import__("importlib.metadata").metadata.version("gguf"),
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=2)
        f.write("\n")
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    sys.exit(main())
