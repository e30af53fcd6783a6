"""EngineConfig, HeadlineEngine and streaming: the Python layer over the
extension's ``Engine``.

``HeadlineEngine`` *is* the extension class with two additions: it also takes
an ``EngineConfig`` (the Python mirror of the C++ ``udaci::EngineConfig``) and
it has ``stream()``, an iterator over the text pieces of one headline.
``udaci.Engine`` is the same class, so ``udaci.Engine(model=..., dtype=...)``
keeps working.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

from . import _errors as udaci_errors
from . import _udaci

__all__ = ["EngineConfig", "HeadlineEngine", "Stream", "techniques"]


def techniques() -> "list[Dict[str, Any]]":
    """The technique catalogue: every name a recipe may use, as dicts with
    ``name``, ``category``, ``slot``, ``strategy``, ``preset``, ``description``,
    ``issue``, ``multi_process`` and ``available`` (whether this build has it)."""
    return json.loads(_udaci.techniques_json())

_STRATEGY_KINDS = ("cache", "quantizer", "pruner", "decoder", "parallel")
_SCHEMA = "udaci-config/1"


def _option_value(value: object) -> str:
    # The C++ StrategyOptions hold strings and parse them per key; booleans
    # are the 0/1 its getters read.
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"strategy option values must be str, int, float or bool, got {type(value).__name__}")


def _options(kind: str, options: Optional[Mapping[str, object]]) -> Dict[str, str]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{kind}_options must be a mapping of option names to values, "
                        f"got {type(options).__name__}")
    return {str(k): _option_value(v) for k, v in options.items()}


def _path(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


@dataclass
class EngineConfig:
    """What a ``HeadlineEngine`` is built from: the config file of every udaci
    front end (docs/config.md) as a Python object.

    model: a .gguf file or a Hugging Face model folder; None: ``default_model_path()``.
    recipe: the techniques to run, joined by ``+`` with options in braces, e.g.
    ``"gguf-native+paged-prefix"`` or ``"int4{group=64}+spec-lookup"`` (the same
    words as the C ABI, the CLI's ``--recipe`` and ``udaci bench``; ``udaci.techniques()``
    lists them). None: the default, ``kv-cache+as-stored+no-prune+sampling+single-device``
    (a GGUF's blocks run as stored; ``no-quant`` is the fp32 reference).
    dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``. device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads: threads of udaci's CPU kernels, for the whole process; None leaves the setting alone.
    system / instruction / completion: the chat prompt's texts and the completion prompt;
    None: udaci's defaults (``instruction`` and ``completion`` must contain ``{summary}``;
    ``system=""`` sends no system message).
    use_chat_template: False forces the completion prompt.
    tokenizer: a tokenizer.json to use instead of the model's own.
    cache, quantizer, pruner, decoder, parallel: a strategy by its registry name
    (``"paged"``, ``"int4"``, ``"magnitude"``, ``"beam"``, ...), overriding the recipe's;
    None keeps the recipe's. *_options: options set over that slot's
    (``{"group": 64}``); unknown keys are refused (``udaci.InvalidArgument``).
    scheduler_options: continuous batching (``max_sequences``, ``max_cache_bytes``,
    ``prefill_chunk``, ``batch_invariant``); see docs/user_guide.md, section 5.
    max_prompt_tokens: a summary whose prompt is longer is refused (0: no cap).
    max_memory_bytes: cap on weights + K/V cache in bytes (0: none); a model that
    does not fit raises ``udaci.OutOfMemory`` at load (docs/SECURITY.md).
    max_summary_bytes: longest summary accepted (None: 16 KiB).
    repetition_stop: the repetition stop of requests that leave it unset (``repetition_stop=None``,
    the default): stop a headline once its last N tokens repeat a run it already produced; 0 is
    off (the config file's ``"generation": {"repetition_stop"}``; ``udaci tune`` may set it).

    ``EngineConfig.from_file(path)`` / ``to_file(path)`` read and write the config
    file the CLI (``--config``), the C ABI (``udaci_engine_create_from_file``) and
    ``udaci serve`` load; ``to_json()`` is its canonical text.
    """

    model: Optional[Union[str, "os.PathLike[str]"]] = None
    recipe: Optional[str] = None
    dtype: str = "fp32"
    device: str = "cpu"
    threads: Optional[int] = None
    system: Optional[str] = None
    instruction: Optional[str] = None
    completion: Optional[str] = None
    use_chat_template: bool = True
    tokenizer: Optional[Union[str, "os.PathLike[str]"]] = None
    cache: Optional[str] = None
    quantizer: Optional[str] = None
    pruner: Optional[str] = None
    decoder: Optional[str] = None
    parallel: Optional[str] = None
    cache_options: Dict[str, Any] = field(default_factory=dict)
    quantizer_options: Dict[str, Any] = field(default_factory=dict)
    pruner_options: Dict[str, Any] = field(default_factory=dict)
    decoder_options: Dict[str, Any] = field(default_factory=dict)
    parallel_options: Dict[str, Any] = field(default_factory=dict)
    scheduler_options: Dict[str, Any] = field(default_factory=dict)
    max_prompt_tokens: int = 2048
    max_memory_bytes: int = 0
    max_summary_bytes: Optional[int] = None
    repetition_stop: int = 8

    def replace(self, **changes: Any) -> "EngineConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    # The config file's JSON (only what is set) and the per-slot overrides by
    # strategy name: the C++ engine's one builder parses and checks both.
    def _config_json(self) -> str:
        prompt: Dict[str, Any] = {"use_chat_template": self.use_chat_template}
        for key in ("system", "instruction", "completion", "max_summary_bytes"):
            if getattr(self, key) is not None:
                prompt[key] = getattr(self, key)
        d: Dict[str, Any] = {
            "schema": _SCHEMA,
            "dtype": self.dtype,
            "device": self.device,
            "threads": 0 if self.threads is None else self.threads,
            "prompt": prompt,
            "limits": {"max_prompt_tokens": self.max_prompt_tokens, "max_memory_bytes": self.max_memory_bytes},
            "generation": {"repetition_stop": self.repetition_stop},
        }
        for key in ("model", "tokenizer"):
            value = _path(getattr(self, key))
            if value is not None:
                if value == "":
                    raise udaci_errors.InvalidArgument(
                        f"{key} path is empty (pass None for the " + ("default model)" if key == "model"
                                                                      else "model's own)"))
                d[key] = value
        if self.recipe is not None:
            d["recipe"] = self.recipe
        try:
            return json.dumps(d)
        except (TypeError, ValueError) as e:
            raise TypeError(f"EngineConfig: {e}") from None

    def _overrides(self) -> Dict[str, Tuple[Optional[str], Dict[str, str]]]:
        out: Dict[str, Tuple[Optional[str], Dict[str, str]]] = {}
        for kind in _STRATEGY_KINDS:
            name = getattr(self, kind)
            if name is not None and not isinstance(name, str):
                raise TypeError(f"{kind} must be a strategy name (str) or None, got {type(name).__name__}")
            options = _options(kind, getattr(self, f"{kind}_options"))
            if name is not None or options:
                out[kind] = (name, options)
        scheduler = _options("scheduler", self.scheduler_options)
        if scheduler:
            out["scheduler"] = (None, scheduler)
        return out

    def to_json(self) -> str:
        """The canonical config file text (validated; every setting and the recipe
        spelled out). Raises udaci.InvalidArgument naming the key or recipe part."""
        return _udaci.normalize_config(self._config_json(), self._overrides())

    def to_file(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write ``to_json()`` to ``path``."""
        text = self.to_json()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")

    @classmethod
    def from_json(cls, text: str) -> "EngineConfig":
        """An EngineConfig from config file text (validated by the engine's own reader:
        unknown keys and bad values raise udaci.InvalidArgument with the key's JSON path)."""
        d = json.loads(_udaci.normalize_config(text, {}))
        prompt, limits = d["prompt"], d["limits"]
        return cls(model=d["model"] or None, recipe=d["recipe"], dtype=d["dtype"], device=d["device"],
                   threads=d["threads"] or None, system=prompt["system"], instruction=prompt["instruction"],
                   completion=prompt["completion"], use_chat_template=prompt["use_chat_template"],
                   tokenizer=d["tokenizer"] or None, scheduler_options=dict(d["scheduler"]),
                   max_prompt_tokens=limits["max_prompt_tokens"], max_memory_bytes=limits["max_memory_bytes"],
                   max_summary_bytes=prompt["max_summary_bytes"],
                   repetition_stop=d["generation"]["repetition_stop"])

    @classmethod
    def from_file(cls, path: Union[str, "os.PathLike[str]"]) -> "EngineConfig":
        """Read a udaci config file (docs/config.md). Raises udaci.NotFound when it cannot
        be read and udaci.InvalidArgument when it is not a valid config."""
        return cls.from_json(_udaci.load_config(os.fspath(path)))


class HeadlineEngine(_udaci.Engine):
    """A loaded model that writes headlines.

    ``HeadlineEngine(config)`` takes an ``EngineConfig``; ``HeadlineEngine(**fields)``
    (and the alias ``udaci.Engine(**fields)``) takes its fields as keywords, and a
    single positional string is the model path. Safe to share between threads:
    calls are serialised inside the engine, and loading and generating release
    the GIL.
    """

    def __init__(self, config: Union[EngineConfig, str, "os.PathLike[str]", None] = None,
                 /, **kwargs: Any) -> None:
        if isinstance(config, EngineConfig):
            if kwargs:
                raise TypeError("pass either an EngineConfig or keyword arguments, not both "
                                f"(got {sorted(kwargs)}); use config.replace(...) to change fields")
        elif config is None or isinstance(config, (str, os.PathLike)):
            if config is not None:
                if "model" in kwargs:
                    raise TypeError("model given both positionally and as a keyword")
                kwargs["model"] = config
            try:
                config = EngineConfig(**kwargs)
            except TypeError as e:
                raise TypeError(f"HeadlineEngine: {e}") from None
        else:
            raise TypeError("HeadlineEngine() takes an EngineConfig or a model path, "
                            f"got {type(config).__name__}")
        super().__init__(config._config_json(), config._overrides())
        self._config = config

    @property
    def config(self) -> EngineConfig:
        """The EngineConfig this engine was made from (a copy; changing it changes nothing)."""
        return dataclasses.replace(self._config)

    @property
    def effective_config(self) -> EngineConfig:
        """What this engine runs: the model path resolved and the recipe canonical, the
        as-stored quantizer resolved. ``HeadlineEngine(engine.effective_config)`` builds
        the same engine; ``effective_config.to_file(path)`` saves it."""
        return EngineConfig.from_json(self.config_json)

    def stream(self, summary: str, **options: Any) -> "Stream":
        """Iterate over the text of one headline as it is generated.

        ``options`` are ``headline()``'s keyword options (``max_new_tokens``,
        ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``,
        ``seed``, ``stop_at_newline``, ``repetition_stop``). Generation starts at once on a worker
        thread (with the GIL released); the iterator yields each new piece of
        text (complete UTF-8, special tokens skipped), so ``"".join(pieces)`` is
        the result's ``raw_text``. After the last piece ``stream.result`` is
        the ``Result``. An error (e.g. ``udaci.InvalidArgument`` for an empty
        summary) is raised by the iteration. ``close()`` -- also called by
        ``with``, and when an unfinished stream is garbage-collected, e.g.
        after ``break`` -- cancels the generation and waits for it to stop, so
        the engine is free again.

            with engine.stream(summary, max_new_tokens=24) as s:
                for piece in s:
                    print(piece, end="", flush=True)
            print(s.result.headline)
        """
        if "on_text" in options:
            raise TypeError("stream() yields the text itself; on_text is not an option here")
        return Stream(self, summary, options)


class _StreamState:
    # Shared by a Stream and its worker thread. The worker holds only this, not
    # the Stream, so an abandoned Stream is collected (and cancels) promptly.
    __slots__ = ("pieces", "cancel", "result", "error", "done")

    def __init__(self) -> None:
        self.pieces: "queue.SimpleQueue[object]" = queue.SimpleQueue()
        self.cancel = threading.Event()
        self.result: Optional[_udaci.Result] = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()


_END = object()


def _run_stream(engine: HeadlineEngine, summary: str, options: Dict[str, Any], st: _StreamState) -> None:
    def on_text(index: int, piece: str) -> bool:
        if st.cancel.is_set():
            return False  # cancels the summary: its result is 'cancelled'
        st.pieces.put(piece)
        return True

    try:
        st.result = engine.generate([summary], on_text=on_text, **options)[0]
    except BaseException as e:  # handed to the consumer, re-raised by __next__
        st.error = e
    finally:
        st.done.set()
        st.pieces.put(_END)


class Stream(Iterator[str]):
    """The iterator ``HeadlineEngine.stream()`` returns; see there."""

    def __init__(self, engine: HeadlineEngine, summary: str, options: Dict[str, Any]) -> None:
        self._state = _StreamState()
        self._finished = False
        self._thread = threading.Thread(target=_run_stream, args=(engine, summary, dict(options), self._state),
                                        name="udaci-stream", daemon=True)
        self._thread.start()

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        item = self._state.pieces.get()
        if item is _END:
            self._finish()
            if self._state.error is not None:
                error, self._state.error = self._state.error, None
                raise error
            raise StopIteration
        return item  # type: ignore[return-value]

    def _finish(self) -> None:
        self._finished = True
        self._thread.join()

    @property
    def result(self) -> Optional[_udaci.Result]:
        """The Result once generation has ended (after the last piece or close());
        None before, and when it failed. A closed stream's result has
        ``finish_reason == 'cancelled'`` unless it had already finished."""
        return self._state.result if self._state.done.is_set() else None

    @property
    def cancelled(self) -> bool:
        """True once close() asked the generation to stop."""
        return self._state.cancel.is_set()

    def close(self) -> None:
        """Cancel the generation (if still running) and wait until it has stopped.
        Pieces not yet read are dropped; an error it raised is not re-raised."""
        if self._finished:
            return
        self._state.cancel.set()
        self._finish()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream abandoned mid-way (break out of a for loop) must not keep
        # generating: cancel it. Joining is safe here (the worker never needs
        # this object) and keeps the engine's state simple for the next call.
        try:
            self.close()
        except Exception:
            pass
