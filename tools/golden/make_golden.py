#!/usr/bin/env python3
"""Generate golden reference fixtures for udaci from Hugging Face transformers.

Run with the reference venv (torch + transformers), from anywhere:

    /opt/udaci-ref/bin/python tools/golden/make_golden.py

For every model in MODELS this writes tests/fixtures/golden/<name>/ with
  config.json, generation_config.json, model.safetensors  (save_pretrained)
  expected.safetensors  prompt_ids   int64  [40]
                        logits       fp32   [40, vocab]  one forward pass over the prompt
                        greedy_ids   int64  [24]         greedy continuation (EOS ignored)
                        greedy_logits fp32  [24, vocab]  logits that chose each greedy id
  VERSIONS.json         library versions, seed, command line, date, checks

The script then checks its own output (see verify_fixture): it reloads the
saved checkpoint with transformers and recomputes everything, and it runs an
independent plain-torch Llama forward written from the config.json keys, so
the fixtures are known to be interpretable from the files alone.
See tools/golden/README.md for what each fixture is meant to catch.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import platform
import shutil
import sys
from pathlib import Path

import torch

# Determinism first: one thread, deterministic kernels, fixed seeds.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import safetensors  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

SEED = 20240611
PROMPT_LEN = 40
NEW_TOKENS = 24
BOS_ID = 1
EOS_ID = 2
PAD_ID = 0

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_ROOT = REPO_ROOT / "tests" / "fixtures" / "golden"

# Weight init. HF's default std 0.02 gives nearly flat logits on models this
# small, so every matrix is redrawn with WEIGHT_STD and every RMSNorm weight
# with mean 1 / std NORM_STD (never exactly 1.0, so a skipped or misapplied
# norm weight shows up in the logits).
WEIGHT_STD = 0.15
NORM_STD = 0.2

MODELS = [
    {
        "name": "tiny-gqa-tied",
        "dtype": "float32",
        "config": dict(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=176,  # not a multiple of hidden: catches shape bugs
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,  # GQA, 4 query heads per KV head
            head_dim=8,
            tie_word_embeddings=True,
            rope_theta=10000.0,
            rope_scaling=None,
            rms_norm_eps=1e-5,
            max_position_embeddings=128,
        ),
    },
    {
        "name": "tiny-llama3-rope",
        "dtype": "float32",
        "config": dict(
            vocab_size=320,
            hidden_size=96,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=6,
            num_key_value_heads=1,  # MQA
            head_dim=16,
            tie_word_embeddings=False,
            rope_theta=500000.0,
            # original_max_position_embeddings=64 puts the 8 frequencies of
            # head_dim 16 at theta 5e5 (wavelengths 6.3, 32.4, 167, ...) into
            # all three llama3 regimes: high_freq_wavelen = 64/4 = 16,
            # low_freq_wavelen = 64/1 = 64 -> i=0 unchanged, i=1 smoothed,
            # i>=2 divided by factor. (32 would leave no smoothed frequency.)
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            rms_norm_eps=1e-5,
            max_position_embeddings=256,
        ),
        # Seed offsets are picked (by trying a few) so the greedy continuation
        # never emits EOS and has no near-tie step; verify_fixture asserts both.
        "seed_offset": 5,
    },
    {
        # Same architecture as tiny-gqa-tied, weights stored as bf16. Expected
        # outputs are computed in fp32 from the bf16-rounded weights, so a
        # loader that upcasts bf16 -> fp32 must reproduce them exactly as the
        # fp32 fixtures.
        "name": "tiny-bf16",
        "dtype": "bfloat16",
        "config": None,  # filled from tiny-gqa-tied below
        "seed_offset": 7,
    },
]
MODELS[2]["config"] = dict(MODELS[0]["config"])


def make_config(cfg: dict) -> LlamaConfig:
    cfg = dict(cfg)
    rope_theta = cfg.pop("rope_theta")
    rope_scaling = cfg.pop("rope_scaling")
    # transformers 5 folds rope_theta and rope_scaling into rope_parameters;
    # passing the legacy kwargs is still accepted and converted.
    return LlamaConfig(
        **cfg,
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        attn_implementation="eager",
    )


def init_weights(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=gen))


def make_prompt(vocab: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (PROMPT_LEN,), generator=gen, dtype=torch.int64)
    # Keep EOS out of the prompt (resample those entries from [3, vocab)).
    bad = ids == EOS_ID
    if bad.any():
        ids[bad] = torch.randint(3, vocab, (int(bad.sum()),), generator=gen, dtype=torch.int64)
    return ids


@torch.no_grad()
def prompt_logits(model, prompt: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=prompt[None, :], use_cache=False)
    return out.logits[0].float().clone()


@torch.no_grad()
def greedy(model, prompt: torch.Tensor):
    """Plain argmax loop with the KV cache; EOS is not special (never stops)."""
    out = model(input_ids=prompt[None, :], use_cache=True)
    past = out.past_key_values
    step_logits = out.logits[0, -1].float().clone()
    ids, rows = [], []
    for step in range(NEW_TOKENS):
        tok = int(torch.argmax(step_logits))
        ids.append(tok)
        rows.append(step_logits)
        if step + 1 == NEW_TOKENS:
            break
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        step_logits = out.logits[0, -1].float().clone()
    return torch.tensor(ids, dtype=torch.int64), torch.stack(rows)


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max over positions of max|a-ref| / (max(ref)-min(ref)) at that position."""
    a = a.reshape(-1, a.shape[-1]).double()
    ref = ref.reshape(-1, ref.shape[-1]).double()
    rng = ref.max(dim=-1).values - ref.min(dim=-1).values
    return float(((a - ref).abs().max(dim=-1).values / rng).max())


def top2_margin(rows: torch.Tensor) -> float:
    """Smallest (top1 - top2) / range over rows: how far from a tie greedy is."""
    r = rows.double()
    top = torch.topk(r, 2, dim=-1).values
    rng = r.max(dim=-1).values - r.min(dim=-1).values
    return float(((top[:, 0] - top[:, 1]) / rng).min())


# ---------------------------------------------------------------------------
# Independent plain-torch Llama forward, driven only by config.json and the
# safetensors file. It exists to prove the fixture files alone (including the
# transformers-5 config key layout) determine the expected logits.
# ---------------------------------------------------------------------------


def read_rope(cfg: dict):
    """Accepts both the legacy (rope_theta, rope_scaling) and the
    transformers-5 (rope_parameters) layouts."""
    params = dict(cfg.get("rope_parameters") or {})
    legacy = cfg.get("rope_scaling") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = {k: v for k, v in {**legacy, **params}.items() if k != "rope_theta"}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    return float(theta), rope_type, scaling


def ref_inv_freq(cfg: dict, head_dim: int, bug: str = "") -> torch.Tensor:
    theta, rope_type, sc = read_rope(cfg)
    i = torch.arange(0, head_dim, 2, dtype=torch.float64)
    inv = 1.0 / (theta ** (i / head_dim))
    if rope_type == "default" or bug == "no_rope_scaling":
        return inv
    assert rope_type == "llama3", rope_type
    factor, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
    old = sc["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    low_wl, high_wl = old / lo, old / hi
    out = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv / factor + smooth * inv
    mid = (wavelen >= high_wl) & (wavelen <= low_wl)
    if bug == "no_smoothing":
        return out
    return torch.where(mid, smoothed, out)


@torch.no_grad()
def ref_forward(fixture_dir: Path, ids: torch.Tensor, bug: str = "") -> torch.Tensor:
    """bug != "" injects one named mistake, to show the fixture catches it."""
    cfg = json.loads((fixture_dir / "config.json").read_text())
    w = {k: v.to(torch.float64) for k, v in load_file(str(fixture_dir / "model.safetensors")).items()}
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"] if bug != "eps_1e-6" else 1e-6
    T = ids.shape[0]

    def rms(x, g):
        if bug == "unit_norm_weights":
            g = torch.ones_like(g)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    inv = ref_inv_freq(cfg, hd, bug)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # [T, hd/2]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(x):  # x [heads, T, hd]; rotate-half pairing (i, i + hd/2)
        if bug == "interleaved_rope":  # GPT-J style pairs (2i, 2i+1)
            x1, x2 = x[..., 0::2], x[..., 1::2]
            return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    x = w["model.embed_tokens.weight"][ids]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(T, nh, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        q, k = rope(q), rope(k)
        rep = nh // nkv  # query head j uses KV head j // rep
        if bug == "gqa_modulo":  # wrong mapping: query head j -> KV head j % nkv
            k, v = k.repeat(rep, 1, 1), v.repeat(rep, 1, 1)
        else:
            k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, nh * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = w.get("lm_head.weight")
    if head is None:
        assert cfg["tie_word_embeddings"], "lm_head.weight missing but embeddings not tied"
        head = w["model.embed_tokens.weight"]
    return (x @ head.T).float()


# ---------------------------------------------------------------------------


def print_llama3_regimes(model) -> dict:
    rot = model.model.rotary_emb
    cfg = model.config
    theta = cfg.rope_parameters["rope_theta"]
    hd = cfg.head_dim
    base = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
    inv = rot.inv_freq.float()
    factor = cfg.rope_parameters["factor"]
    counts = {"unchanged": 0, "divided": 0, "smoothed": 0}
    print("  llama3 inv_freq regimes (i, wavelen, base, scaled, regime):")
    for i, (b, s) in enumerate(zip(base.tolist(), inv.tolist())):
        if math.isclose(s, b, rel_tol=1e-6):
            regime = "unchanged"
        elif math.isclose(s, b / factor, rel_tol=1e-6):
            regime = "divided"
        else:
            regime = "smoothed"
        counts[regime] += 1
        print(f"    {i}: wl={2 * math.pi / b:10.2f} base={b:.6e} scaled={s:.6e} {regime}")
    assert all(v > 0 for v in counts.values()), f"not all llama3 regimes hit: {counts}"
    return counts


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(spec: dict, index: int) -> dict:
    name = spec["name"]
    out = OUT_ROOT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    seed = SEED + 1000 * index + spec.get("seed_offset", 0)

    config = make_config(spec["config"])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    init_weights(model, seed)
    model.eval()
    model.generation_config.eos_token_id = None  # see README: EOS never stops greedy
    model.generation_config.pad_token_id = PAD_ID
    if spec["dtype"] == "bfloat16":
        # Round the parameters to bf16 in place but keep the model fp32: the
        # expected values are computed in fp32 from exactly the weights that
        # are stored. (model.to(bfloat16).float() would also round the
        # non-persistent rotary inv_freq buffer, which no loader sees.)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(str(out), safe_serialization=True)
    else:
        model.save_pretrained(str(out), safe_serialization=True)

    info = {"name": name, "seed": seed, "weights_dtype": spec["dtype"]}
    if spec["config"]["rope_scaling"]:
        info["llama3_regimes"] = print_llama3_regimes(model)

    prompt = make_prompt(config.vocab_size, seed + 1)
    logits = prompt_logits(model, prompt)
    greedy_ids, greedy_logits = greedy(model, prompt)

    save_file(
        {
            "prompt_ids": prompt.contiguous(),
            "logits": logits.contiguous(),
            "greedy_ids": greedy_ids.contiguous(),
            "greedy_logits": greedy_logits.contiguous(),
        },
        str(out / "expected.safetensors"),
        # One key only: safetensors writes metadata from a hash map, so two
        # keys would come out in run-dependent order and break byte-identity.
        metadata={"format": "pt"},
    )
    info["prompt_ids"] = prompt.tolist()
    info["greedy_ids"] = greedy_ids.tolist()
    info["checks"] = verify_fixture(out, model, config, spec["dtype"])
    return info


@torch.no_grad()
def verify_fixture(out: Path, model_in_memory, config, weights_dtype: str) -> dict:
    """Reload from disk and recompute; raise if anything disagrees."""
    exp = load_file(str(out / "expected.safetensors"))
    prompt, logits = exp["prompt_ids"], exp["logits"]
    gids, glog = exp["greedy_ids"], exp["greedy_logits"]
    V = config.vocab_size
    assert prompt.dtype == torch.int64 and prompt.shape == (PROMPT_LEN,)
    assert logits.dtype == torch.float32 and logits.shape == (PROMPT_LEN, V)
    assert gids.dtype == torch.int64 and gids.shape == (NEW_TOKENS,)
    assert glog.dtype == torch.float32 and glog.shape == (NEW_TOKENS, V)
    assert EOS_ID not in prompt.tolist()

    keys = set(load_file(str(out / "model.safetensors")).keys())
    if config.tie_word_embeddings:
        assert "lm_head.weight" not in keys, "tied model should not store lm_head.weight"
    else:
        assert "lm_head.weight" in keys

    checks = {}
    want_dtype = getattr(torch, weights_dtype)
    stored = load_file(str(out / "model.safetensors"))
    assert all(t.dtype == want_dtype for t in stored.values()), {k: t.dtype for k, t in stored.items()}
    # The in-memory model the expectations came from must equal the reload.
    m1_logits = prompt_logits(model_in_memory, prompt)
    assert torch.equal(m1_logits, logits)

    # 1. Reload with transformers (explicit fp32: v5 defaults to dtype="auto").
    m2 = LlamaForCausalLM.from_pretrained(str(out), dtype=torch.float32, attn_implementation="eager").eval()
    l2 = prompt_logits(m2, prompt)
    checks["reload_logits_max_abs"] = float((l2 - logits).abs().max())
    assert checks["reload_logits_max_abs"] <= 1e-6, checks
    g2, gl2 = greedy(m2, prompt)
    assert torch.equal(g2, gids), (g2, gids)
    checks["reload_greedy_logits_max_abs"] = float((gl2 - glog).abs().max())
    assert checks["reload_greedy_logits_max_abs"] <= 1e-6, checks

    # 2. greedy_logits[0] is the prompt's last row; the rest must agree with a
    #    cache-free forward over prompt + greedy ids.
    checks["greedy0_vs_logits39_max_abs"] = float((glog[0] - logits[-1]).abs().max())
    full = prompt_logits(m2, torch.cat([prompt, gids]))
    checks["cached_vs_uncached_rel"] = rel_err(glog, full[PROMPT_LEN - 1 : PROMPT_LEN - 1 + NEW_TOKENS])
    assert checks["cached_vs_uncached_rel"] <= 1e-5, checks
    assert torch.equal(full[PROMPT_LEN - 1 : -1].argmax(-1), gids)

    # 3. transformers' own generate() (greedy, EOS disabled) gives the same ids.
    gen = m2.generate(
        input_ids=prompt[None, :],
        attention_mask=torch.ones(1, PROMPT_LEN, dtype=torch.int64),
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        eos_token_id=None,
        pad_token_id=PAD_ID,
    )[0, PROMPT_LEN:]
    assert torch.equal(gen, gids), (gen, gids)

    # 4. Independent float64 forward from the files alone, held to the same
    #    tolerance as the C++ test (relative to the per-position logit range).
    ref = ref_forward(out, prompt)
    checks["independent_forward_rel"] = rel_err(logits, ref)
    assert checks["independent_forward_rel"] <= 1e-5, checks
    ref_full = ref_forward(out, torch.cat([prompt, gids]))
    assert torch.equal(ref_full[PROMPT_LEN - 1 : -1].argmax(-1), gids)

    # 4b. Each typical loader/model bug must land >= 5x outside the 1e-4 tolerance.
    bugs = ["unit_norm_weights", "interleaved_rope", "eps_1e-6"]
    if config.num_key_value_heads not in (1, config.num_attention_heads):
        bugs.append("gqa_modulo")
    if read_rope(json.loads((out / "config.json").read_text()))[1] == "llama3":
        bugs += ["no_rope_scaling", "no_smoothing"]
    checks["injected_bug_rel"] = {}
    for bug in bugs:
        err = rel_err(ref_forward(out, prompt, bug), logits)
        checks["injected_bug_rel"][bug] = err
        assert err > 5e-4, f"fixture does not detect bug {bug}: rel err {err}"

    # 5. Diagnostics: the fixture must be discriminating.
    rng = logits.max(-1).values - logits.min(-1).values
    checks["logit_range_min"] = float(rng.min())
    checks["logit_range_max"] = float(rng.max())
    checks["greedy_distinct_ids"] = len(set(gids.tolist()))
    checks["greedy_min_top2_margin_rel"] = top2_margin(glog)
    checks["prompt_min_top2_margin_rel"] = top2_margin(logits)
    # EOS in the greedy ids would make the C++ test depend on stop-at-EOS
    # handling; the seeds are chosen so it never appears.
    assert EOS_ID not in gids.tolist(), "EOS in greedy continuation: change seed_offset"
    assert checks["greedy_distinct_ids"] >= 4, "greedy continuation too repetitive"
    # Greedy ids are only well defined under the 1e-4 logit tolerance if no
    # step is a near-tie: a top1-top2 gap above 2 * 1e-4 of the range cannot
    # flip for any result within tolerance. Demand a safety factor on top.
    assert checks["greedy_min_top2_margin_rel"] > 4e-4, checks
    del model_in_memory
    return checks


def main() -> int:
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": __import__("numpy").__version__,
    }
    cmd = "/opt/udaci-ref/bin/python tools/golden/make_golden.py"
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    total = 0
    for index, spec in enumerate(MODELS):
        print(f"== {spec['name']}")
        info = build(spec, index)
        out = OUT_ROOT / spec["name"]
        meta = {
            "versions": versions,
            "base_seed": SEED,
            "seed": info["seed"],
            "command": cmd,
            "argv": sys.argv,
            "date_utc": date,
            "settings": {
                "torch_num_threads": 1,
                "deterministic_algorithms": True,
                "attn_implementation": "eager",
                "compute_dtype": "float32",
                "weights_dtype": info["weights_dtype"],
                "weight_std": WEIGHT_STD,
                "norm_weight": f"1 + {NORM_STD} * N(0,1)",
                "prompt_len": PROMPT_LEN,
                "new_tokens": NEW_TOKENS,
                "greedy": "argmax loop with KV cache, EOS ignored (never stops early); "
                "equal to generate(do_sample=False, eos_token_id=None)",
                "tolerance": "max|ours-ref| / (max(ref)-min(ref)) per position <= 1e-4",
            },
            "prompt_ids": info["prompt_ids"],
            "greedy_ids": info["greedy_ids"],
            "checks": info["checks"],
        }
        if "llama3_regimes" in info:
            meta["llama3_regimes"] = info["llama3_regimes"]
        files = sorted(p for p in out.iterdir() if p.is_file())
        meta["sha256"] = {p.name: sha256(p) for p in files}
        (out / "VERSIONS.json").write_text(json.dumps(meta, indent=2) + "\n")
        size = sum(p.stat().st_size for p in out.iterdir())
        total += size
        print(f"  checks: {json.dumps(info['checks'])}")
        print(f"  greedy: {info['greedy_ids']}")
        print(f"  files: {[p.name for p in sorted(out.iterdir())]}  size={size} bytes")
    print(f"total fixture size: {total} bytes")
    assert total < 3_000_000, "fixtures too large"
    return 0


if __name__ == "__main__":
    sys.exit(main())
