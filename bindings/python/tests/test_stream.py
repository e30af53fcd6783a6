"""HeadlineEngine.stream(): pieces as they are generated, the final Result,
cancellation by close()/break, errors, and concurrent streams."""

from __future__ import annotations

import gc
import threading

import pytest

import udaci


def test_pieces_join_to_the_raw_text_and_match_generate(engine, summary):
    expected = engine.generate([summary], max_new_tokens=16)[0]
    stream = engine.stream(summary, max_new_tokens=16)
    assert stream.result is None or stream.result.new_ids == expected.new_ids  # may finish early
    pieces = list(stream)
    assert len(pieces) >= 2 and all(isinstance(p, str) and p for p in pieces)
    result = stream.result
    assert result is not None
    assert "".join(pieces) == result.raw_text
    assert result.new_ids == expected.new_ids and result.headline == expected.headline
    assert result.finish_reason == expected.finish_reason
    assert list(stream) == []  # exhausted stays exhausted


def test_close_cancels_and_the_engine_stays_usable(engine, summary):
    expected = engine.generate([summary], max_new_tokens=24, stop_at_newline=False)[0]
    assert len(expected.new_ids) > 4
    with engine.stream(summary, max_new_tokens=24, stop_at_newline=False) as stream:
        first = next(stream)
        assert first
    assert stream.cancelled
    r = stream.result
    assert r is not None and r.finish_reason == "cancelled"
    assert len(r.new_ids) < len(expected.new_ids)
    assert r.new_ids == expected.new_ids[:len(r.new_ids)]
    assert list(stream) == []
    # The engine is free and deterministic after the cancelled call.
    assert engine.generate([summary], max_new_tokens=24, stop_at_newline=False)[0].new_ids == expected.new_ids


def test_break_out_of_a_for_loop_cancels(engine, summary):
    done = []
    stream = engine.stream(summary, max_new_tokens=32, stop_at_newline=False)
    state = stream._state  # shared with the worker; outlives the Stream
    for piece in stream:
        done.append(piece)
        break
    del stream
    gc.collect()  # CPython already collected it at the `del`
    assert len(done) == 1
    assert state.cancel.is_set() and state.done.is_set()
    assert state.result.finish_reason == "cancelled" and len(state.result.new_ids) < 32
    # The next call does not wait behind a still-running generation: the
    # abandoned stream was cancelled and joined when it was collected.
    assert engine.headline(summary, max_new_tokens=8)


def test_errors_propagate_from_the_iteration(engine):
    stream = engine.stream("   ")
    with pytest.raises(udaci.InvalidArgument, match="empty"):
        next(stream)
    assert stream.result is None
    with pytest.raises(udaci.InvalidArgument, match="top_p"):
        list(engine.stream("x", top_p=2.0))
    with pytest.raises(TypeError):
        list(engine.stream("x", bogus=1))
    with pytest.raises(TypeError, match="on_text"):
        engine.stream("x", on_text=print)


def test_two_concurrent_streams(engine, summaries):
    a, b = summaries[0], summaries[2]
    expected = [engine.generate([s], max_new_tokens=12)[0] for s in (a, b)]
    assert expected[0].raw_text != expected[1].raw_text
    got: list = [None, None]
    errors: list = []
    start = threading.Barrier(2)

    def consume(i, text):
        try:
            start.wait()
            s = engine.stream(text, max_new_tokens=12)
            got[i] = ("".join(s), s.result)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=consume, args=(i, t)) for i, t in enumerate((a, b))]
    for t in threads:
        t.start()
    # And a third, interleaved on this thread.
    main = engine.stream(a, max_new_tokens=12)
    main_text = "".join(main)
    for t in threads:
        t.join()
    assert not errors
    for (text, result), exp in zip(got, expected):
        assert text == exp.raw_text == result.raw_text
        assert result.new_ids == exp.new_ids
    assert main_text == expected[0].raw_text


def test_no_tokens_is_an_empty_stream_with_a_result(engine, summary):
    stream = engine.stream(summary, max_new_tokens=0)
    assert list(stream) == []
    assert stream.result is not None and stream.result.new_ids == [] and stream.result.raw_text == ""
