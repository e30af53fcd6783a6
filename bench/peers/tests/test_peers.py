"""bench/peers without the peers: udaci's worker over its real protocol, and
the orchestrator's arithmetic (figures per chunk, udaci/peer ratios, the
report). CTest `bench_peers` runs this with udaci's built module on PYTHONPATH;
the peers themselves (llama.cpp, transformers, CTranslate2) are installed only
by bench/peers/run.sh and are not needed here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import udaci

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent
sys.path.insert(0, str(PEERS))

import peers  # noqa: E402

SUMMARIES = [
    "The city council approved a new budget on Tuesday that raises spending on schools and parks.",
    "A storm brought heavy snow to the northeast, closing roads and cancelling hundreds of flights.",
    "Scientists said a new vaccine showed strong results in a late-stage trial of 30,000 people.",
]


def default_model():
    try:
        return udaci.default_model_path()
    except udaci.NotFound as e:
        if os.environ.get("UDACI_REQUIRE_MODEL") == "1":
            raise
        pytest.skip(f"default model not installed: {e}")


class Proc:
    """worker.py as peers.py drives it: JSON lines in, JSON lines out."""

    def __init__(self, *argv):
        self.p = subprocess.Popen([sys.executable, str(PEERS / "worker.py"), *argv], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.hello = json.loads(self.p.stdout.readline() or '{"ok": false, "error": "no reply"}')

    def call(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.write('{"cmd": "quit"}\n')
            self.p.stdin.flush()
        assert self.p.wait(timeout=60) == 0 or not self.hello.get("ok")
        self.p.stdout.close()
        self.p.stderr.close()


@pytest.fixture(scope="module")
def udaci_worker():
    w = Proc("--engine", "udaci", "--model", default_model(), "--quantizer", "gguf-native", "--cache",
             "paged-prefix", "--max-batch", "3", "--threads", "2")
    assert w.hello["ok"], w.hello
    yield w
    w.close()


def test_udaci_worker_matches_the_engine(udaci_worker):
    ids = udaci_worker.call(cmd="prompt_ids", summaries=SUMMARIES)
    assert ids["ok"]
    engine = udaci.Engine(model=default_model(), decoder="greedy", quantizer="gguf-native", threads=2)
    assert ids["ids"] == [engine.prompt_ids(s) for s in SUMMARIES]
    eos = [2]
    one = udaci_worker.call(cmd="run", prompts=SUMMARIES, batch=1, max_new=12, eos=eos, expected=ids["ids"])
    assert one["ok"], one
    assert one["peak_rss_bytes"] > 50 * 2 ** 20 and one["wall_s"] > 0
    for s, item in zip(SUMMARIES, one["items"]):
        direct = engine.generate([s], max_new_tokens=12, stop_at_newline=False)[0]
        assert item["ids"] == peers_truncate(direct.new_ids, eos)
        assert item["n_new"] == len(item["ids"]) and 1 <= item["n_new"] <= 12
        assert item["ttft_s"] > 0 and item["decode_s"] >= 0
    # batched: every article answered, in order, same length bounds
    many = udaci_worker.call(cmd="run", prompts=SUMMARIES, batch=3, max_new=12, eos=eos, expected=ids["ids"])
    assert many["ok"] and len(many["items"]) == 3
    assert all(1 <= it["n_new"] <= 12 and "ttft_s" not in it for it in many["items"])
    texts = udaci_worker.call(cmd="detokenize", ids=[it["ids"] for it in one["items"]])
    assert texts["texts"] == [engine.detokenize(it["ids"], skip_special=True) for it in one["items"]]


def peers_truncate(ids, eos):
    out = []
    for t in ids:
        out.append(t)
        if t in eos:
            break
    return out


def test_udaci_worker_refuses_other_prompt_ids_and_bad_commands(udaci_worker):
    wrong = udaci_worker.call(cmd="run", prompts=SUMMARIES[:1], batch=1, max_new=4, eos=[2], expected=[[1, 2, 3]])
    assert not wrong["ok"] and "prompt ids" in wrong["error"]
    bad = udaci_worker.call(cmd="frobnicate")
    assert not bad["ok"] and "frobnicate" in bad["error"]
    # the worker is still serving after both
    assert udaci_worker.call(cmd="prompt_ids", summaries=["x"])["ok"]


def test_a_worker_that_cannot_load_says_why(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00 truncated")
    w = Proc("--engine", "udaci", "--model", str(bad))
    assert not w.hello["ok"]
    assert "broken.gguf" in w.hello["error"]
    w.close()


def test_chunk_figures_rate_definitions():
    items = [{"n_new": 11, "ttft_s": 0.1, "decode_s": 0.5}, {"n_new": 21, "ttft_s": 0.3, "decode_s": 1.5}]
    f = peers.chunk_figures(items, wall=4.0)
    assert f["headlines_per_s"] == pytest.approx(0.5)
    assert f["generated_tokens_per_s"] == pytest.approx(32 / 4.0)
    assert f["decode_tokens_per_s"] == pytest.approx(30 / 2.0)  # tokens after the first / their time
    assert f["ttft_ms_p50"] == pytest.approx(200.0)
    batched = peers.chunk_figures([{"n_new": 5}, {"n_new": 7}], wall=2.0)
    assert "decode_tokens_per_s" not in batched and batched["headlines_per_s"] == pytest.approx(1.0)


def test_split_interleaves_and_covers_every_article():
    chunks = peers.split_articles(10, 3)
    assert chunks == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert peers.split_articles(2, 5) == [[0], [1]]


def test_ratios_are_medians_of_per_chunk_ratios():
    res = {
        "udaci@1": {"chunks": [{"headlines_per_s": 2.0, "decode_tokens_per_s": 100.0, "ttft_ms_p50": 50.0},
                               {"headlines_per_s": 1.0, "decode_tokens_per_s": 90.0, "ttft_ms_p50": 60.0},
                               {"headlines_per_s": 3.0, "decode_tokens_per_s": 80.0, "ttft_ms_p50": 70.0}]},
        "peer@1": {"chunks": [{"headlines_per_s": 1.0, "decode_tokens_per_s": 50.0, "ttft_ms_p50": 100.0},
                              {"headlines_per_s": 1.0, "decode_tokens_per_s": 100.0, "ttft_ms_p50": 60.0},
                              {"headlines_per_s": 2.0, "decode_tokens_per_s": 160.0, "ttft_ms_p50": 35.0}]},
    }
    summary = {"udaci@1": {"peak_rss_mb": 300.0, "rougeL": 0.2}, "peer@1": {"peak_rss_mb": 600.0, "rougeL": 0.25}}
    r = peers.ratios(summary, res, "udaci@1", "peer@1")
    assert r["headlines_per_s"] == pytest.approx(1.5)  # per chunk 2, 1, 1.5
    assert r["decode_tokens_per_s"] == pytest.approx(0.9)  # 2, 0.9, 0.5
    assert r["ttft_ms_p50"] == pytest.approx(1.0)  # 0.5, 1, 2
    assert r["peak_rss"] == pytest.approx(0.5) and r["rougeL"] == pytest.approx(0.8)


def test_summarize_scores_agreement_and_rouge():
    pytest.importorskip("rouge_score")
    cfg = {"engine": "udaci", "label": "u", "bits": "Q4_1"}
    pcfg = {"engine": "llama.cpp", "label": "l", "bits": "Q4_1"}
    res = {
        "udaci@1": {"config": {**cfg, "key": "udaci"}, "batch": 1, "chunks": [{"headlines_per_s": 1.0}],
                    "items": {0: {"ids": [5, 6, 2], "n_new": 3}, 1: {"ids": [7, 2], "n_new": 2}}},
        "peer@1": {"config": {**pcfg, "key": "peer"}, "batch": 1, "chunks": [{"headlines_per_s": 2.0}],
                   "items": {0: {"ids": [5, 6, 2], "n_new": 3}, 1: {"ids": [8, 2], "n_new": 2}}},
    }

    class W:
        peak_rss, load_s = 100 * 2 ** 20, 0.5

    texts = {(5, 6, 2): "Council approves budget", (7, 2): "Snow closes roads", (8, 2): "\nStorm hits\nmore"}

    def text_of(ids):
        lines = [x.strip() for x in texts[tuple(ids)].splitlines() if x.strip()]
        return lines[0]

    class A:
        keep_headlines = 5

    out = peers.summarize(res, {"udaci": W(), "peer": W()}, text_of,
                          ["Council approves budget", "Storm hits the northeast"], "udaci@1", A())
    assert out["udaci@1"]["same_as_udaci"] is None  # not compared with itself
    assert out["peer@1"]["same_as_udaci"] == pytest.approx(0.5)
    assert out["udaci@1"]["rouge1"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["peer@1"]["headlines"]["1"] == "Storm hits"
    assert out["peer@1"]["rougeL"] == pytest.approx((1.0 + 2 * (2 / 2) * (2 / 4) / (1 + 2 / 4)) / 2)
    md = peers.markdown({"machine": {"cpu": "x", "logical_cpus": 2, "threads": 2}, "created_utc": "t",
                         "udaci_commit": "c", "versions": {"llama-cpp-python": "0"},
                         "settings": {"max_new_tokens": 32},
                         "headline": {"articles": 2, "chunks": 1, "results": out,
                                      "ratios": [{"peer": "llama.cpp", "batch": 1,
                                                  "ratios": {"headlines_per_s": 0.5, "decode_tokens_per_s": None,
                                                             "ttft_ms_p50": None, "peak_rss": 1.0,
                                                             "rougeL": 0.9}}]},
                         "bits": None})
    assert "| l | 1 | 2.00 |" in md and "| llama.cpp | 1 | 0.50× | — |" in md


def test_same_file_refuses_unknown_types_and_needs_files(capsys):
    import same_file

    with pytest.raises(SystemExit) as e:
        same_file.make_files("model.gguf:q3_xx", 2)
    assert "unknown type 'q3_xx'" in str(e.value)
    with pytest.raises(SystemExit) as e:
        same_file.main([])
    assert e.value.code == 2
    assert "no GGUF files" in capsys.readouterr().err


def test_read_articles_takes_records_with_summary_and_headline(tmp_path):
    f = tmp_path / "news.jsonl"
    f.write_text('{"headline": "A", "short_description": "one"}\nnot json\n[1, 2]\n'
                 '{"headline": "", "short_description": "no headline"}\n'
                 '{"headline": "B", "short_description": "two"}\n{"headline": "C", "short_description": "three"}\n')
    assert [r["headline"] for r in peers.read_articles(str(f), 2)] == ["A", "B"]
    assert [r["headline"] for r in peers.read_articles(str(f), 10)] == ["A", "B", "C"]


def test_kl_divergence_figures_follow_udacis_definitions():
    """kl_llamacpp.Divergence: KL(ref || model) in nats, top-1 agreement,
    mean |dp| of the next token, nearest-rank p99 — checked on hand-made
    distributions (udaci's own figures are checked in tests/unit)."""
    import math

    import numpy as np

    import kl_llamacpp

    d = kl_llamacpp.Divergence()
    ref = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]))
    same = kl_llamacpp.Divergence()
    same.add(ref + 3.0, ref - 1.0, [0, 2])  # logits shifted: the same distributions
    r = same.result()
    assert r["mean_kld"] < 1e-12 and r["top1_agreement"] == 1.0 and r["mean_abs_dp"] < 1e-12
    model = np.log(np.array([[0.25, 0.5, 0.25], [0.1, 0.2, 0.7]]))
    d.add(ref, model, [1, 2])
    r = d.result()
    kl0 = 0.5 * math.log(2.0) + 0.25 * math.log(0.5)  # sum p_ref log(p_ref / p)
    assert r["positions"] == 2
    assert r["mean_kld"] == pytest.approx(kl0 / 2)
    assert r["p99_kld"] == pytest.approx(kl0) and r["max_kld"] == pytest.approx(kl0)
    assert r["top1_agreement"] == 0.5  # argmax 0 vs 1, then 2 vs 2
    assert r["mean_abs_dp"] == pytest.approx(0.25 / 2)
    assert r["perplexity"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.7)) / 2))
    assert r["reference_perplexity"] == pytest.approx(math.exp(-(math.log(0.25) + math.log(0.7)) / 2))
    with pytest.raises(ValueError):
        kl_llamacpp.Divergence().result()
