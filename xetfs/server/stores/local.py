"""Where the server's objects live: xorbs, shards and inline file contents (design.md §1, "stores").

The contract (one conformance suite, ``xetfs.testing.server.check_storage_contract``, runs against every
implementation):

- keys are ``/``-separated relative names made of ``[A-Za-z0-9._-]`` segments (e.g. ``xorbs/<hex>``);
- ``put_if_absent(key, data) -> bool`` stores ``data`` atomically and returns True, or leaves an existing
  object untouched and returns False (objects are content-addressed, so an existing object is the same bytes);
- ``get(key)``, ``get_range(key, start, end_incl)`` (both ends inclusive, clamped to the object) and
  ``size(key)`` raise ``NotFound`` for a missing key; ``exists(key)`` never raises;
- ``path_for(key)`` names a local file for zero-copy ``sendfile`` serving, or None (remote stores);
- ``delete(key)`` removes an object if present (used only for garbage, never for live objects).

``LocalStorage`` (the embedded default) writes a temp file in the target directory, fsyncs it, hard-links it
to the final name (atomic create-if-absent) and fsyncs the directory, so a crash (even SIGKILL mid-write) leaves either the whole
object or nothing but a ``*.tmp`` file, which ``cleanup_temp()`` removes at start-up.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path
from typing import Protocol

from xetfs.errors import NotFound, ValidationError

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_TMP_SUFFIX = ".tmp"


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or any(seg in (".", "..") for seg in key.split("/")) or key.endswith(_TMP_SUFFIX):
        raise ValidationError(f"bad storage key {key!r}")
    return key


class Storage(Protocol):
    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def get_range(self, key: str, start: int, end_incl: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def path_for(self, key: str) -> Path | None: ...
    def delete(self, key: str) -> None: ...


class LocalStorage:
    """Objects as files under ``root``; atomic writes (temp + fsync + rename + directory fsync)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)     # atomic create-if-absent: a concurrent writer of the same key loses
            except FileExistsError:
                return False
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_dir(path.parent)
        return True

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def get_range(self, key: str, start: int, end_incl: int) -> bytes:
        if start < 0 or end_incl < start:
            raise ValidationError(f"bad range {start}-{end_incl}")
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(end_incl - start + 1)
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except ValidationError:
            return False

    def path_for(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def cleanup_temp(self) -> int:
        """Remove temp files left by a crash mid-write; returns how many."""
        n = 0
        for tmp in self.root.rglob(f".*{_TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            n += 1
        if n:
            log.info("removed %d temp files left by an interrupted write", n)
        return n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomically replace a small local file (server state like the secret or server.json)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
