"""Filesystem semantics of one immutable repo revision, in domain terms (docs/architecture.md, "A read"
and "The write path").

No pyfuse3 here: ``fuse_ops`` unpacks kernel requests and calls this model; tests drive it directly.

- ``Tree`` (``xetfs.fs.tree``): the inode table of the revision.
- Handles: ``open`` gives a file handle with its own ``Readahead`` (``xetfs.read.readahead``: what to fetch
  past each read, from the bytes the handle consumed and the file's format). Xet files are read through one
  shared ``FileReader`` per inode, kept while open and in a small LRU after release, so the chunk layout it
  learned survives a reopen. ``.safetensors`` and ``.parquet`` files get their header or footer read at
  first open (``xetfs.read.formats``): tensor and column chunk boundaries steer the readahead.
- Non-Xet files are read through the Hub's resolve route (``Backend.read_regular``).
- A hidden ``/.xetfs-stats`` file (not listed by readdir) returns the mount's statistics as JSON, with a
  line per open file (``open_files``): bytes read, and the readahead decisions of its handles.

An inode's content never changes: a mount that follows its branch (``fs.follow``) shows a changed file as a
new inode (the old one keeps serving the handles opened on it) and sets the new one's ``mtimes`` and, for a
regular file, its ``origin`` (the commit its bytes are read at); so fuse_ops may hand the kernel long timeouts
and ``keep_cache``, and only the directory entries a poll changed are invalidated. Write operations raise
``ReadOnly`` (EROFS) here; ``fs.writable.WritableVfs`` (a mounted branch) overrides them and mutates the
``Tree``.
"""
from __future__ import annotations

import json
import logging
from array import array
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from xetfs.core.hashing import MerkleHash
from xetfs.errors import NotFound, ReadOnly, XetError
from xetfs.fs.tree import (FIRST_INODE, ROOT_INODE, STATS_INODE, STATS_NAME, Entry, IsADirectory, NotADirectory,
                           Tree)
from xetfs.read.formats import Regions, file_regions
from xetfs.read.readahead import Readahead
from xetfs.read.source import OpenFileStats
from xetfs.read.stream import Chained

__all__ = ["Attr", "Backend", "Entry", "FIRST_INODE", "Handle", "IsADirectory", "NotADirectory", "ROOT_INODE",
           "Reader", "STATS_INODE", "STATS_NAME", "Tree", "Vfs"]

log = logging.getLogger(__name__)

SHARD_RE = re.compile(r"^(.*-)(\d+)-of-(\d+)(\.safetensors)$")

FILE_MODE = stat.S_IFREG | 0o444
DIR_MODE = stat.S_IFDIR | 0o555


@dataclass(frozen=True, slots=True)
class Attr:
    inode: int
    mode: int
    size: int
    mtime_ns: int
    nlink: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class Reader(Chained, Protocol):
    """A file's shared reader (``FileReader``); it can stream the rest of its file (``Chained``)."""

    size: int

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes: ...


class Backend(Protocol):
    """Where file bytes come from (the mount wires FileReader + HubClient; tests may wire a dict)."""

    def reader(self, xet_hash: MerkleHash, size: int) -> Reader: ...
    async def read_regular(self, path: str, file_size: int, offset: int, size: int) -> bytes: ...
    async def read_regular_at(self, commit: str, path: str, file_size: int, offset: int, size: int) -> bytes: ...


@dataclass(slots=True)
class Handle:
    inode: int
    readahead: Readahead
    reader: Reader | None = None
    snapshot: bytes | None = None      # stats file contents, fixed at open
    bytes_read: int = 0
    streamed: bool = False             # the whole file was asked for in the background
    write: bool = False                # opened for writing (writable mounts)


class Vfs:
    """The read-only filesystem model of one revision."""

    def __init__(self, tree: Tree, backend: Backend, *, mtime_ns: int = 0,
                 stats: Callable[[], dict[str, Any]] | None = None, readers_kept: int = 64,
                 readahead_max_bytes: int = 64 << 20) -> None:
        self.tree = tree
        self.backend = backend
        self.mtime_ns = mtime_ns
        self.mtimes: dict[int, int] = {}                      # inodes whose mtime is not ``mtime_ns``
        self.origin: dict[int, tuple[str, str]] = {}          # regular file ino -> (commit, path) of its bytes
        self._nlookup = array("q")                            # per inode: the kernel's lookup count
        self._stats = stats or (lambda: {})
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._readers: OrderedDict[int, Reader] = OrderedDict()
        self._regions: dict[int, Regions | None] = {}   # per kept reader: what its format says of its layout
        self.readers_kept = readers_kept
        self.readahead_max_bytes = readahead_max_bytes
        self.bytes_read = 0
        self.write_requests = 0      # write requests a writable mount served, and their bytes (stats: write)
        self.bytes_written = 0

    # -- metadata
    def getattr(self, ino: int) -> Attr:
        self.tree.check(ino)
        if ino == STATS_INODE:
            return Attr(ino, FILE_MODE, 0, self.mtime_ns, 1)
        if self.tree.is_dir(ino):
            return Attr(ino, DIR_MODE, 0, self.mtimes.get(ino, self.mtime_ns), 2)
        return Attr(ino, FILE_MODE, self.tree.size(ino), self.mtimes.get(ino, self.mtime_ns), 1)

    def lookup(self, parent: int, name: str) -> Attr:
        self.tree.check(parent)
        if name == ".":
            return self.getattr(parent)
        if name == "..":
            return self.getattr(ROOT_INODE if parent == ROOT_INODE else self.tree.parent(parent))
        return self.getattr(self.tree.lookup(parent, name))

    def readdir(self, ino: int, start: int) -> list[tuple[str, Attr, int]]:
        """Entries from index ``start``; each with the index to resume after it."""
        self.tree.check(ino)
        kids = self.tree.children(ino)
        return [(self.tree.name(k), self.getattr(k), i + 1) for i, k in enumerate(kids[start:], start)]

    def statfs(self) -> dict[str, int]:
        return {"files": len(self.tree), "bytes": self.tree.total_bytes}

    # -- files
    async def open(self, ino: int, flags: int) -> int:
        self.tree.check(ino)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise ReadOnly("this mount is a read-only revision")
        if self.tree.is_dir(ino):
            raise IsADirectory(self.tree.path(ino))
        return await self._new_handle(ino, remote=True)

    async def _new_handle(self, ino: int, *, remote: bool, write: bool = False) -> int:
        """A file handle; ``remote``: the bytes come from the repo (a reader is set up now)."""
        handle = Handle(ino, Readahead(self.readahead_max_bytes), write=write)
        if ino == STATS_INODE:
            handle.snapshot = (json.dumps(self._stats(), indent=2, sort_keys=True) + "\n").encode()
        elif remote and self.tree.xet_hash(ino) is not None:
            await self._attach_reader(handle)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    async def _attach_reader(self, handle: Handle) -> Reader:
        handle.reader = await self._reader(handle.inode)
        regions = self._regions.get(handle.inode)
        if regions is not None:
            handle.readahead.set_regions(regions.bounds, regions.kind)
        return handle.reader

    def forget_reader(self, ino: int) -> None:
        """The inode's content changed: its cached reader (old file hash) must not serve it again."""
        self._readers.pop(ino, None)
        self._regions.pop(ino, None)

    async def _reader(self, ino: int) -> Reader:
        """The inode's shared reader for a new handle, its format header read (once), counted as open."""
        reader = self._kept_reader(ino)
        if ino not in self._regions:
            try:
                self._regions[ino] = await file_regions(reader, self.tree.name(ino))
            except XetError as exc:   # only a hint: the open itself must not fail for it
                log.warning("cannot read the format header of %s: %s", self.tree.path(ino), exc)
        reader.opened()
        return reader

    def _kept_reader(self, ino: int) -> Reader:
        """The inode's shared reader, made if need be and kept as the most recently used; the least recently
        used readers not open are dropped beyond ``readers_kept``."""
        reader = self._readers.pop(ino, None)
        if reader is None:
            xet = self.tree.xet_hash(ino)
            assert xet is not None
            reader = self.backend.reader(xet, self.tree.size(ino))
        self._readers[ino] = reader
        while len(self._readers) > self.readers_kept:
            old = next(iter(self._readers))
            if old == ino or self._readers[old].handles > 0:
                break
            del self._readers[old]
            self._regions.pop(old, None)
        return reader

    def handle(self, fh: int) -> Handle:
        handle = self._handles.get(fh)
        if handle is None:
            raise NotFound(f"no file handle {fh}")
        return handle

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self.handle(fh)
        if handle.snapshot is not None:
            return handle.snapshot[offset:offset + size]
        data = await self._read_remote(handle, offset, size)
        self.bytes_read += len(data)
        handle.bytes_read += len(data)
        return data

    async def _read_remote(self, handle: Handle, offset: int, size: int) -> bytes:
        file_size = self.tree.size(handle.inode)
        size = max(0, min(size, file_size - offset))
        if size == 0:
            return b""
        if handle.reader is None and self.tree.xet_hash(handle.inode) is not None:
            await self._attach_reader(handle)   # the inode became a Xet file after the open (a commit)
        if handle.reader is None:
            return await self._read_regular(handle.inode, file_size, offset, size)
        fetch_end = handle.readahead.fetch_end(offset, size)
        if not handle.streamed and handle.readahead.wants_whole_file(file_size):
            handle.streamed = True
            await self._stream(handle.inode)
        return await handle.reader.read(offset, size, fetch_end=fetch_end)

    async def _stream(self, ino: int) -> None:
        """Stream the rest of this file in the background, and of its sibling shards (``name-00002-of-00003``)
        which a loader reads next."""
        inodes = [ino]
        m = SHARD_RE.match(self.tree.name(ino))
        if m is not None:
            parent = self.tree.parent(ino)
            own, count = int(m.group(2)), int(m.group(3))
            for k in [*range(own + 1, count + 1), *range(1, own)]:   # the shards a loader reads next first
                name = f"{m.group(1)}{k:0{len(m.group(2))}d}-of-{m.group(3)}{m.group(4)}"
                try:
                    sibling = self.tree.lookup(parent, name)
                except NotFound:
                    continue
                if sibling != ino and self.tree.xet_hash(sibling) is not None:
                    inodes.append(sibling)
        # Siblings' readers are kept (not counted as open) so the layout they fetch serves the later open.
        # Their format headers are read when they are opened, or streamed with the rest: not fetched now,
        # long before a loader gets there (and evicted from memory by then).
        readers = [self._kept_reader(i) for i in inodes]
        # One after the other: each shard's stream starts the next as its last windows fill.
        readers[0].stream_rest(self.readahead_max_bytes, after=readers[1:])

    async def _read_regular(self, ino: int, file_size: int, offset: int, size: int) -> bytes:
        origin = self.origin.get(ino)
        if origin is None:
            return await self.backend.read_regular(self.tree.path(ino), file_size, offset, size)
        return await self.backend.read_regular_at(origin[0], origin[1], file_size, offset, size)

    def open_inodes(self) -> set[int]:
        return {h.inode for h in self._handles.values()}

    # -- what the kernel knows (fuse_ops reports lookups and forgets): a removed inode it still knows may be
    # opened again (a dentry being invalidated, /proc/PID/fd), so its ``origin`` and ``mtimes`` stay until then
    def looked_up(self, ino: int) -> None:
        if ino >= len(self._nlookup):
            self._nlookup.frombytes(bytes(8 * max(ino + 1 - len(self._nlookup), len(self._nlookup))))
        self._nlookup[ino] += 1

    def forget(self, ino: int, n: int) -> None:
        if ino < len(self._nlookup):
            self._nlookup[ino] = max(0, self._nlookup[ino] - n)
            if not self._nlookup[ino] and not self.tree.alive(ino) and ino not in self.open_inodes():
                self.origin.pop(ino, None)
                self.mtimes.pop(ino, None)

    def known(self, ino: int) -> bool:
        return ino < len(self._nlookup) and self._nlookup[ino] > 0

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is not None and handle.reader is not None:
            handle.reader.closed()

    async def close(self, fh: int) -> None:
        """The kernel's release (writable mounts do more here)."""
        self.release(fh)

    # -- writes: a read-only revision refuses them all (writable mounts override, see ``fs.writable``)
    async def create(self, parent: int, name: str, mode: int, flags: int) -> tuple[int, Attr]:
        raise ReadOnly("this mount is read-only")

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        raise ReadOnly("this mount is read-only")

    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None,
                      mtime_ns: int | None = None) -> Attr:
        raise ReadOnly("this mount is read-only")

    async def unlink(self, parent: int, name: str) -> None:
        raise ReadOnly("this mount is read-only")

    async def rmdir(self, parent: int, name: str) -> None:
        raise ReadOnly("this mount is read-only")

    async def mkdir(self, parent: int, name: str, mode: int) -> Attr:
        raise ReadOnly("this mount is read-only")

    async def rename(self, parent_old: int, name_old: str, parent_new: int, name_new: str, flags: int) -> None:
        raise ReadOnly("this mount is read-only")

    async def flush(self, fh: int) -> None:
        return None

    async def fsync(self, fh: int) -> None:
        """Nothing to make durable on a read-only mount: fsync of a file opened for reading succeeds."""
        return None

    def keep_cache(self, fh: int) -> bool:
        """Whether the kernel may keep the pages of this file across opens (immutable content only)."""
        return not self.is_stats(fh)

    def is_stats(self, fh: int) -> bool:
        handle = self._handles.get(fh)
        return handle is not None and handle.snapshot is not None

    def stats(self) -> dict[str, Any]:
        """The object ``.xetfs-stats`` serves (also read by ``fs.metrics`` at each scrape)."""
        return self._stats()

    @property
    def open_handles(self) -> int:
        return len(self._handles)

    def open_files(self) -> list[OpenFileStats]:
        """Per open file: its handles, the bytes they read, the bytes fetched for it, and the readahead's
        decisions (how many reads were fetched sequentially, tensor- or column-aligned, or exactly)."""
        handles: dict[int, list[Handle]] = {}
        for h in self._handles.values():
            if h.snapshot is None:
                handles.setdefault(h.inode, []).append(h)
        out = []
        for ino in sorted(handles):
            decisions: dict[str, int] = {}
            for h in handles[ino]:
                for kind, n in h.readahead.decisions.items():
                    decisions[kind] = decisions.get(kind, 0) + n
            counters = getattr(self._readers.get(ino), "counters", None)   # FileReader's (tests' fakes lack it)
            out.append(OpenFileStats(self.tree.path(ino), len(handles[ino]), sum(h.bytes_read for h in handles[ino]),
                                     counters.bytes_fetched if counters is not None else 0,
                                     counters.whole_file_streams if counters is not None else 0, decisions))
        return out
