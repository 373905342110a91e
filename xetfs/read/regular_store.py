"""Regular (non-Xet) files on disk: the small files of a repo (config.json, README.md, ...) kept in the cache
dir so that a mount started offline can serve them too (docs/architecture.md, "Cache management").

Content-addressed by git blob id: ``<cache_dir>/regular/<2 hex>/<oid>``, the file's bytes as they are. A read
checks the bytes against the oid (``git_blob_oid``) and the size from the tree; a damaged file is deleted and
reads as absent. Only files up to ``MAX_BYTES`` are kept (a mount reads larger ones by range from the server).
Writes are atomic renames (``disk_files.write_file``), so processes sharing the cache dir see whole files.
Like snapshots, these small files are outside the chunk LRU; ``xetfs cache clear`` removes them. Blocking.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

from xetfs.core.gitblob import git_blob_oid
from xetfs.read.disk_files import write_file

REGULAR = "regular"
MAX_BYTES = 4 * 1024 * 1024
_OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def regular_path(cache_dir: Path, oid: str) -> Path | None:
    """Where a regular file of git blob id ``oid`` lives; None for an oid that is not a git blob id."""
    if not _OID.match(oid):
        return None
    return Path(cache_dir) / REGULAR / oid[:2] / oid


def get_regular(cache_dir: Path, oid: str, size: int) -> bytes | None:
    """The file's bytes, checked; None when absent or damaged (then deleted)."""
    path = regular_path(cache_dir, oid)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != size or git_blob_oid(data) != oid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    return data


def has_regular(cache_dir: Path, oid: str) -> bool:
    path = regular_path(cache_dir, oid)
    return path is not None and path.exists()


def put_regular(cache_dir: Path, oid: str, data: bytes) -> bool:
    """Keep a file (when its bytes match ``oid`` and it is small enough); whether it was stored."""
    path = regular_path(cache_dir, oid)
    if path is None or len(data) > MAX_BYTES or git_blob_oid(data) != oid:
        return False
    return write_file(str(path), [data], len(data))


def regular_sound(path: Path) -> bool:
    """``xetfs cache verify``: whether a stored file still matches the oid it is named by."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return True
    return bool(_OID.match(path.name)) and git_blob_oid(data) == path.name
