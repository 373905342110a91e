"""The staging area of a writable mount: staged files and the pending changes (docs/architecture.md,
"The write path").

Layout under ``<cache_dir>/staging/<repo type>/<repo id>/<branch>/`` (one mount at a time: ``lock`` is
``flock``ed for the mount's lifetime):

- ``data/<id>``: one sparse file per staged file. ``StagedFile.local`` lists the byte ranges of
  ``[0, base_limit)`` that are present locally; every other byte below ``base_limit`` is still the content of
  the base Xet file (``base_xet``, immutable) and is fetched only when read or uploaded (copy-on-write).
  Bytes at or past ``base_limit`` are always local (a truncate lowers ``base_limit``; holes read as zeros).
- ``journal``: typed records (``xetfs.write.journal``), each batch written then ``fdatasync``ed before the
  caller is answered. Replay keeps, per path, the ``Put``/``Del``/``Done`` with the highest gen (notes annotate
  the change of their gen), so the order of lines written by concurrent threads does not matter; a torn last
  line (crash while appending) is ignored. The journal is compacted (atomically) when it is opened and
  whenever nothing is pending.

Data files no pending change names are unlinked only after the journal lines that stopped naming them are
durable (``persist``): a crash right after a commit (before its ``Done`` lines) finds every staged file the
journal still names. A close of a modified file is acknowledged only after its data file was fsynced and its
``Put`` line fdatasynced (``seal``): a crash after that loses nothing, the next mount of the same repo + cache
dir replays the journal and the writeback uploads what is pending. Space: every live staged file reserves its
largest logical size (it is materialised in full before upload); past ``limit_bytes`` -> ``NoSpace``.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import uuid
from pathlib import Path
from typing import TypeVar

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.errors import NoSpace, ValidationError, XetError
from xetfs.osutil.atomic import fsync_dir
from xetfs.osutil.directio import DirectWriter, Gather
from xetfs.write.journal import (Base, Conflicted, Del, Done, Expect, Failed, Intended, Journal, Put, Record,
                                 Remote, StagedRef)
from xetfs.write.staged import Change, Extents, StagedFile

log = logging.getLogger(__name__)

COMPACT_AFTER_LINES = 20000
_Note = TypeVar("_Note", Conflicted, Failed, Intended)


class StagingBusy(ValidationError):
    """Another process holds the staging area (same repo, branch and cache dir)."""


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
        self._direct = DirectWriter()     # aligned writes skip the page cache (osutil.directio)
        self._gather = Gather()           # ... and contiguous ones reach the device together
        self._replay(Journal.read(root / "journal"))
        self.journal = Journal(root / "journal")
        self.journal.rewrite(self._state_records())

    # -- replay
    def _replay(self, records: list[Record]) -> None:
        latest: dict[str, Put | Del | Done] = {}
        notes: dict[tuple[str, int], list[Conflicted | Failed | Intended]] = {}
        for r in records:
            if isinstance(r, Base):
                self.base_commit = r.commit
                continue
            self._gen = max(self._gen, r.gen)
            if isinstance(r, (Put, Del, Done)):
                old = latest.get(r.path)
                if old is None or r.gen > old.gen or (r.gen == old.gen and isinstance(r, Done)):
                    latest[r.path] = r
            else:
                notes.setdefault((r.path, r.gen), []).append(r)
        for path, r in latest.items():
            if isinstance(r, Done):
                continue
            change = (Change(r.gen, "put", remote=r.remote) if isinstance(r, Put)
                      else Change(r.gen, "del", in_repo=r.in_repo))
            for note in notes.get((path, r.gen), ()):
                _annotate(change, note)
            if isinstance(r, Put) and r.staged is not None:
                try:
                    change.staged = self._reopen(r.staged)
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

    def _reopen(self, rec: StagedRef) -> StagedFile:
        sf = self.files.get(rec.id)
        if sf is not None:
            return sf
        fd = os.open(self.data / rec.id, os.O_RDWR)
        base = MerkleHash.from_hex(rec.base) if rec.base else None
        sf = StagedFile(rec.id, fd, rec.size, base, rec.base_size, rec.limit, Extents(rec.local), dir_synced=True)
        sf.base_origin = rec.origin
        os.ftruncate(fd, sf.size)   # the data file may be longer than the sealed size (later unsealed writes)
        self._account(sf, sf.size)
        self.files[sf.id] = sf
        return sf

    def _state_records(self) -> list[Record]:
        out: list[Record] = []
        if self.base_commit:
            out.append(Base(self.base_commit))
        for path, c in self.pending.items():
            out.append(self._line(path, c))
            if c.conflict is not None:
                out.append(Conflicted(path, c.gen, c.conflict))
            if c.failed is not None:
                out.append(Failed(path, c.gen, c.failed))
            if c.intent is not None:
                out.append(Intended(path, c.gen, c.intent))
        return out

    @staticmethod
    def _line(path: str, c: Change) -> Put | Del:
        if c.kind == "del":
            return Del(path, c.gen, c.in_repo)
        return Put(path, c.gen, c.staged.record() if c.staged is not None else None, c.remote)

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
        sf.appends_only = size == 0
        sf.base_origin = base_origin
        self._account(sf, size)
        self.files[sf_id] = sf
        return sf

    def copy_file(self, src: StagedFile) -> StagedFile:
        """A private copy (copy_file_range: no bytes through Python) for a writer of an in-flight file."""
        self.flush(src)
        sf = self.new_file(0, None)
        sf.base_xet, sf.base_size, sf.base_limit = src.base_xet, src.base_size, src.base_limit
        sf.local, sf.base_reader, sf.base_origin = Extents(src.local.ranges()), src.base_reader, src.base_origin
        sf.base_file = src.base_file
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
        self.flush(sf)
        drop_stream(sf)
        sf.appends_only = size == 0
        sf.stream_tried = False if size == 0 else sf.stream_tried
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
        appends = sf.appends_only and offset == sf.size
        if not appends:
            sf.appends_only = False
            drop_stream(sf)
        try:
            self.reserve(sf, offset + len(data))
            n = None
            if self._direct.fits(offset, len(data)):   # only then open the O_DIRECT descriptor
                dfd = sf.direct_fd(self.data / sf.id)
                if self._gather.add(sf, dfd, sf.fd, data, offset):
                    n = len(data)
                else:
                    self._gather.flush(sf)   # what was gathered lands first: this write may overlap it
                    n = self._direct.pwrite(dfd, data, offset)
            else:
                self._gather.flush(sf)
            n = os.pwrite(sf.fd, data, offset) if n is None else n
        except OSError as exc:
            drop_stream(sf)
            raise _os_error(exc) from None
        except XetError:
            drop_stream(sf)
            raise
        if offset < sf.base_limit:
            sf.local.add(offset, min(offset + n, sf.base_limit))
        sf.size = max(sf.size, offset + n)
        sf.dirty = True
        if sf.stream is not None:
            if sf.stream.finished:
                drop_stream(sf)   # written again after its last close
            elif not sf.stream.appended(sf.size, data if appends and n == len(data) else None):
                self.flush(sf)    # the stream reads these bytes from the file, not from the write
        return n

    def flush(self, sf: StagedFile) -> None:
        """Write out the bytes of ``sf`` still gathered (``osutil.directio.Gather``): called before anything reads
        its data file, changes it other than by a write, or syncs it. An OSError becomes the caller's XetError;
        the bytes stay gathered."""
        try:
            self._gather.flush(sf)
        except OSError as exc:
            drop_stream(sf)
            raise _os_error(exc) from None

    def fill(self, sf: StagedFile, offset: int, data: bytes) -> None:
        """Base bytes fetched for ``offset``: store only the parts still missing (a write may have landed)."""
        self.flush(sf)
        for a, b in sf.holes(offset, offset + len(data)):
            os.pwrite(sf.fd, memoryview(data)[a - offset:b - offset], a)
            sf.local.add(a, b)

    def release_if_unused(self, sf: StagedFile) -> None:
        if sf.refs > 0 or sf.attached or sf.in_flight or self.files.get(sf.id) is not sf:
            return
        del self.files[sf.id]
        drop_stream(sf)
        self._gather.forget(sf)
        sf.close()
        self._released.append(sf.id)   # unlinked once the journal no longer names it (see persist)
        self.used_bytes -= sf.reserved

    def sync_data(self, sf: StagedFile) -> None:
        """fsync a staged file (and, the first time, the data directory). Worker thread: the caller ``flush``es
        ``sf`` first, on the trio thread."""
        os.fsync(sf.fd)
        if not sf.dir_synced:
            fsync_dir(self.data)
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

    def put(self, path: str, staged: StagedFile | None = None, remote: Remote | None = None) -> Put | Del:
        change = Change(self._next_gen(), "put", staged, remote)
        self._set(path, change)
        return self._line(path, change)

    def delete(self, path: str, *, in_repo: bool = True) -> Put | Del:
        """A delete of ``path``; ``in_repo=False`` when the repo is known not to hold it (not counted as
        pending, still committed: a commit in flight may add it)."""
        change = Change(self._next_gen(), "del", in_repo=in_repo)
        self._set(path, change)
        return self._line(path, change)

    def _current(self, path: str, gen: int) -> Change | None:
        c = self.pending.get(path)
        return c if c is not None and c.gen == gen else None

    def done(self, path: str, gen: int) -> Done | None:
        if self._current(path, gen) is None:
            return None
        self._set(path, None)
        return Done(path, gen)

    def conflict(self, path: str, gen: int, head: str) -> Conflicted | None:
        return self._note(Conflicted(path, gen, head))

    def fail(self, path: str, gen: int, error: str) -> Failed | None:
        return self._note(Failed(path, gen, error))

    def intend(self, path: str, gen: int, expect: Expect) -> Intended | None:
        return self._note(Intended(path, gen, expect))

    def _note(self, note: _Note) -> _Note | None:
        c = self._current(note.path, note.gen)
        if c is None:
            return None
        _annotate(c, note)
        return note

    def set_base(self, commit: str) -> Base:
        self.base_commit = commit
        return Base(commit)

    async def persist(self, lines: list[Record | None]) -> None:
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
            sf.close()
        self.files.clear()
        self._direct.close()
        self._gather.close()
        os.close(self._lock_fd)


def drop_stream(sf: StagedFile) -> None:
    """Stop streaming ``sf`` (its content changed other than by an append): chunked at commit time."""
    if sf.stream is not None:
        sf.stream.drop()
        sf.stream = None


def _annotate(change: Change, note: Conflicted | Failed | Intended) -> None:
    if isinstance(note, Conflicted):
        change.conflict = note.head
    elif isinstance(note, Failed):
        change.failed = note.error
    else:
        change.intent = note.expect
