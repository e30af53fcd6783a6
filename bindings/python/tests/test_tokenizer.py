"""Engine.tokenize / detokenize / prompt against the model's tokenizer."""

from __future__ import annotations

import pytest

TEXTS = [
    "Hello world",
    "  The Fed raised rates by 0.25% on Wednesday — again.",
    "Ünïcödé: 東京, emoji 🎉, tabs\tand\nnewlines",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(engine, text):
    ids = engine.tokenize(text)
    assert all(isinstance(i, int) and 0 <= i < engine.vocab_size for i in ids)
    assert engine.detokenize(ids) == text
    assert (len(ids) == 0) == (text == "")


def test_special_tokens(engine):
    marker = "<|im_start|>"
    (special,) = engine.tokenize(marker)
    assert engine.detokenize([special]) == marker
    assert engine.detokenize([special], skip_special=True) == ""
    plain = engine.tokenize(marker, parse_special=False)
    assert len(plain) > 1 and special not in plain
    assert engine.detokenize(plain) == marker


def test_cut_character_decodes_to_replacement(engine):
    ids = engine.tokenize("🎉")
    if len(ids) < 2:
        pytest.skip("this tokenizer has the emoji as one token")
    assert "\ufffd" in engine.detokenize(ids[:1])


def test_prompt_holds_the_trimmed_summary_and_tokenizes_to_prompt_ids(engine):
    summary = "  Scientists found a new frog species in Peru.  "
    p = engine.prompt(summary)
    assert "Scientists found a new frog species in Peru.<" in p
    assert p.endswith("assistant\n")
    assert engine.tokenize(p) == engine.prompt_ids(summary)
