"""The ``diff`` of a pull request's details: what its head changes against the merge base with its target
(docs/protocol.md, Hub API: pull requests), in git's unified format.

A Xet file shows as the change of its git-LFS pointer (what git shows for an LFS file); a regular (inline)
file as a line diff of its text, or ``Binary files ... differ``. The text is bounded (``MAX_DIFF_BYTES``; a
cut diff ends with a note) and only regular files up to ``MAX_TEXT_BYTES`` are read from storage.

Synchronous (SQL and storage reads): call through ``State.run``.
"""
from __future__ import annotations

import difflib
from typing import Any

from xetfs.core.gitblob import lfs_pointer
from xetfs.errors import NotFound
from xetfs.server.stores.base import Storage

MAX_DIFF_BYTES = 1 << 20
MAX_TEXT_BYTES = 256 << 10
_NO_OID = "0" * 7


def _text(storage: Storage, entry: dict[str, Any] | None) -> list[str] | None:
    """The lines a diff shows for a tree entry; None for content that is not text."""
    if entry is None:
        return []
    if "xet" in entry:
        return lfs_pointer(entry["sha256"], int(entry["size"])).decode().splitlines(keepends=True)
    if int(entry["size"]) > MAX_TEXT_BYTES:
        return None
    try:
        data = storage.get(f"blobs/{entry['oid']}")
    except NotFound:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _file_diff(storage: Storage, path: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    head = [f"diff --git a/{path} b/{path}\n"]
    if old is None:
        head.append("new file mode 100644\n")
    elif new is None:
        head.append("deleted file mode 100644\n")
    head.append(f"index {old['oid'][:7] if old else _NO_OID}..{new['oid'][:7] if new else _NO_OID}\n")
    a, b = (f"a/{path}" if old else "/dev/null"), (f"b/{path}" if new else "/dev/null")
    before, after = _text(storage, old), _text(storage, new)
    if before is None or after is None:
        return "".join(head) + f"Binary files {a} and {b} differ\n"
    lines = difflib.unified_diff(before, after, a, b, lineterm="\n")
    return "".join(head) + "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines)


def tree_diff(storage: Storage, base: dict[str, Any], head: dict[str, Any]) -> str:
    """The unified diff from snapshot ``base`` to snapshot ``head`` (path -> tree entry), paths in order."""
    out: list[str] = []
    size = 0
    for path in sorted(set(base) | set(head)):
        old, new = base.get(path), head.get(path)
        if old == new:
            continue
        part = _file_diff(storage, path, old, new)
        if size + len(part) > MAX_DIFF_BYTES:
            out.append(f"(diff cut at {MAX_DIFF_BYTES} bytes)\n")
            break
        out.append(part)
        size += len(part)
    return "".join(out)
