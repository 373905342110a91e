"""The file data of a writable mount: inodes staged copy-on-write, reads and writes of staged files
(docs/architecture.md, "The write path"). ``WritableVfs`` (``fs.writable``) adds the namespace changes and
the writeback's side.

No pyfuse3 here (``fuse_ops`` calls these methods). Theory of operation:

- An inode shows either the repo's bytes (``Tree``: size, Xet file hash, or a regular file read through
  resolve at ``origin``) or a ``StagedFile`` (``self.staged``). Opening for writing, ``O_TRUNC``, ``truncate``
  or ``create`` stages the inode: new and truncated files start empty; an existing Xet file is staged
  copy-on-write as a sparse file whose unchanged ranges are fetched from the base version (a Xet file, or
  a regular file at its origin commit) only when read (``_fill``) or uploaded, so even with the server down
  an existing file can be opened, appended to or overwritten and closed.
- A writer of a file the writeback is uploading right now gets a private copy (``Staging.copy_file``), so
  an upload always sees the content that was sealed.
- ``flush`` (every ``close``), ``fsync``, a truncate with no writer, and the last ``release`` ``_seal`` a
  modified file: fsync its data, then journal a ``Put`` (fdatasync) — only then does close return.
- Never commit what the application did not finish: a write that fails (ENOSPC past ``--staging-size``, EIO)
  marks the staged file ``broken``; a broken file is neither sealed nor uploaded, so the repo keeps the
  previous content (or never gets the file), until a handle that wrote successfully and saw no failure is
  closed (a clean rewrite).
- The writeback calls ``materialize`` (fetch all remaining base ranges) before uploading. chmod/utime are
  kept in memory (``self.meta``); the repo has no modes or mtimes.

Kernel caching: ``keep_cache`` only for inodes without staged data; every operation returns fresh attributes.
The tree changes through this mount, and through ``fs.follow`` (which moves the view to a new head only while
nothing is staged or pending, and invalidates the directory entries it changed).
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.errors import Forbidden, XetError
from xetfs.fs.vfs import STATS_INODE, Attr, Backend, IsADirectory, Tree, Vfs
from xetfs.write.staged import StagedFile
from xetfs.write.staging import Staging
from xetfs.write.stream import STREAM_MIN_BYTES, StreamUpload

log = logging.getLogger(__name__)

FILL_PIECE_BYTES = 4 << 20


class Invalid(XetError):
    errno = errno.EINVAL


class WritableBackend(Backend, Protocol):
    """A writable mount also reads regular files as of the commit they came from (``WritableVfs.origin``)."""

    async def read_regular_at(self, commit: str, path: str, file_size: int, offset: int, size: int) -> bytes: ...


class StagedVfs(Vfs):
    backend: WritableBackend

    def __init__(self, tree: Tree, backend: WritableBackend, staging: Staging, *, commit: str,
                 kick: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        super().__init__(tree, backend, **kwargs)
        self.staging = staging
        self.commit = commit                                  # default origin of regular files
        self.kick = kick
        self.staged: dict[int, StagedFile] = {}
        self.meta: dict[int, list[int]] = {}                  # ino -> [permission bits, mtime_ns]
        self._open: dict[int, int] = {}                       # open handles per inode
        self._write_failed: set[int] = set()                  # handles that saw a failed write
        self._wrote: set[int] = set()                         # handles with a successful write
        # Starts uploading a file that is written front to back before it is closed (the writeback's
        # ``start_stream``; None: no stream, e.g. too many at once).
        self.start_stream: Callable[[StagedFile], StreamUpload | None] = lambda sf: None
        # Dedup candidates (``xetfs.write.basecands``): ``prepare_base`` starts learning the layout of the
        # base-revision file a staged path held, at its first write; ``note_read`` remembers a file read (at
        # least half of it) through one handle (a model loaded before it is saved again), learned only once a
        # file is written.
        self.prepare_base: Callable[[MerkleHash, int], None] = lambda xet, size: None
        self.note_read: Callable[[MerkleHash, int], None] = lambda xet, size: None

    # -- metadata
    def getattr(self, ino: int) -> Attr:
        self.tree.check(ino)
        if ino == STATS_INODE:
            return super().getattr(ino)
        meta = self.meta.get(ino)
        mtime = meta[1] if meta else self.mtimes.get(ino, self.mtime_ns)
        if self.tree.is_dir(ino):
            return Attr(ino, stat.S_IFDIR | (meta[0] if meta else 0o755), 0, mtime, 2)
        sf = self.staged.get(ino)
        size = sf.size if sf is not None else self.tree.size(ino)
        return Attr(ino, stat.S_IFREG | (meta[0] if meta else 0o644), size, mtime, 1)

    def _touch(self, ino: int, mode: int | None = None, mtime_ns: int | None = None) -> None:
        mtime = self.mtimes.get(ino, self.mtime_ns)
        meta = self.meta.setdefault(ino, [0o755 if self.tree.is_dir(ino) else 0o644, mtime])
        if mode is not None:
            meta[0] = mode & 0o7777
        meta[1] = time.time_ns() if mtime_ns is None else mtime_ns

    def statfs(self) -> dict[str, int]:
        s = super().statfs()
        s["free_bytes"] = max(0, self.staging.limit_bytes - self.staging.used_bytes)
        return s

    def keep_cache(self, fh: int) -> bool:
        handle = self.handle(fh)
        return super().keep_cache(fh) and handle.inode not in self.staged and not handle.write

    @staticmethod
    def _check_name(name: str) -> str:
        """Names the repo could not hold fail now (EINVAL), not later in a commit the Hub refuses."""
        if "\\" in name or "\x00" in name or len(name.encode()) > 255:
            raise Invalid(f"{name!r}: not a valid name in a repo")
        return name

    # -- staging an inode
    async def _stage(self, ino: int, *, truncate: bool) -> StagedFile:
        sf = self.staged.get(ino)
        if sf is not None:
            if sf.in_flight:   # the writeback uploads this content: write to a copy
                base_file = sf.base_file
                self._attach(ino, self.staging.new_file(0) if truncate else self.staging.copy_file(sf))
                sf = self.staged[ino]
                sf.base_file = base_file
            if truncate and sf.size:
                self.staging.resize(sf, 0)
            return sf
        size, xet = self.tree.size(ino), self.tree.xet_hash(ino)
        if truncate or size == 0:
            sf = self.staging.new_file(0)
            sf.dirty = truncate and size > 0
        elif xet is not None:
            sf = self.staging.new_file(size, base_xet=xet)
        else:
            sf = self.staging.new_file(size, base_origin=self.origin.get(ino) or (self.commit, self.tree.path(ino)))
        if xet is not None and size > 0:
            sf.base_file = (xet, size)
        self._attach(ino, sf)
        return sf

    def _attach(self, ino: int, sf: StagedFile) -> None:
        old = self.staged.get(ino)
        self.staged[ino] = sf
        sf.attached = True
        if old is not None and old is not sf:
            old.attached = False
            self.staging.release_if_unused(old)

    def _maybe_detach(self, ino: int) -> None:
        """Drop staged data that the repo now holds (committed, or never modified) once nothing uses it."""
        sf = self.staged.get(ino)
        if sf is None or self._open.get(ino):
            return
        if self.tree.alive(ino) and (sf.refs or sf.dirty or sf.writers or sf.in_flight):
            return   # (a removed inode lets go at once; the staging keeps what a pending change still names)
        del self.staged[ino]
        sf.attached = False
        self.staging.release_if_unused(sf)

    async def _seal(self, ino: int) -> None:
        sf = self.staged.get(ino)
        if sf is None or not sf.dirty or sf.broken:
            return
        self.staging.flush(sf)   # the bytes still gathered reach the file before its fsync
        sf.dirty = False
        await trio.to_thread.run_sync(self.staging.sync_data, sf)
        if not self.tree.alive(ino) or self.staged.get(ino) is not sf:
            return
        await self.staging.persist([self.staging.put(self.tree.path(ino), sf)])
        self.kick()

    # -- reads of staged files
    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self.handle(fh)
        sf = self.staged.get(handle.inode)
        if handle.snapshot is not None or sf is None:
            return await super().read(fh, offset, size)
        end = min(offset + size, sf.size)
        if offset >= end:
            return b""
        await self._fill(sf, offset, end)
        self.staging.flush(sf)
        data = os.pread(sf.fd, end - offset, offset)
        self.bytes_read += len(data)
        return data

    async def _fill(self, sf: StagedFile, start: int, end: int) -> None:
        """Fetch the base ranges of ``[start, end)`` not yet local (no lock: a racing write wins, see fill)."""
        for a, b in sf.holes(start, end):
            pos = a
            while pos < b:
                n = min(b - pos, FILL_PIECE_BYTES)
                data = await self._read_base(sf, pos, n)
                if not data:
                    raise XetError(f"base file {sf.base_xet} ended at {pos}, expected {sf.base_size} bytes")
                # On the trio thread, right after the await: the holes are re-checked and filled with no
                # await in between, so a write that landed meanwhile is never overwritten (pieces are small).
                self.staging.fill(sf, pos, data)
                pos += len(data)

    async def _read_base(self, sf: StagedFile, pos: int, n: int) -> bytes:
        if sf.base_origin is not None:
            commit, path = sf.base_origin
            return await self.backend.read_regular_at(commit, path, sf.base_size, pos, n)
        if sf.base_reader is None:
            assert sf.base_xet is not None
            sf.base_reader = self.backend.reader(sf.base_xet, sf.base_size)
        return await sf.base_reader.read(pos, n, fetch_end=min(sf.base_limit, pos + 2 * n))

    async def materialize(self, sf: StagedFile) -> None:
        await self._fill(sf, 0, sf.size)

    # -- handles
    async def open(self, ino: int, flags: int) -> int:
        self.tree.check(ino)
        write = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if ino == STATS_INODE and (write or flags & os.O_TRUNC):
            raise Forbidden("the stats file is read-only")
        if self.tree.is_dir(ino):
            raise IsADirectory(self.tree.path(ino))
        if write or flags & os.O_TRUNC:
            sf = await self._stage(ino, truncate=bool(flags & os.O_TRUNC))
            sf.writers += write
        return await self._handle_for(ino, write)

    async def _handle_for(self, ino: int, write: bool) -> int:
        fh = await self._new_handle(ino, remote=ino not in self.staged, write=write)
        self._open[ino] = self._open.get(ino, 0) + 1
        return fh

    async def create(self, parent: int, name: str, mode: int, flags: int) -> tuple[int, Attr]:
        self.tree.check(parent)
        ino = self.tree.add_file(parent, self._check_name(name))
        self._attach(ino, self.staging.new_file(0))
        self.staged[ino].dirty = True
        self._touch(ino, mode)
        write = bool(flags & (os.O_WRONLY | os.O_RDWR))
        self.staged[ino].writers += write
        return await self._handle_for(ino, write), self.getattr(ino)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.handle(fh)
        sf = self.staged.get(handle.inode)
        if not handle.write or sf is None:
            raise XetError("file handle not open for writing")   # EIO: the kernel checks modes first
        if sf.base_file is not None and not sf.dirty:   # the first write since the last seal: a head start on
            self.prepare_base(*sf.base_file)             # the dedup candidates its upload will want
        try:
            n = self.staging.write(sf, offset, data)
        except XetError:
            sf.broken = True
            self._write_failed.add(fh)
            raise
        self._wrote.add(fh)
        self.write_requests += 1
        self.bytes_written += n
        if not sf.stream_tried and sf.appends_only and sf.size >= STREAM_MIN_BYTES and not sf.broken:
            sf.stream_tried = True
            try:
                self.staging.flush(sf)   # the stream reads what was written so far from the file
            except XetError as exc:      # this write succeeded; the bytes stay gathered for the next flush
                log.warning("not uploading %s while it is written: %s", self.tree.path(handle.inode), exc)
            else:
                sf.stream = self.start_stream(sf)
                if sf.stream is not None:
                    sf.stream.appended(sf.size)
        self._touch(handle.inode)
        return n

    async def flush(self, fh: int) -> None:
        await self._seal(self.handle(fh).inode)

    async def fsync(self, fh: int) -> None:
        await self._seal(self.handle(fh).inode)

    async def close(self, fh: int) -> None:
        handle = self._handles.get(fh)
        self.release(fh)
        failed, wrote = fh in self._write_failed, fh in self._wrote
        self._write_failed.discard(fh)
        self._wrote.discard(fh)
        if handle is None:
            return
        ino = handle.inode
        if not handle.write and handle.snapshot is None and ino not in self.staged and self.tree.alive(ino) and \
                (xet := self.tree.xet_hash(ino)) is not None and \
                (handle.streamed or 2 * handle.bytes_read >= self.tree.size(ino)):
            self.note_read(xet, self.tree.size(ino))   # read (mostly) whole: a base of the next file written
        self._open[ino] = self._open.get(ino, 1) - 1
        if self._open[ino] <= 0:
            del self._open[ino]
        sf = self.staged.get(ino)
        if handle.write and sf is not None:
            sf.writers -= 1
            if wrote and not failed:
                sf.broken = False    # a clean rewrite: this content may be committed
            if not sf.writers and sf.stream is not None:
                sf.stream.finish()   # the last writer closed: the stream stores the rest
            await self._seal(ino)   # normally flush did it already; the last release must not lose a write
            if not sf.writers:
                self.kick()          # the writeback skips files that are open for writing
        self._maybe_detach(ino)

    # -- metadata changes
    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None,
                      mtime_ns: int | None = None) -> Attr:
        self.tree.check(ino)
        if ino == STATS_INODE:
            raise Forbidden("the stats file is read-only")
        if size is not None:
            if self.tree.is_dir(ino):
                raise IsADirectory(self.tree.path(ino))
            sf = await self._stage(ino, truncate=size == 0)
            self.staging.resize(sf, size)
            if not sf.writers:
                await self._seal(ino)
        if mode is not None or mtime_ns is not None or size is not None:
            self._touch(ino, mode, mtime_ns)
        return self.getattr(ino)
