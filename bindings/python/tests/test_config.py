"""udaci.EngineConfig and udaci.HeadlineEngine(config); udaci.Engine stays the
keyword-constructed alias."""

from __future__ import annotations

import dataclasses
import json

import pytest

import udaci

from conftest import needs_model


def test_engine_is_headline_engine():
    assert udaci.Engine is udaci.HeadlineEngine
    assert udaci.HeadlineEngine.__module__ == "udaci"


def test_config_defaults_mirror_the_cpp_engine_config():
    c = udaci.EngineConfig()
    assert dataclasses.is_dataclass(c)
    assert (c.model, c.dtype, c.recipe, c.threads, c.tokenizer) == (None, "fp32", None, None, None)
    assert c.use_chat_template is True
    # No slot is overridden: the recipe (here the default one) decides.
    assert (c.cache, c.decoder, c.quantizer, c.pruner, c.parallel) == (None, None, None, None, None)
    assert json.loads(c.to_json())["recipe"] == "kv-cache+as-stored+no-prune+sampling+single-device"
    assert c.quantizer_options == {} and c.quantizer_options is not udaci.EngineConfig().quantizer_options
    assert c.replace(dtype="bf16").dtype == "bf16" and c.dtype == "fp32"
    # The repetition stop a request without one gets: the C++ default, 8 tokens.
    assert c.repetition_stop == 8 and json.loads(c.to_json())["generation"] == {"repetition_stop": 8}


@needs_model
def test_headline_engine_from_config_binds_the_named_strategies():
    config = udaci.EngineConfig(decoder="greedy", cache="none")
    e = udaci.HeadlineEngine(config)
    # The default model is a GGUF: its blocks run as stored (recipe as-stored).
    assert e.strategies == {"cache": "none", "quantizer": "gguf-native", "pruner": "none", "decoder": "greedy",
                            "parallel": "single-device"}
    assert e.recipe == "no-cache+gguf-native+no-prune+greedy{repetition_penalty=1}+single-device"
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


# --- Recipes and config files (issue #21): the same words and the same errors
# as the C ABI and the CLI, all raised before any model file is opened.

NO_MODEL = "/nonexistent/udaci-model.gguf"  # opening it would raise NotFound


def test_techniques_list_the_catalogue():
    names = [t["name"] for t in udaci.techniques()]
    for n in ("baseline", "kv-cache", "paged-prefix", "int4", "gguf-native", "prune-30", "spec-lookup",
              "tp-2", "as-stored", "no-quant"):
        assert n in names
    tp = next(t for t in udaci.techniques() if t["name"] == "tp-2")
    assert tp["multi_process"] and tp["slot"] == "parallel plan"


@pytest.mark.parametrize("recipe, pattern", [
    ("gguf-native+warp-drive", r"unknown technique 'warp-drive' \(known: baseline, kv-cache"),
    ("int8+int4", "'int8' and 'int4' both choose the quantizer"),
    ("int4{block=16}", r"part 'int4\{block=16\}': quantizer 'int4': unknown option \"block\" \(known: embed, group"),
    ("int4{group=abc}", "\"group\" must be an integer, got \"abc\""),
    ("int4{group=48}", "group must be 32, 64 or 128"),
    ("int4{group=32", "missing '}'"),
])
def test_bad_recipes_are_invalid_argument_before_loading(recipe, pattern):
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        udaci.HeadlineEngine(udaci.EngineConfig(model=NO_MODEL, recipe=recipe))
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        udaci.EngineConfig(recipe=recipe).to_json()


@pytest.mark.parametrize("text, pattern", [
    ('{"schema": "udaci-config/1", "prompt": {"sytem": "x"}}', "/prompt/sytem is not a known key"),
    ('{"schema": "udaci-config/1", "threads": "2"}', "/threads must be an integer, got string"),
    ('{"schema": "udaci-config/1", "recipe": "int8+int4"}', "/recipe: .*both choose the quantizer"),
    ('{"schema": "udaci-config/1", "recipe": "kv-cache{group=64}"}', r"unknown option \"group\" \(known: none\)"),
    ('{"schema": "udaci-config/1",', "not valid JSON"),
    ('{"model": "x"}', "/schema is missing"),
])
def test_bad_config_files_are_invalid_argument_naming_the_key(tmp_path, text, pattern):
    path = tmp_path / "bad.json"
    path.write_text(text.replace('"schema"', f'"model": "{NO_MODEL}", "schema"', 1) if '"model"' not in text
                    else text, encoding="utf-8")
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        udaci.EngineConfig.from_file(path)
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        udaci.EngineConfig.from_json(text)


def test_oversized_and_missing_config_files(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"schema": "udaci-config/1", "model": "' + "x" * (1 << 20) + '"}', encoding="utf-8")
    with pytest.raises(udaci.InvalidArgument, match="over the limit"):
        udaci.EngineConfig.from_file(big)
    with pytest.raises(udaci.NotFound):
        udaci.EngineConfig.from_file(tmp_path / "absent.json")


def test_config_files_round_trip(tmp_path):
    c = udaci.EngineConfig(model=NO_MODEL, recipe="int4{group=64}+paged-prefix{block=32}", threads=2,
                           system="", completion="Text: {summary}\nTitle:", scheduler_options={"max_sequences": 8},
                           max_prompt_tokens=512, dtype="fp16", repetition_stop=4)
    path = tmp_path / "deploy.json"
    c.to_file(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema"] == "udaci-config/1"
    assert doc["recipe"].startswith("paged-prefix{block=32,")
    assert "+int4{embed=int8,group=64,head=int8,scheme=affine}+" in doc["recipe"]
    assert doc["threads"] == 2 and doc["dtype"] == "fp16" and doc["scheduler"]["max_sequences"] == 8
    assert doc["generation"] == {"repetition_stop": 4}
    back = udaci.EngineConfig.from_file(path)
    assert back.to_json() == c.to_json()
    assert (back.model, back.system, back.completion, back.max_prompt_tokens) == (NO_MODEL, "", c.completion, 512)
    assert back.repetition_stop == 4
    # Keyword overrides by strategy name are set over the recipe's slot.
    o = udaci.EngineConfig(recipe="int4{group=64}", quantizer_options={"group": 128})
    assert "int4{embed=int8,group=128," in json.loads(o.to_json())["recipe"]


@needs_model
def test_effective_config_builds_the_same_engine(tmp_path, summary):
    e = udaci.HeadlineEngine(udaci.EngineConfig(recipe="paged-prefix+greedy"))
    assert e.recipe.startswith("paged-prefix{") and "+gguf-native+" in e.recipe
    path = tmp_path / "effective.json"
    e.effective_config.to_file(path)
    again = udaci.HeadlineEngine(udaci.EngineConfig.from_file(path))
    assert again.recipe == e.recipe
    assert again.config_json == e.config_json
    assert again.headline(summary) == e.headline(summary)


@needs_model
def test_a_config_udaci_tune_wrote_loads_unchanged(summary):
    # tests/fixtures/tune/tuned.json: what `udaci tune --scenario edge` chose (issue #26).
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "fixtures", "tune", "tuned.json")
    c = udaci.EngineConfig.from_file(path)
    e = udaci.HeadlineEngine(c)
    assert e.recipe.startswith("kv-cache+gguf-native+no-prune+greedy{repetition_penalty=1}+")
    assert json.loads(e.config_json)["scheduler"]["max_sequences"] == 1
    assert e.headline(summary).strip()
