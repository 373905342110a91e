"""The staging area of a writable mount: staged files and the journal of pending changes (issue 5 §3).

Layout under ``<cache_dir>/staging/<repo type>/<repo id>/<branch>/`` (one mount at a time: ``lock`` is
``flock``ed for the mount's lifetime):

- ``data/<id>``: one sparse file per staged file. ``StagedFile.local`` lists the byte ranges of
  ``[0, base_limit)`` that are present locally; every other byte below ``base_limit`` is still the content of
  the base Xet file (``base_xet``, immutable) and is fetched only when read or uploaded (copy-on-write).
  Bytes at or past ``base_limit`` are always local (a truncate lowers ``base_limit``; holes read as zeros).
- ``journal``: append-only JSON lines, each batch written then ``fdatasync``ed before the caller is answered.
  Lines: ``put`` (path, gen, a staged file's id/size/base/local ranges, or a ``remote`` reference to a
  committed file: renames of unmodified files need no data), ``del`` (path, gen), ``done`` (path, gen:
  committed), ``conflict`` (path, gen, head), ``failed`` (path, gen, error: the Hub refused that change
  for good), ``intent`` (path, gen, expect: what the path will hold once the commit about to be sent lands —
  sha256 + size, git blob oid + size, or deleted) and ``base`` (the commit the pending changes apply to).
  Replay keeps, per path, the line with the highest gen (``conflict``/``failed``/``intent`` annotate the
  change of their gen), so the order of lines written by concurrent threads does not matter; a torn last
  line (crash while appending) is ignored. The journal is compacted
  (temp file, fsync, rename, fsync dir) when it is opened and whenever nothing is pending.

Data files no pending change names are unlinked only after the journal lines that stopped naming them are
durable (``persist``): a crash right after a commit (before its ``done`` lines) finds every staged file the
journal still names. A close of a modified file is acknowledged only after its data file was fsynced and its ``put`` line
fdatasynced (``seal``): a crash after that loses nothing, the next mount of the same repo + cache dir
replays the journal and the writeback uploads what is pending. Space: every live staged file reserves its
largest logical size (it is materialised in full before upload); past ``limit_bytes`` -> ``NoSpace``.
"""
from __future__ import annotations

import bisect
import errno
import fcntl
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.errors import NoSpace, ValidationError, XetError

if TYPE_CHECKING:
    from xetfs.fs.vfs import Reader

log = logging.getLogger(__name__)

COMPACT_AFTER_LINES = 20000
# Journal lines that annotate the change of their (path, gen): kind -> (Change attribute, line key).
_NOTES = {"conflict": ("conflict", "head"), "failed": ("failed", "error"), "intent": ("intent", "expect")}


class StagingBusy(ValidationError):
    """Another process holds the staging area (same repo, branch and cache dir)."""


class Extents:
    """Sorted disjoint ``[start, end)`` byte ranges."""

    def __init__(self, ranges: list[list[int]] | None = None) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for a, b in ranges or ():
            self.add(a, b)

    def add(self, a: int, b: int) -> None:
        if b <= a:
            return
        i = bisect.bisect_left(self.ends, a)          # first range ending at or after a
        j = bisect.bisect_right(self.starts, b)       # ranges starting at or before b
        if i < j:
            a, b = min(a, self.starts[i]), max(b, self.ends[j - 1])
        self.starts[i:j] = [a]
        self.ends[i:j] = [b]

    def clip(self, limit: int) -> None:
        """Forget everything at or past ``limit``."""
        i = bisect.bisect_left(self.starts, limit)
        del self.starts[i:], self.ends[i:]
        if self.ends and self.ends[-1] > limit:
            self.ends[-1] = limit

    def missing(self, a: int, b: int) -> list[tuple[int, int]]:
        """The parts of ``[a, b)`` not covered."""
        out: list[tuple[int, int]] = []
        i = bisect.bisect_right(self.ends, a)
        pos = a
        while pos < b and i < len(self.starts):
            if self.starts[i] >= b:
                break
            if self.starts[i] > pos:
                out.append((pos, self.starts[i]))
            pos = max(pos, self.ends[i])
            i += 1
        if pos < b:
            out.append((pos, b))
        return out

    def as_list(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.starts, self.ends)]


@dataclass(eq=False, slots=True)
class StagedFile:
    id: str
    fd: int
    size: int
    base_xet: MerkleHash | None = None
    base_size: int = 0
    base_limit: int = 0
    local: Extents = field(default_factory=Extents)
    reserved: int = 0
    writers: int = 0          # open write handles
    dirty: bool = False       # written since the last seal
    in_flight: bool = False   # being uploaded: a new writer gets a copy
    attached: bool = False    # an inode of the VFS shows it
    refs: int = 0             # pending changes naming it
    dir_synced: bool = False
    base_reader: Reader | None = None
    base_origin: tuple[str, str] | None = None   # a regular (non-Xet) base file: (commit, path)

    def holes(self, a: int, b: int) -> list[tuple[int, int]]:
        """Ranges of ``[a, b)`` that still have to come from the base file."""
        b = min(b, self.base_limit)
        return self.local.missing(a, b) if a < b else []

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "base": str(self.base_xet) if self.base_xet else None,
                "origin": list(self.base_origin) if self.base_origin else None,
                "base_size": self.base_size, "limit": self.base_limit, "local": self.local.as_list()}


@dataclass(slots=True)
class Change:
    """What a path will look like in the next commit."""

    gen: int
    kind: str                              # "put" | "del"
    staged: StagedFile | None = None
    remote: dict[str, Any] | None = None   # {"xet", "sha256", "size"} or {"commit", "path", "size"}
    conflict: str | None = None            # head commit that changed the path too: kept staged
    failed: str | None = None              # the Hub's permanent refusal: kept staged, not retried
    intent: dict[str, Any] | None = None   # expected head entry once committed (idempotent resume)

    @property
    def held(self) -> bool:
        """Not uploaded automatically (until a new save of the path replaces this change)."""
        return self.conflict is not None or self.failed is not None

    @property
    def size(self) -> int:
        if self.staged is not None:
            return self.staged.size
        return int(self.remote["size"]) if self.remote else 0


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.lines = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write and fdatasync (call from a worker thread)."""
        data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        with self._lock:
            os.write(self._fd, data)
            os.fdatasync(self._fd)
            self.lines += len(records)

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with self._lock:
            with open(tmp, "wb") as f:
                f.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self.lines = len(records)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not path.exists():
            return out
        for n, line in enumerate(path.read_bytes().splitlines()):
            try:
                out.append(json.loads(line))
            except ValueError:
                log.warning("journal %s: ignoring a torn line %d", path, n + 1)
        return out

    def close(self) -> None:
        os.close(self._fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: OSError) -> XetError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"staging area: {exc}")
    return XetError(f"staging area: {exc}")


class Staging:
    """Staged files + pending changes of one branch, durable under ``root``."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.limit_bytes = limit_bytes
        self._lock_fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StagingBusy(f"another mount uses the staging area {root} (same repo, branch and cache dir)")
        self.pending: dict[str, Change] = {}
        self.files: dict[str, StagedFile] = {}
        self.base_commit: str | None = None
        self.used_bytes = 0
        self._gen = 0
        self._io_lock = trio.Lock()
        self._released: list[str] = []   # data files no change names any more, still on disk
        self._replay(Journal.read(root / "journal"))
        self.journal = Journal(root / "journal")
        self.journal.rewrite(self._state_records())

    # -- replay
    def _replay(self, records: list[dict[str, Any]]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for r in records:
            self._gen = max(self._gen, int(r.get("gen", 0)))
            if r.get("t") == "base":
                self.base_commit = r["commit"]
            elif r.get("t") in ("put", "del", "done"):
                old = latest.get(r["path"])
                if old is None or r["gen"] > old["gen"] or (r["gen"] == old["gen"] and r["t"] == "done"):
                    latest[r["path"]] = dict(r)
            elif r.get("t") in _NOTES:
                old = latest.get(r["path"])
                if old is not None and old["gen"] == r["gen"] and old["t"] != "done":
                    old[_NOTES[r["t"]][0]] = r.get(_NOTES[r["t"]][1], "?")
        for path, r in latest.items():
            if r["t"] == "done":
                continue
            change = Change(int(r["gen"]), r["t"], remote=r.get("remote"), conflict=r.get("conflict"),
                            failed=r.get("failed"), intent=r.get("intent"))
            if r["t"] == "put" and r.get("staged"):
                try:
                    change.staged = self._reopen(r["staged"])
                except OSError as exc:
                    log.error("staged data of %s is missing (%s): dropping that change", path, exc)
                    continue
                change.staged.refs += 1
            self.pending[path] = change
        for p in self.data.iterdir():
            if p.name not in self.files:
                p.unlink(missing_ok=True)
        if self.pending:
            log.info("staging %s: %d pending changes to resume", self.root, len(self.pending))

    def _reopen(self, rec: dict[str, Any]) -> StagedFile:
        sf = self.files.get(rec["id"])
        if sf is not None:
            return sf
        fd = os.open(self.data / rec["id"], os.O_RDWR)
        base = MerkleHash.from_hex(rec["base"]) if rec.get("base") else None
        sf = StagedFile(rec["id"], fd, int(rec["size"]), base, int(rec.get("base_size", 0)), int(rec.get("limit", 0)),
                        Extents(rec.get("local") or []), dir_synced=True)
        sf.base_origin = tuple(rec["origin"]) if rec.get("origin") else None
        os.ftruncate(fd, sf.size)   # the data file may be longer than the sealed size (later unsealed writes)
        self._account(sf, sf.size)
        self.files[sf.id] = sf
        return sf

    def _state_records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.base_commit:
            out.append({"t": "base", "commit": self.base_commit})
        for path, c in self.pending.items():
            out.append(self._line(path, c))
            for kind, (attr, key) in _NOTES.items():
                if getattr(c, attr) is not None:
                    out.append({"t": kind, "path": path, "gen": c.gen, key: getattr(c, attr)})
        return out

    @staticmethod
    def _line(path: str, c: Change) -> dict[str, Any]:
        r: dict[str, Any] = {"t": c.kind, "path": path, "gen": c.gen}
        if c.staged is not None:
            r["staged"] = c.staged.record()
        if c.remote is not None:
            r["remote"] = c.remote
        return r

    # -- staged files
    def new_file(self, size: int = 0, base_xet: MerkleHash | None = None,
                 base_origin: tuple[str, str] | None = None) -> StagedFile:
        self._check_space(size)
        sf_id = uuid.uuid4().hex
        try:
            fd = os.open(self.data / sf_id, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.ftruncate(fd, size)
        except OSError as exc:
            raise _os_error(exc) from None
        has_base = base_xet is not None or base_origin is not None
        sf = StagedFile(sf_id, fd, size, base_xet, size if has_base else 0, size if has_base else 0)
        sf.base_origin = base_origin
        self._account(sf, size)
        self.files[sf_id] = sf
        return sf

    def copy_file(self, src: StagedFile) -> StagedFile:
        """A private copy (copy_file_range: no bytes through Python) for a writer of an in-flight file."""
        sf = self.new_file(0, None)
        sf.base_xet, sf.base_size, sf.base_limit = src.base_xet, src.base_size, src.base_limit
        sf.local, sf.base_reader, sf.base_origin = Extents(src.local.as_list()), src.base_reader, src.base_origin
        self.resize(sf, src.size)
        left, off = src.size, 0
        try:
            while left > 0:
                n = os.copy_file_range(src.fd, sf.fd, left, off, off)
                if n <= 0:
                    break
                left, off = left - n, off + n
        except OSError as exc:
            raise _os_error(exc) from None
        return sf

    def _check_space(self, grow: int) -> None:
        if grow > 0 and self.used_bytes + grow > self.limit_bytes:
            raise NoSpace(f"staging area full: {self.used_bytes} + {grow} bytes > {self.limit_bytes}")

    def _account(self, sf: StagedFile, size: int) -> None:
        if size > sf.reserved:
            self.used_bytes += size - sf.reserved
            sf.reserved = size

    def reserve(self, sf: StagedFile, size: int) -> None:
        if size > sf.reserved:
            self._check_space(size - sf.reserved)
            self._account(sf, size)

    def resize(self, sf: StagedFile, size: int) -> None:
        self.reserve(sf, size)
        try:
            os.ftruncate(sf.fd, size)
        except OSError as exc:
            raise _os_error(exc) from None
        if size < sf.base_limit:
            sf.base_limit = size
            sf.local.clip(size)
        sf.size = size
        sf.dirty = True

    def write(self, sf: StagedFile, offset: int, data: bytes) -> int:
        if not data:
            return 0   # writes nothing and, like pwrite, does not extend the file
        self.reserve(sf, offset + len(data))
        try:
            n = os.pwrite(sf.fd, data, offset)
        except OSError as exc:
            raise _os_error(exc) from None
        if offset < sf.base_limit:
            sf.local.add(offset, min(offset + n, sf.base_limit))
        sf.size = max(sf.size, offset + n)
        sf.dirty = True
        return n

    def fill(self, sf: StagedFile, offset: int, data: bytes) -> None:
        """Base bytes fetched for ``offset``: store only the parts still missing (a write may have landed)."""
        for a, b in sf.holes(offset, offset + len(data)):
            os.pwrite(sf.fd, memoryview(data)[a - offset:b - offset], a)
            sf.local.add(a, b)

    def release_if_unused(self, sf: StagedFile) -> None:
        if sf.refs > 0 or sf.attached or sf.in_flight or self.files.get(sf.id) is not sf:
            return
        del self.files[sf.id]
        os.close(sf.fd)
        self._released.append(sf.id)   # unlinked once the journal no longer names it (see persist)
        self.used_bytes -= sf.reserved

    def sync_data(self, sf: StagedFile) -> None:
        """fsync a staged file (and, the first time, the data directory). Worker thread."""
        os.fsync(sf.fd)
        if not sf.dir_synced:
            _fsync_dir(self.data)
            sf.dir_synced = True

    # -- pending changes (memory first, then the returned journal lines; the caller appends them)
    def _set(self, path: str, change: Change | None) -> None:
        old = self.pending.pop(path, None)
        if change is not None:
            self.pending[path] = change
            if change.staged is not None:
                change.staged.refs += 1
        if old is not None and old.staged is not None:
            old.staged.refs -= 1
            self.release_if_unused(old.staged)

    def _next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def put(self, path: str, staged: StagedFile | None = None, remote: dict[str, Any] | None = None) -> dict[str, Any]:
        change = Change(self._next_gen(), "put", staged, remote)
        self._set(path, change)
        return self._line(path, change)

    def delete(self, path: str) -> dict[str, Any]:
        change = Change(self._next_gen(), "del")
        self._set(path, change)
        return self._line(path, change)

    def done(self, path: str, gen: int) -> dict[str, Any] | None:
        c = self.pending.get(path)
        if c is None or c.gen != gen:
            return None
        self._set(path, None)
        return {"t": "done", "path": path, "gen": gen}

    def conflict(self, path: str, gen: int, head: str) -> dict[str, Any] | None:
        c = self.pending.get(path)
        if c is None or c.gen != gen:
            return None
        c.conflict = head
        return {"t": "conflict", "path": path, "gen": gen, "head": head}

    def fail(self, path: str, gen: int, error: str) -> dict[str, Any] | None:
        c = self.pending.get(path)
        if c is None or c.gen != gen:
            return None
        c.failed = error
        return {"t": "failed", "path": path, "gen": gen, "error": error}

    def intend(self, path: str, gen: int, expect: dict[str, Any]) -> dict[str, Any] | None:
        c = self.pending.get(path)
        if c is None or c.gen != gen:
            return None
        c.intent = expect
        return {"t": "intent", "path": path, "gen": gen, "expect": expect}

    def set_base(self, commit: str) -> dict[str, Any]:
        self.base_commit = commit
        return {"t": "base", "commit": commit}

    async def persist(self, lines: list[dict[str, Any] | None]) -> None:
        """Make journal lines durable, in request order (a FIFO lock: a compaction's snapshot, taken under
        the lock, never drops a line requested after it). Compacts when nothing is pending any more.

        Data files released before this call are unlinked only after the write: every release comes from a
        change whose journal line the caller passes to ``persist`` with no await in between (this call or an
        earlier one), so a crash never leaves a durable line naming a deleted data file. Files released
        without a later persist stay on disk until the next one, or until the next open's replay."""
        records = [r for r in lines if r is not None]
        doomed, self._released = self._released, []
        async with self._io_lock:
            if not self.pending or self.journal.lines > COMPACT_AFTER_LINES:
                await trio.to_thread.run_sync(self.journal.rewrite, self._state_records())
            elif records:
                await trio.to_thread.run_sync(self.journal.append, records)
        for sf_id in doomed:
            (self.data / sf_id).unlink(missing_ok=True)

    def pending_bytes(self) -> int:
        return sum(c.size for c in self.pending.values() if c.kind == "put" and not c.held)

    def close(self) -> None:
        self.journal.close()
        for sf in self.files.values():
            os.close(sf.fd)
        self.files.clear()
        os.close(self._lock_fd)
