"""The rules of a repo file path, shared by both ends (docs/security.md, "Names").

A path is ``/``-separated, with no empty, ``.`` or ``..`` segment, no leading ``/``, no control character
(NUL included) or backslash, each segment at most 255 bytes of UTF-8 (``NAME_MAX`` of common filesystems) and
the whole path at most 4096 bytes (``PATH_MAX``). The server refuses other paths at commit; a client meets one
only from a hostile or broken server, and must not write it under a local directory (it could escape the
directory or fail on the local filesystem).
"""
from __future__ import annotations

import unicodedata

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control, surrogate or line/paragraph separator character."""
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in text)


def path_problem(path: object) -> str | None:
    """Why ``path`` is not a valid repo file path (a short message naming it), or None when it is one."""
    if not isinstance(path, str) or not path:
        return "a path must be a non-empty string"
    if path.startswith("/") or "\\" in path or has_control(path):
        return f"invalid path {path[:200]!r}"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"path longer than {MAX_PATH_BYTES} bytes"
    for seg in path.split("/"):
        if seg in ("", ".", ".."):
            return f"invalid path {path[:200]!r}: empty, '.' or '..' segment"
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            return f"path segment longer than {MAX_SEGMENT_BYTES} bytes: {seg[:60]!r}…"
    return None
