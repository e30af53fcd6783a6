"""udaci.EngineConfig and udaci.HeadlineEngine(config); udaci.Engine stays the
keyword-constructed alias."""

from __future__ import annotations

import dataclasses

import pytest

import udaci

from conftest import needs_model


def test_engine_is_headline_engine():
    assert udaci.Engine is udaci.HeadlineEngine
    assert udaci.HeadlineEngine.__module__ == "udaci"


def test_config_defaults_mirror_the_cpp_engine_config():
    c = udaci.EngineConfig()
    assert dataclasses.is_dataclass(c)
    assert (c.model, c.dtype, c.cache, c.threads, c.tokenizer) == (None, "fp32", "contiguous", None, None)
    assert c.use_chat_template is True
    assert (c.decoder, c.quantizer, c.pruner, c.parallel) == ("sampling", "none", "none", "single-device")
    assert c.quantizer_options == {} and c.quantizer_options is not udaci.EngineConfig().quantizer_options
    assert c.replace(dtype="bf16").dtype == "bf16" and c.dtype == "fp32"


@needs_model
def test_headline_engine_from_config_binds_the_named_strategies():
    config = udaci.EngineConfig(decoder="greedy", cache="none")
    e = udaci.HeadlineEngine(config)
    assert e.strategies == {"cache": "none", "quantizer": "none", "pruner": "none", "decoder": "greedy",
                            "parallel": "single-device"}
    assert e.config == config and e.config is not config
    assert e.cache == "none"


@needs_model
def test_config_and_keywords_give_the_same_headlines(engine, summary):
    e = udaci.HeadlineEngine(udaci.EngineConfig(decoder="greedy"))
    assert e.strategies["decoder"] == "greedy"
    assert engine.strategies["decoder"] == "sampling"
    # Greedy decoding is what temperature 0 gives under the sampling decoder.
    assert e.generate([summary], max_new_tokens=12)[0].new_ids == \
        engine.generate([summary], max_new_tokens=12)[0].new_ids


@needs_model
def test_positional_model_path():
    e = udaci.HeadlineEngine(udaci.default_model_path())
    assert e.model_path == udaci.default_model_path()
    assert e.config.model == udaci.default_model_path()


@pytest.mark.parametrize("config, pattern", [
    (udaci.EngineConfig(decoder="nucleus-beam"), "nucleus-beam"),
    (udaci.EngineConfig(decoder="beam", decoder_options={"beams": 4}), "beams"),
    (udaci.EngineConfig(scheduler_options={"max_sequences": 0}), "max_sequences"),
    (udaci.EngineConfig(quantizer="int3"), "int3"),
    (udaci.EngineConfig(pruner="magic"), "magic"),
    (udaci.EngineConfig(parallel="mesh"), "mesh"),
    (udaci.EngineConfig(quantizer_options={"group": 64}), "group"),
    (udaci.EngineConfig(cache_options={"pages": 4}), "pages"),
])
def test_unknown_strategies_and_options_are_invalid_argument(config, pattern):
    # Checked before (or regardless of) the model: these fail even without it,
    # unless the model is missing, which is NotFound.
    if udaci.default_model_path is None:  # pragma: no cover
        pytest.skip("no lookup")
    try:
        udaci.default_model_path()
    except udaci.NotFound:
        pytest.skip("default model not installed")
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        udaci.HeadlineEngine(config)


def test_bad_constructor_arguments_are_type_errors():
    with pytest.raises(TypeError, match="not both"):
        udaci.HeadlineEngine(udaci.EngineConfig(), dtype="bf16")
    with pytest.raises(TypeError, match="EngineConfig or a model path"):
        udaci.HeadlineEngine(42)
    with pytest.raises(TypeError, match="colour"):
        udaci.HeadlineEngine(colour="red")
    with pytest.raises(TypeError, match="both positionally and as a keyword"):
        udaci.HeadlineEngine("a.gguf", model="b.gguf")
    with pytest.raises(TypeError, match="quantizer_options"):
        udaci.HeadlineEngine(udaci.EngineConfig(quantizer_options=["group=64"]))
    with pytest.raises(TypeError, match="option values"):
        udaci.HeadlineEngine(udaci.EngineConfig(quantizer_options={"group": [64]}))
