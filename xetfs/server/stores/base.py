"""The object-store contract of the server: xorbs, shards and inline file contents (docs/architecture.md).

One conformance suite (``xetfs.testing.server.check_storage_contract``) runs against every implementation:

- keys are ``/``-separated relative names made of ``[A-Za-z0-9._-]`` segments (e.g. ``xorbs/<hex>``);
- ``put_if_absent(key, data) -> bool`` stores ``data`` atomically and returns True, or leaves an existing
  object untouched and returns False (objects are content-addressed, so an existing object is the same bytes);
- ``get(key)``, ``get_range(key, start, end_incl)`` (both ends inclusive, clamped to the object) and
  ``size(key)`` raise ``NotFound`` for a missing key; ``exists(key)`` never raises;
- ``path_for(key)`` names a local file for zero-copy ``sendfile`` serving, or None (remote stores);
- ``delete(key)`` removes an object if present (garbage and quarantined objects only, never live ones).

Optional capabilities are declared as their own Protocols, checked with ``isinstance``:
``Presigning`` (hands out URLs on the store itself that clients may GET directly) and ``Closable``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from xetfs.errors import ValidationError
from xetfs.osutil.atomic import TMP_SUFFIX

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or any(seg in (".", "..") for seg in key.split("/")) or key.endswith(TMP_SUFFIX):
        raise ValidationError(f"bad storage key {key!r}")
    return key


@runtime_checkable
class Storage(Protocol):
    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def get_range(self, key: str, start: int, end_incl: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def path_for(self, key: str) -> Path | None: ...
    def delete(self, key: str) -> None: ...


@runtime_checkable
class Presigning(Protocol):
    """A store clients can read from directly: a URL anyone may GET (any Range) until it expires."""

    def presign_get(self, key: str, expires_s: int) -> str: ...


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...
