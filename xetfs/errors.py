"""One exception tree for xetfs.

Every error carries an ``errno`` (what a FUSE handler returns) and ``retryable`` (whether the retry
schedule may try again). Boundaries translate once: httpx/status codes -> these classes in ``xetfs.cas``
and ``xetfs.hub``; these classes -> ``FUSEError(errno)`` in ``xetfs.fs.fuse_ops``; these classes -> HTTP
status codes in ``xetfs.server.app``.
"""
from __future__ import annotations

import errno as _errno


class XetError(Exception):
    """Base class. ``status`` is the HTTP status the server answers with for this error."""

    errno: int = _errno.EIO
    retryable: bool = False
    status: int = 500


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
