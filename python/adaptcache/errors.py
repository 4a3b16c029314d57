"""Exceptions of the adaptcache client.

Every failure raises an :class:`AdaptCacheError` (or a subclass) carrying the status code
(gRPC / absl numbering, the daemon's own status when the daemon refused the call) and its
message. Daemon messages start with ``"adaptcached: "``; errors found locally by the
client (a wrong shape, a bad namespace) do not.

Subclasses follow the code, so ``except adaptcache.NotFound`` catches a miss.
``InvalidArgument`` also derives from :class:`ValueError`, ``NotFound`` from
:class:`LookupError` and ``Unavailable`` / ``DeadlineExceeded`` from
:class:`ConnectionError` / :class:`TimeoutError`, for code written against the builtins.
"""

from __future__ import annotations

# Canonical status codes (google.rpc.Code == absl::StatusCode).
OK = 0
CODE_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


class AdaptCacheError(Exception):
    """A failed call: ``code`` (int status code), ``code_name`` and ``message``."""

    code = 2  # UNKNOWN, for the base class raised with an unmapped code

    def __init__(self, code: int | None = None, message: str = ""):
        if code is None:
            code = type(self).code
        self.code = int(code)
        self.message = message
        super().__init__(message)

    @property
    def code_name(self) -> str:
        return CODE_NAMES.get(self.code, f"CODE_{self.code}")

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code} {self.code_name}, message={self.message!r})"

    def __reduce__(self):  # picklable across processes (multiprocessing workers)
        return (error_from_status, (self.code, self.message, isinstance(self, Overloaded)))


class Cancelled(AdaptCacheError):
    code = 1


class Unknown(AdaptCacheError):
    code = 2


class InvalidArgument(AdaptCacheError, ValueError):
    code = 3


class DeadlineExceeded(AdaptCacheError, TimeoutError):
    code = 4


class NotFound(AdaptCacheError, LookupError):
    code = 5


class AlreadyExists(AdaptCacheError):
    code = 6


class PermissionDenied(AdaptCacheError):
    code = 7


class ResourceExhausted(AdaptCacheError):
    code = 8


class FailedPrecondition(AdaptCacheError):
    code = 9


class Aborted(AdaptCacheError):
    code = 10


class OutOfRange(AdaptCacheError):
    code = 11


class Unimplemented(AdaptCacheError):
    code = 12


class Internal(AdaptCacheError):
    code = 13


class Unavailable(AdaptCacheError, ConnectionError):
    code = 14


class DataLoss(AdaptCacheError):
    code = 15


class Unauthenticated(AdaptCacheError):
    code = 16


_BY_CODE = {cls.code: cls for cls in (
    Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
    ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable,
    DataLoss, Unauthenticated)}


class Overloaded(ResourceExhausted):
    """The daemon refused the call for load, and kept refusing through the client's retries
    with backoff (an unreachable daemon raises :class:`Unavailable` instead)."""


def error_from_status(code: int, message: str, overloaded: bool = False) -> AdaptCacheError:
    """The exception for a non-zero status code (the base class for an unknown code)."""
    if overloaded and int(code) == ResourceExhausted.code:
        return Overloaded(code, message)
    cls = _BY_CODE.get(int(code))
    if cls is None:
        return AdaptCacheError(code, message)
    return cls(code, message)


__all__ = (["AdaptCacheError", "Overloaded", "error_from_status", "CODE_NAMES"]
           + [c.__name__ for c in _BY_CODE.values()])
