"""`udaci convert --output x.gguf` read by llama.cpp's own Python GGUF reader
(gguf-py, PyPI `gguf`): an independent check of the block layout, the
metadata keys and the rotary row permutation that udaci's reader would
share any misconception of."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize
from safetensors.numpy import load_file

CLI = os.environ.get("UDACI_CLI", "")
FIXTURES = Path(os.environ.get("UDACI_FIXTURES_DIR", Path(__file__).parents[1] / "fixtures"))
TINY = FIXTURES / "golden" / "tiny-gqa-tied"


def llamacpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    # convert_hf_to_gguf.py's LlamaModel.permute, written out again.
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not CLI:
        pytest.fail("UDACI_CLI is not set (run through CTest)")
    out = tmp_path_factory.mktemp("gguf") / "tiny-int4.gguf"
    res = subprocess.run([CLI, "convert", "--model", str(TINY), "--output", str(out),
                          "--quantizer", "int4", "--quantizer-opt", "group=32",
                          "--quantizer-opt", "head=int4", "--quantizer-opt", "embed=int4"],
                         capture_output=True, text=True, check=True)
    return out, json.loads(res.stdout)


def test_metadata_is_llama(converted):
    path, report = converted
    cfg = json.loads((TINY / "config.json").read_text())
    r = GGUFReader(path)
    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.embedding_length") == cfg["hidden_size"]
    assert field(r, "llama.block_count") == cfg["num_hidden_layers"]
    assert field(r, "llama.feed_forward_length") == cfg["intermediate_size"]
    assert field(r, "llama.attention.head_count") == cfg["num_attention_heads"]
    assert field(r, "llama.attention.head_count_kv") == cfg["num_key_value_heads"]
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg["rms_norm_eps"])
    assert field(r, "general.file_type") == 3  # LLAMA_FTYPE_MOSTLY_Q4_1
    assert report["gguf_file_type"] == "Q4_1"
    names = {t.name for t in r.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert {"token_embd.weight", "output_norm.weight", "blk.1.ffn_down.weight"} <= names


def test_blocks_and_rotary_order(converted):
    path, _ = converted
    r = GGUFReader(path)
    hf = load_file(TINY / "model.safetensors")
    cfg = json.loads((TINY / "config.json").read_text())
    by_name = {t.name: t for t in r.tensors}
    cases = {
        "blk.0.attn_q.weight": ("model.layers.0.self_attn.q_proj.weight", cfg["num_attention_heads"]),
        "blk.1.attn_k.weight": ("model.layers.1.self_attn.k_proj.weight", cfg["num_key_value_heads"]),
        "blk.0.attn_v.weight": ("model.layers.0.self_attn.v_proj.weight", 0),
        "blk.1.ffn_gate.weight": ("model.layers.1.mlp.gate_proj.weight", 0),
        "token_embd.weight": ("model.embed_tokens.weight", 0),
    }
    for gname, (hname, heads) in cases.items():
        t = by_name[gname]
        assert t.tensor_type == GGMLQuantizationType.Q4_1, gname
        w = hf[hname].astype(np.float32)
        if heads:
            w = llamacpp_permute(w, heads)
        got = dequantize(t.data, t.tensor_type).reshape(w.shape)
        # Affine int4 over 32 weights: off by at most half a step of the block.
        blocks = w.reshape(w.shape[0], -1, 32)
        step = (blocks.max(-1) - blocks.min(-1)) / 15
        err = np.abs(got - w).reshape(blocks.shape).max(-1)
        assert (err <= step * 0.5 + 1e-3 * step + 1e-6).all(), gname
    # 176 inputs are no multiple of 32: ffn_down stays F32, unchanged.
    down = by_name["blk.0.ffn_down.weight"]
    assert down.tensor_type == GGMLQuantizationType.F32
    np.testing.assert_array_equal(
        np.asarray(down.data).reshape(hf["model.layers.0.mlp.down_proj.weight"].shape),
        hf["model.layers.0.mlp.down_proj.weight"])
