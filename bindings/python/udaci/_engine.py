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
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Union

from . import _udaci

__all__ = ["EngineConfig", "HeadlineEngine", "Stream"]

_STRATEGY_KINDS = ("cache", "quantizer", "pruner", "decoder", "parallel", "scheduler")


def _option_value(value: object) -> str:
    # The C++ StrategyOptions hold strings and parse them per key; booleans
    # are spelled the way its getters read them.
    if isinstance(value, bool):
        return "true" if value else "false"
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


@dataclass
class EngineConfig:
    """What a ``HeadlineEngine`` is built from (the C++ ``udaci::EngineConfig``).

    model: a .gguf file or a Hugging Face model folder; None: ``default_model_path()``.
    dtype: ``"fp32"`` or ``"bf16"``.
    cache: KV cache strategy, ``"contiguous"`` or ``"none"`` (recompute every step).
    threads: ATen intra-op threads for the whole process; None leaves the setting alone.
    system / instruction: the chat prompt's texts; None: udaci's defaults
    (``instruction`` must contain ``{summary}``; ``system=""`` sends no system message).
    use_chat_template: False forces the plain completion prompt.
    tokenizer: a tokenizer.json to use instead of the model's own.
    decoder: ``"sampling"`` (per-call sampling options) or ``"greedy"``.
    quantizer, pruner, parallel: strategy names from udaci's registries
    (``"none"``, ``"none"``, ``"single-device"`` by default).
    *_options: each strategy's options, ``{"key": value}``; values are passed
    as strings and unknown keys are refused by the strategy (``udaci.InvalidArgument``).
    scheduler_options: continuous batching (``max_sequences``, ``max_cache_bytes``,
    ``prefill_chunk``, ``batch_invariant``); see docs/user_guide.md, section 5.
    max_prompt_tokens: a summary whose prompt is longer is refused (0: no cap).
    max_memory_bytes: cap on weights + K/V cache in bytes (0: none); a model that
    does not fit raises ``udaci.OutOfMemory`` at load (docs/SECURITY.md).
    """

    model: Optional[Union[str, "os.PathLike[str]"]] = None
    dtype: str = "fp32"
    cache: str = "contiguous"
    threads: Optional[int] = None
    system: Optional[str] = None
    instruction: Optional[str] = None
    use_chat_template: bool = True
    tokenizer: Optional[Union[str, "os.PathLike[str]"]] = None
    decoder: str = "sampling"
    quantizer: str = "none"
    pruner: str = "none"
    parallel: str = "single-device"
    cache_options: Dict[str, Any] = field(default_factory=dict)
    quantizer_options: Dict[str, Any] = field(default_factory=dict)
    pruner_options: Dict[str, Any] = field(default_factory=dict)
    decoder_options: Dict[str, Any] = field(default_factory=dict)
    parallel_options: Dict[str, Any] = field(default_factory=dict)
    scheduler_options: Dict[str, Any] = field(default_factory=dict)
    max_prompt_tokens: int = 2048
    max_memory_bytes: int = 0

    def replace(self, **changes: Any) -> "EngineConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def _engine_kwargs(self) -> Dict[str, Any]:
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("model", "tokenizer"):
            if kw[key] is not None:
                kw[key] = os.fspath(kw[key])
        for kind in _STRATEGY_KINDS:
            kw[f"{kind}_options"] = _options(kind, kw[f"{kind}_options"])
        return kw


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
        super().__init__(**config._engine_kwargs())
        self._config = config

    @property
    def config(self) -> EngineConfig:
        """The EngineConfig this engine was made from (a copy; changing it changes nothing)."""
        return dataclasses.replace(self._config)

    def stream(self, summary: str, **options: Any) -> "Stream":
        """Iterate over the text of one headline as it is generated.

        ``options`` are ``headline()``'s keyword options (``max_new_tokens``,
        ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``,
        ``seed``, ``stop_at_newline``). Generation starts at once on a worker
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
