"""Hub "not found" errors that name themselves to clients in ``X-Error-Code`` (docs/protocol.md, Hub API).

huggingface_hub tells a missing repo, revision and file apart by this header; ``middleware`` writes it from
the declared ``code`` field.
"""
from __future__ import annotations

from typing import ClassVar

from xetfs.errors import NotFound, XetError


class CodedNotFound(NotFound):
    code: ClassVar[str] = "NotFound"


class RepoNotFound(CodedNotFound):
    code = "RepoNotFound"


class RevisionNotFound(CodedNotFound):
    code = "RevisionNotFound"


class EntryNotFound(CodedNotFound):
    code = "EntryNotFound"


class RequestTimeout(XetError):
    """A client stopped sending its body (no bytes for ``request.BODY_IDLE_TIMEOUT_S``)."""

    status = 408


class TooManyUploads(XetError):
    """One token has ``request.MAX_UPLOADS_PER_TOKEN`` uploads in flight already."""

    retryable = True
    status = 429


class StreamAborted(Exception):
    """A response whose status line is already sent failed part-way: the connection is dropped, so the
    client sees a short body instead of an error page inside a 200 (``middleware`` lets it through)."""
