"""udaci::Error statuses arrive as the matching udaci exception classes, with
the C++ message."""

from __future__ import annotations

import pytest

import udaci


def test_hierarchy():
    assert issubclass(udaci.InvalidArgument, udaci.Error) and issubclass(udaci.InvalidArgument, ValueError)
    assert issubclass(udaci.NotFound, udaci.Error) and issubclass(udaci.NotFound, FileNotFoundError)
    assert issubclass(udaci.OutOfMemory, MemoryError)
    for cls in (udaci.BadModelFile, udaci.Unsupported, udaci.Cancelled, udaci.InternalError):
        assert issubclass(cls, udaci.Error)
    assert udaci.NotFound.status == "not_found" and udaci.NotFound.code == 2


def test_missing_model_path_is_not_found(tmp_path):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(udaci.NotFound, match="does not exist") as info:
        udaci.Engine(model=str(missing))
    assert str(missing) in str(info.value)
    assert info.value.status == "not_found"
    assert isinstance(info.value, FileNotFoundError)


def test_corrupt_model_file_is_bad_model_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(udaci.BadModelFile) as info:
        udaci.Engine(model=str(bad))
    assert str(bad) in str(info.value)
    assert info.value.status == "bad_model_file"


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(dtype="fp8"), "unknown dtype 'fp8' \\(expected fp32, bf16 or fp16\\)"),
    (dict(model=""), "model path is empty"),
    (dict(threads=-1), r"/threads must be in \[0, 1024\]"),
])
def test_bad_engine_arguments_are_invalid_argument(kwargs, pattern):
    with pytest.raises(udaci.InvalidArgument, match=pattern) as info:
        udaci.Engine(**kwargs)
    assert info.value.status == "invalid_argument"
    assert isinstance(info.value, ValueError)


def test_bad_cache_and_instruction_are_invalid_argument(engine):
    with pytest.raises(udaci.InvalidArgument, match="cache strategy 'paged-ish'"):
        udaci.Engine(cache="paged-ish")
    with pytest.raises(udaci.InvalidArgument, match="summary"):
        udaci.Engine(instruction="no placeholder here")


@pytest.mark.parametrize("summary, pattern", [
    ("", "empty"),
    ("   \n\t ", "empty"),
    (b"bad \xff utf8", "UTF-8"),
    ("x" * 20000, "bytes"),
])
def test_bad_summaries_are_invalid_argument(engine, summary, pattern):
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        engine.headline(summary)
    with pytest.raises(udaci.InvalidArgument, match=pattern):
        engine.generate(["A fine summary of the news.", summary])


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(min_p=-0.1), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
])
def test_bad_sampling_options_are_invalid_argument(engine, summary, kwargs, name):
    with pytest.raises(udaci.InvalidArgument, match=name):
        engine.headline(summary, **kwargs)


def test_non_callable_callback_is_invalid_argument(engine, summary):
    with pytest.raises(udaci.InvalidArgument, match="on_text must be callable"):
        engine.headline(summary, on_text=42)


def test_wrong_python_types_are_type_errors(engine):
    with pytest.raises(TypeError):
        engine.generate("a single string is not a list of summaries")
    with pytest.raises(TypeError):
        engine.headline(None)
    with pytest.raises(TypeError):
        engine.headline("positional options are not accepted", 8)


def test_out_of_range_token_id_is_invalid_argument(engine):
    with pytest.raises(udaci.InvalidArgument, match=str(engine.vocab_size)):
        engine.detokenize([1, engine.vocab_size])


def test_not_found_without_any_default_model(monkeypatch, tmp_path):
    # UDACI_MODEL wins over the package lookup, so pointing it at a missing
    # file shows the whole path: default_model_path -> Engine -> NotFound.
    monkeypatch.setenv("UDACI_MODEL", str(tmp_path / "nowhere.gguf"))
    assert udaci.default_model_path() == str(tmp_path / "nowhere.gguf")
    with pytest.raises(udaci.NotFound, match="nowhere.gguf"):
        udaci.Engine()


def test_status_names_are_spelled_as_in_c():
    # udaci.Error.status is what C's udaci_status_name() and the CLI print (issue #21).
    from udaci import _udaci
    classes = [udaci.InvalidArgument, udaci.NotFound, udaci.BadModelFile, udaci.Unsupported, udaci.OutOfMemory,
               udaci.BufferTooSmall, udaci.Cancelled, udaci.CudaError, udaci.DistributedError, udaci.InternalError]
    for cls in classes:
        assert _udaci.status_name(cls.code) == cls.status, cls
