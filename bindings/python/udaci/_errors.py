"""The exceptions udaci raises.

Every failure inside the library is a ``udaci::Error`` carrying a status whose
values mirror ``udaci_status`` of the C ABI (include/udaci/udaci.h). The
extension module turns each into an instance of the class below that matches
its status, so callers can catch either the udaci class or the built-in one it
also derives from (``udaci.NotFound`` is a ``FileNotFoundError``,
``udaci.InvalidArgument`` a ``ValueError``, ``udaci.OutOfMemory`` a
``MemoryError``).
"""

from __future__ import annotations


class Error(Exception):
    """Base of every udaci error.

    ``status`` is the status name (``"invalid_argument"``, ``"not_found"``,
    ...) and ``code`` its integer value in the C ABI's ``udaci_status``.
    """

    status = "internal"
    code = 10

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(message, *args)

    def __str__(self) -> str:
        # OSError (a base of NotFound) would otherwise format its args itself.
        return str(self.args[0]) if self.args else ""


class InvalidArgument(Error, ValueError):
    status, code = "invalid_argument", 1


class NotFound(Error, FileNotFoundError):
    status, code = "not_found", 2


class BadModelFile(Error):
    status, code = "bad_model_file", 3


class Unsupported(Error):
    status, code = "unsupported", 4


class OutOfMemory(Error, MemoryError):
    status, code = "out_of_memory", 5


class BufferTooSmall(Error):
    status, code = "buffer_too_small", 6


class Cancelled(Error):
    status, code = "cancelled", 7


class CudaError(Error):
    status, code = "cuda", 8


class DistributedError(Error):
    status, code = "distributed", 9


class InternalError(Error):
    status, code = "internal", 10


_BY_CODE = {
    cls.code: cls
    for cls in (InvalidArgument, NotFound, BadModelFile, Unsupported, OutOfMemory,
                BufferTooSmall, Cancelled, CudaError, DistributedError, InternalError)
}


def _from_status(code: int, message: str) -> Error:
    """The exception for a udaci::Error (called by the extension module)."""
    return _BY_CODE.get(code, InternalError)(message)
