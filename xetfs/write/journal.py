"""The crash-recovery journal of a staging area: typed records, one JSON line each (docs/architecture.md,
"The write path").

Each record is one of a closed set of dataclasses (``Record``); ``encode``/``decode`` map them to and from
JSON objects whose ``t`` key names the kind:

- ``Base`` (``base``): the commit the pending changes apply to;
- ``Put`` (``put``): a path's new content: a staged file (``StagedRef``) or a committed file renamed
  without changes (``XetRef``, ``RegularRef``: no data travels);
- ``Del`` (``del``): a path removed;
- ``Done`` (``done``): the change of that generation is committed;
- ``Conflicted`` (``conflict``), ``Failed`` (``failed``), ``Intended`` (``intent``): notes on the change of
  their (path, gen): the branch changed the path too, the Hub refused it for good, or what the path will
  hold once the commit about to be sent lands (``Expect``).

``Journal`` appends records (write + fdatasync) and rewrites the whole file atomically when compacting.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xetfs.core.gitblob import git_blob_oid
from xetfs.osutil.atomic import write_atomic
from xetfs.protocol.hub import AddRegular, AddXet, CommitOp, TreeEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StagedRef:
    """A staged data file as journaled: its id, sealed size, base file and locally present base ranges."""

    id: str
    size: int
    base: str | None = None                       # Xet file hash of the base version (hex)
    origin: tuple[str, str] | None = None         # a regular base file: (commit, path)
    base_size: int = 0
    limit: int = 0
    local: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class XetRef:
    """A committed Xet file (a rename of an unmodified file needs no upload)."""

    xet: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class RegularRef:
    """A committed regular (non-Xet) file, read at ``commit``."""

    commit: str
    path: str
    size: int


Remote = XetRef | RegularRef


@dataclass(frozen=True, slots=True)
class HoldsXet:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class HoldsBlob:
    oid: str
    size: int


@dataclass(frozen=True, slots=True)
class Deleted:
    pass


Expect = HoldsXet | HoldsBlob | Deleted


@dataclass(frozen=True, slots=True)
class Base:
    commit: str


@dataclass(frozen=True, slots=True)
class Put:
    path: str
    gen: int
    staged: StagedRef | None = None
    remote: Remote | None = None


@dataclass(frozen=True, slots=True)
class Del:
    path: str
    gen: int
    in_repo: bool = True      # False: the path was not in the repo when it was deleted


@dataclass(frozen=True, slots=True)
class Done:
    path: str
    gen: int


@dataclass(frozen=True, slots=True)
class Conflicted:
    path: str
    gen: int
    head: str


@dataclass(frozen=True, slots=True)
class Failed:
    path: str
    gen: int
    error: str


@dataclass(frozen=True, slots=True)
class Intended:
    path: str
    gen: int
    expect: Expect


Record = Base | Put | Del | Done | Conflicted | Failed | Intended
Note = Conflicted | Failed | Intended


def intent_of(op: CommitOp) -> Expect:
    """What the head's entry of ``op.path`` looks like once ``op`` is committed (compared on resume)."""
    if isinstance(op, AddXet):
        assert op.size is not None   # built by this client, always sized
        return HoldsXet(op.sha256, op.size)
    if isinstance(op, AddRegular):
        return HoldsBlob(git_blob_oid(op.content), len(op.content))
    return Deleted()


def matches(intent: Expect, entry: TreeEntry | None) -> bool:
    if isinstance(intent, Deleted):
        return entry is None
    if entry is None or entry.size != intent.size:
        return False
    return entry.sha256 == intent.sha256 if isinstance(intent, HoldsXet) else entry.oid == intent.oid


def _remote_json(r: Remote) -> dict[str, Any]:
    if isinstance(r, XetRef):
        return {"xet": r.xet, "sha256": r.sha256, "size": r.size}
    return {"commit": r.commit, "path": r.path, "size": r.size}


def _remote_of(d: dict[str, Any]) -> Remote:
    if "xet" in d:
        return XetRef(str(d["xet"]), str(d["sha256"]), int(d["size"]))
    return RegularRef(str(d["commit"]), str(d["path"]), int(d["size"]))


def _expect_json(e: Expect) -> dict[str, Any]:
    if isinstance(e, HoldsXet):
        return {"sha256": e.sha256, "size": e.size}
    if isinstance(e, HoldsBlob):
        return {"oid": e.oid, "size": e.size}
    return {"deleted": True}


def _expect_of(d: dict[str, Any]) -> Expect:
    if d.get("deleted"):
        return Deleted()
    if "sha256" in d:
        return HoldsXet(str(d["sha256"]), int(d["size"]))
    return HoldsBlob(str(d["oid"]), int(d["size"]))


def _staged_json(s: StagedRef) -> dict[str, Any]:
    return {"id": s.id, "size": s.size, "base": s.base, "origin": list(s.origin) if s.origin else None,
            "base_size": s.base_size, "limit": s.limit, "local": [list(r) for r in s.local]}


def _staged_of(d: dict[str, Any]) -> StagedRef:
    origin = d.get("origin")
    return StagedRef(str(d["id"]), int(d["size"]), d.get("base") or None,
                     (str(origin[0]), str(origin[1])) if origin else None, int(d.get("base_size", 0)),
                     int(d.get("limit", 0)), tuple((int(a), int(b)) for a, b in d.get("local") or ()))


def encode(r: Record) -> dict[str, Any]:
    if isinstance(r, Base):
        return {"t": "base", "commit": r.commit}
    if isinstance(r, Put):
        out: dict[str, Any] = {"t": "put", "path": r.path, "gen": r.gen}
        if r.staged is not None:
            out["staged"] = _staged_json(r.staged)
        if r.remote is not None:
            out["remote"] = _remote_json(r.remote)
        return out
    if isinstance(r, Del):
        return {"t": "del", "path": r.path, "gen": r.gen, **({} if r.in_repo else {"absent": True})}
    if isinstance(r, Done):
        return {"t": "done", "path": r.path, "gen": r.gen}
    if isinstance(r, Conflicted):
        return {"t": "conflict", "path": r.path, "gen": r.gen, "head": r.head}
    if isinstance(r, Failed):
        return {"t": "failed", "path": r.path, "gen": r.gen, "error": r.error}
    return {"t": "intent", "path": r.path, "gen": r.gen, "expect": _expect_json(r.expect)}


def decode(d: dict[str, Any]) -> Record:
    """The record of one journal line; ValueError for a line of an unknown kind or shape."""
    try:
        t = d["t"]
        if t == "base":
            return Base(str(d["commit"]))
        path, gen = str(d["path"]), int(d["gen"])
        if t == "put":
            return Put(path, gen, _staged_of(d["staged"]) if d.get("staged") else None,
                       _remote_of(d["remote"]) if d.get("remote") else None)
        if t == "del":
            return Del(path, gen, not d.get("absent", False))
        if t == "done":
            return Done(path, gen)
        if t == "conflict":
            return Conflicted(path, gen, str(d.get("head", "?")))
        if t == "failed":
            return Failed(path, gen, str(d.get("error", "?")))
        if t == "intent":
            return Intended(path, gen, _expect_of(d["expect"]))
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"malformed journal record {d!r}: {exc}") from None
    raise ValueError(f"unknown journal record kind {t!r}")


def _lines(records: list[Record]) -> bytes:
    return b"".join(json.dumps(encode(r), separators=(",", ":")).encode() + b"\n" for r in records)


class Journal:
    """Append-only JSON lines, each batch fdatasynced; ``rewrite`` replaces the file atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.lines = 0

    def append(self, records: list[Record]) -> None:
        """Write and fdatasync (call from a worker thread)."""
        data = _lines(records)
        with self._lock:
            os.write(self._fd, data)
            os.fdatasync(self._fd)
            self.lines += len(records)

    def rewrite(self, records: list[Record]) -> None:
        with self._lock:
            write_atomic(self.path, _lines(records), 0o600)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self.lines = len(records)

    @staticmethod
    def read(path: Path) -> list[Record]:
        """Every record of the file; a torn or unreadable line (a crash while appending) is skipped."""
        out: list[Record] = []
        if not path.exists():
            return out
        for n, line in enumerate(path.read_bytes().splitlines()):
            try:
                out.append(decode(json.loads(line)))
            except ValueError as exc:
                log.warning("journal %s: ignoring line %d (%s)", path, n + 1, exc)
        return out

    def close(self) -> None:
        os.close(self._fd)
