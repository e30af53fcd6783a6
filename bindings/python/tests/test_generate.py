"""Engine.headline / Engine.generate: results, determinism, batching, streaming
and cancellation on the default model (SmolLM2-135M-Instruct Q4_1)."""

from __future__ import annotations

import re
import time

import pytest

import udaci


def test_version_is_the_project_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", udaci.__version__), udaci.__version__


def test_engine_describes_its_model(engine):
    assert engine.model_path == udaci.default_model_path()
    assert engine.model_format == "gguf"
    assert engine.vocab_size > 1000
    assert engine.dtype == "fp32" and engine.cache == "contiguous"
    assert engine.uses_chat_template
    assert "gguf" in repr(engine)


def test_default_headline_is_one_nonempty_line(engine, summary):
    text = engine.headline(summary)
    assert isinstance(text, str)
    assert text.strip() == text and text
    assert "\n" not in text and "\r" not in text


def test_result_fields(engine, summary):
    (r,) = engine.generate([summary], max_new_tokens=24)
    assert r.headline and "\n" not in r.headline
    assert r.finish_reason in ("stop", "eos", "length", "repetition")
    assert 0 < len(r.new_ids) <= 24
    assert r.prompt_ids == engine.prompt_ids(summary)
    assert engine.detokenize(r.new_ids, skip_special=True) == r.raw_text
    assert r.prefill_ms > 0 and r.latency_ms >= r.prefill_ms + r.decode_ms - 1e-3
    text = repr(r)
    assert text.startswith("Result(") and repr(r.headline) in text and r.finish_reason in text


def test_headline_equals_generate_headline(engine, summary):
    (r,) = engine.generate([summary], max_new_tokens=24)
    assert engine.headline(summary, max_new_tokens=24) == r.headline


def test_greedy_is_deterministic(engine, summary):
    a = engine.generate([summary], max_new_tokens=16)[0]
    b = engine.generate([summary], max_new_tokens=16)[0]
    assert a.new_ids == b.new_ids
    assert a.headline == b.headline


def test_seeded_sampling_is_reproducible(engine, summary):
    kw = dict(max_new_tokens=12, temperature=0.9, top_k=40, top_p=0.95, seed=1234, stop_at_newline=False)
    a = engine.generate([summary], **kw)[0]
    b = engine.generate([summary], **kw)[0]
    assert a.new_ids == b.new_ids


def test_max_new_tokens_bounds_the_output(engine, summary):
    (r,) = engine.generate([summary], max_new_tokens=1)
    assert len(r.new_ids) == 1
    assert r.finish_reason in ("length", "eos", "stop")
    assert engine.generate([summary], max_new_tokens=0)[0].new_ids == []


def test_batch_of_three_matches_singles(engine, summaries):
    three = summaries[:3]
    t0 = time.perf_counter()
    batch = engine.generate(three, max_new_tokens=20)
    wall_ms = (time.perf_counter() - t0) * 1000
    assert len(batch) == 3
    for s, b in zip(three, batch):
        (single,) = engine.generate([s], max_new_tokens=20)
        assert b.new_ids == single.new_ids
        assert b.headline == single.headline
        assert b.prompt_ids == single.prompt_ids
    # Each headline's latency runs from the call to its own end (the
    # scheduler lets a finished one leave the batch at once).
    for r in batch:
        assert 0 < r.latency_ms <= wall_ms + 1
        assert 0 <= r.queue_ms <= r.latency_ms
        assert r.drafted == 0 and r.accepted == 0  # greedy drafts nothing


def test_empty_batch_gives_no_results(engine):
    assert engine.generate([]) == []


def test_streamed_pieces_concatenate_to_raw_text(engine, summary):
    pieces = []
    text = engine.headline(summary, max_new_tokens=16, stop_at_newline=False, on_text=pieces.append)
    (ref,) = engine.generate([summary], max_new_tokens=16, stop_at_newline=False)
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == ref.raw_text
    assert text == ref.headline


def test_streaming_in_a_batch_keeps_pieces_apart(engine, summaries):
    two = summaries[:2]
    got: dict[int, list[str]] = {0: [], 1: []}

    def on_text(index, piece):
        got[index].append(piece)
        return True

    results = engine.generate(two, max_new_tokens=12, on_text=on_text)
    for i, r in enumerate(results):
        assert "".join(got[i]) == r.raw_text
        assert r.finish_reason != "cancelled"


def test_returning_false_cancels(engine, summary):
    full = engine.generate([summary], max_new_tokens=16, stop_at_newline=False)[0]
    seen = []

    def on_text(index, piece):
        seen.append(piece)
        return len(seen) < 2

    (cut,) = engine.generate([summary], max_new_tokens=16, stop_at_newline=False, on_text=on_text)
    assert cut.finish_reason == "cancelled"
    assert len(seen) == 2
    assert len(cut.new_ids) < len(full.new_ids)
    assert cut.new_ids == full.new_ids[: len(cut.new_ids)]
    assert "".join(seen) == cut.raw_text


def test_cancelling_one_summary_leaves_the_others(engine, summaries):
    two = summaries[:2]
    ref = engine.generate(two, max_new_tokens=12)
    results = engine.generate(two, max_new_tokens=12, on_text=lambda i, p: i != 1)
    assert results[1].finish_reason == "cancelled"
    assert results[0].new_ids == ref[0].new_ids
    assert results[0].finish_reason == ref[0].finish_reason


def test_returning_none_continues(engine, summary):
    ref = engine.generate([summary], max_new_tokens=12)[0]
    (r,) = engine.generate([summary], max_new_tokens=12, on_text=lambda i, p: None)
    assert r.new_ids == ref.new_ids and r.finish_reason == ref.finish_reason


class Boom(Exception):
    pass


def test_exception_in_callback_propagates_and_engine_stays_usable(engine, summaries):
    ref = engine.generate(summaries[:2], max_new_tokens=10)
    calls = []

    def on_text(index, piece):
        calls.append(index)
        if len(calls) == 3:
            raise Boom(f"stop at piece {len(calls)}")
        return True

    with pytest.raises(Boom, match="stop at piece 3"):
        engine.generate(summaries[:2], max_new_tokens=10, on_text=on_text)
    assert len(calls) == 3  # nothing more was called after the exception

    with pytest.raises(ZeroDivisionError):
        engine.headline(summaries[0], on_text=lambda piece: 1 / 0)

    # The aborted calls freed their cache slots: the same batch gives the same ids.
    again = engine.generate(summaries[:2], max_new_tokens=10)
    assert [r.new_ids for r in again] == [r.new_ids for r in ref]


def test_custom_prompt_options():
    from conftest import DEFAULT_MODEL, NO_MODEL_REASON

    if DEFAULT_MODEL is None:
        pytest.skip(NO_MODEL_REASON)
    e = udaci.Engine(system="", instruction="Headline, please: {summary}")
    p = e.prompt("Cats are great.")
    assert "Headline, please: Cats are great." in p
    assert "helpful assistant that writes" not in p

    plain = udaci.Engine(use_chat_template=False)
    assert not plain.uses_chat_template
    assert plain.prompt("  Cats are great. ") == "Article: Cats are great.\nHeadline:"
    assert plain.headline("Cats are great.", max_new_tokens=8) is not None

    bf16 = udaci.Engine(dtype="bf16", cache="none")
    assert bf16.dtype == "bf16" and bf16.cache == "none"
    assert bf16.headline("Cats are great.", max_new_tokens=8)


def test_repetition_stop_keeps_a_prefix_of_plain_greedy(engine, summaries):
    kw = dict(max_new_tokens=48, stop_at_newline=False)
    plain = engine.generate(summaries[:4], repetition_stop=0, **kw)
    cut = engine.generate(summaries[:4], **kw)  # repetition_stop=8 by default
    for p, c in zip(plain, cut):
        assert p.new_ids[:len(c.new_ids)] == c.new_ids
        if c.finish_reason == "repetition":
            assert len(c.new_ids) + 8 <= len(p.new_ids)  # the default repetition_stop
        else:
            assert c.new_ids == p.new_ids
    with pytest.raises(udaci.InvalidArgument, match="repetition_stop"):
        engine.generate(summaries[:1], repetition_stop=-1)


def test_repetition_stop_none_is_the_engines_config(engine, summaries):
    # The config's generation.repetition_stop is what a request without one gets.
    looping = ("Despite entering false information, their work wasn't redone fully and in some cases the "
               "census takers received bonuses, the Office of Inspector General reported.")
    batch = [looping] + summaries[:3]
    kw = dict(max_new_tokens=48, stop_at_newline=False)
    on = udaci.HeadlineEngine(udaci.EngineConfig(recipe="no-quant+greedy"))
    off = udaci.HeadlineEngine(udaci.EngineConfig(recipe="no-quant+greedy", repetition_stop=0))
    assert on.effective_config.repetition_stop == 8 and off.effective_config.repetition_stop == 0
    by_config = off.generate(batch, **kw)
    plain = on.generate(batch, repetition_stop=0, **kw)
    cut = on.generate(batch, repetition_stop=None, **kw)
    asked = off.generate(batch, repetition_stop=8, **kw)
    assert [r.new_ids for r in by_config] == [r.new_ids for r in plain]
    assert [r.new_ids for r in asked] == [r.new_ids for r in cut]
    assert cut[0].finish_reason == "repetition"  # so the equalities mean something
    assert all(r.finish_reason != "repetition" for r in by_config)
    with pytest.raises(udaci.InvalidArgument, match="repetition_stop"):
        udaci.EngineConfig(repetition_stop=65).to_json()
