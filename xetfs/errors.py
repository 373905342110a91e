"""One exception tree for xetfs.

Every error carries an ``errno`` (what a FUSE handler returns) and ``retryable`` (whether the retry
schedule may try again). Boundaries translate once: HTTP statuses -> these classes in
``xetfs.protocol.status`` (httpx failures in ``xetfs.transport.http``); these classes -> ``FUSEError(errno)``
in ``xetfs.fs.fuse_ops``; these classes -> HTTP statuses in the server (the ``status`` class attribute).

An error that came over HTTP carries declared fields, set by the constructor: ``http_status`` (the real
status; 0 for a transport failure with no answer; None for an error that never involved HTTP),
``retry_after_s`` (the server's ``Retry-After`` hint) and ``request_sent`` (False when the request never
left, e.g. a refused connection, so another node may take even a non-idempotent request).
"""
from __future__ import annotations

import errno as _errno


class XetError(Exception):
    """Base class. ``status`` is the HTTP status the server answers with for this error."""

    errno: int = _errno.EIO
    retryable: bool = False
    status: int = 500

    def __init__(self, message: str = "", *, http_status: int | None = None, retry_after_s: float | None = None,
                 request_sent: bool = True) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.request_sent = request_sent


class FormatError(XetError):
    """Bytes that do not follow the Xet formats (xorb, shard, chunk record, hash text)."""

    status = 400


class IntegrityError(XetError):
    """Data whose recomputed hash does not match the hash it was named or verified by."""

    status = 400


class ValidationError(XetError):
    """A well-formed request that breaks a rule (missing xorb, bad path, stale parent commit...)."""

    status = 400


class NotFound(XetError):
    errno = _errno.ENOENT
    status = 404


class RangeNotSatisfiable(XetError):
    status = 416


class Conflict(XetError):
    """The branch moved since the parent commit the caller named."""

    status = 412


class AlreadyExists(XetError):
    errno = _errno.EEXIST
    status = 409


class Unauthorized(XetError):
    errno = _errno.EACCES
    status = 401


class Forbidden(XetError):
    errno = _errno.EACCES
    status = 403


class ReadOnly(XetError):
    errno = _errno.EROFS
    status = 403


class NoSpace(XetError):
    errno = _errno.ENOSPC
    status = 507


class TransientError(XetError):
    """A network failure, a timeout, or a 429/5xx answer: worth another try after a backoff."""

    retryable = True
    status = 503


class RemoteError(XetError):
    """A final error answer from a remote server that maps to none of the classes above."""
