"""Hub "not found" errors that name themselves to clients in ``X-Error-Code`` (docs/protocol.md, Hub API).

huggingface_hub tells a missing repo, revision and file apart by this header; ``middleware`` writes it from
the declared ``code`` field.
"""
from __future__ import annotations

from typing import ClassVar

from xetfs.errors import NotFound


class CodedNotFound(NotFound):
    code: ClassVar[str] = "NotFound"


class RepoNotFound(CodedNotFound):
    code = "RepoNotFound"


class RevisionNotFound(CodedNotFound):
    code = "RevisionNotFound"


class EntryNotFound(CodedNotFound):
    code = "EntryNotFound"


class StreamAborted(Exception):
    """A response whose status line is already sent failed part-way: the connection is dropped, so the
    client sees a short body instead of an error page inside a 200 (``middleware`` lets it through)."""
