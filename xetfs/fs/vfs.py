"""Filesystem semantics of one immutable repo revision, in domain terms (docs/architecture.md, "A read").

No pyfuse3 here: ``fuse_ops`` unpacks kernel requests and calls this model; tests drive it directly.

- ``Tree``: the inode table built once from the Hub tree listing of a commit. Inodes are dense
  ints (root = 1); per inode it keeps the parent inode, the name, the size and the Xet file hash in parallel
  arrays, children as one dict ``(parent, name) -> inode``. Nothing grows after the mount starts, so the
  table is bounded by the listing (the hf-mount #105 lesson).
- Handles: ``open`` gives a file handle with its own ``Readahead`` (sequential growth per handle). Xet files
  are read through one shared ``FileReader`` per inode, kept while open and in a small LRU after release, so
  the chunk layout it learned survives a reopen. ``.safetensors`` files get their header read at first open
  and the tensor boundaries steer the readahead.
- Non-Xet files are read through the Hub's resolve route (``Backend.read_regular``).
- A hidden ``/.xetfs-stats`` file (not listed by readdir) returns the mount's statistics as JSON.

The revision is immutable: attributes and directory entries never change, so fuse_ops may hand the kernel
long timeouts and ``keep_cache`` and never invalidate anything. Write operations raise ``ReadOnly`` (EROFS)
here; ``fs.writable.WritableVfs`` (a mounted branch) overrides them and mutates the ``Tree`` (inodes are
never reused; a removed inode keeps its slot with parent 0).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from xetfs.core.hashing import MerkleHash
from xetfs.read.reader import Readahead
from xetfs.errors import AlreadyExists, NotFound, ReadOnly, XetError

log = logging.getLogger(__name__)

ROOT_INODE = 1
STATS_NAME = ".xetfs-stats"
STATS_INODE = 2
FIRST_INODE = 3
FILE_MODE = stat.S_IFREG | 0o444
DIR_MODE = stat.S_IFDIR | 0o555


class IsADirectory(XetError):
    errno = errno.EISDIR


class NotADirectory(XetError):
    errno = errno.ENOTDIR


@dataclass(frozen=True, slots=True)
class Entry:
    """What the tree needs from one Hub listing entry (``xetfs.client.hub.TreeEntry`` fits)."""

    path: str
    type: str
    size: int
    xet_hash: MerkleHash | None = None


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


class Reader(Protocol):
    boundaries: list[int] | None

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes: ...


class Backend(Protocol):
    """Where file bytes come from (the mount wires FileReader + HubClient; tests may wire a dict)."""

    def reader(self, xet_hash: MerkleHash, size: int) -> Reader: ...
    async def read_regular(self, path: str, file_size: int, offset: int, size: int) -> bytes: ...
    async def safetensors_boundaries(self, reader: Reader) -> list[int] | None: ...


class Tree:
    """Inode table of one revision: parallel arrays indexed by inode."""

    def __init__(self, entries: Iterable[Any]) -> None:
        self._parent = array("q", [0, 0, ROOT_INODE])
        self._size = array("q", [0, 0, 0])
        self._is_dir = bytearray([0, 1, 0])
        self._names: list[str] = ["", "", STATS_NAME]
        self._xet: list[MerkleHash | None] = [None, None, None]
        self._sha256: dict[int, str] = {}
        self._children: dict[tuple[int, str], int] = {}
        self._listing: dict[int, list[int]] = {ROOT_INODE: []}
        for e in sorted(entries, key=lambda e: e.path):
            parent = self._mkdirs(e.path.strip("/").split("/")[:-1])
            name = e.path.strip("/").split("/")[-1]
            if not name:
                continue
            if e.type == "directory":
                self._mkdirs(e.path.strip("/").split("/"))
            elif (parent, name) not in self._children:
                ino = self._add(parent, name, False, int(e.size), getattr(e, "xet_hash", None))
                if getattr(e, "sha256", None):
                    self._sha256[ino] = e.sha256

    def _add(self, parent: int, name: str, is_dir: bool, size: int, xet: MerkleHash | None) -> int:
        ino = len(self._names)
        self._parent.append(parent)
        self._size.append(size)
        self._is_dir.append(1 if is_dir else 0)
        self._names.append(name)
        self._xet.append(xet)
        self._children[(parent, name)] = ino
        self._listing[parent].append(ino)
        if is_dir:
            self._listing[ino] = []
        return ino

    def _mkdirs(self, parts: Sequence[str]) -> int:
        ino = ROOT_INODE
        for part in parts:
            child = self._children.get((ino, part))
            if child is None:
                child = self._add(ino, part, True, 0, None)
            ino = child
        return ino

    # -- mutation (writable mounts): inodes are never reused; a removed inode keeps its slot, parent 0
    def add_file(self, parent: int, name: str, size: int = 0) -> int:
        self._check_free(parent, name)
        return self._add(parent, name, False, size, None)

    def add_dir(self, parent: int, name: str) -> int:
        self._check_free(parent, name)
        return self._add(parent, name, True, 0, None)

    def _check_free(self, parent: int, name: str) -> None:
        if not self.is_dir(parent):
            raise NotADirectory(self.path(parent))
        if (parent, name) in self._children or (parent == ROOT_INODE and name == STATS_NAME):
            raise AlreadyExists(name)

    def mkdirs(self, parts: Sequence[str]) -> int:
        return self._mkdirs(parts)

    def remove(self, ino: int) -> None:
        parent = self._parent[ino]
        if parent == 0:
            return
        del self._children[(parent, self._names[ino])]
        self._listing[parent].remove(ino)
        self._parent[ino] = 0

    def move(self, ino: int, parent: int, name: str) -> None:
        self.remove(ino)
        self._parent[ino] = parent
        self._names[ino] = name
        self._children[(parent, name)] = ino
        self._listing[parent].append(ino)

    def set_file(self, ino: int, size: int, xet: MerkleHash | None, sha256: str | None) -> None:
        self._size[ino] = size
        self._xet[ino] = xet
        if sha256:
            self._sha256[ino] = sha256
        else:
            self._sha256.pop(ino, None)

    def set_size(self, ino: int, size: int) -> None:
        self._size[ino] = size

    def sha256(self, ino: int) -> str | None:
        return self._sha256.get(ino)

    def alive(self, ino: int) -> bool:
        return ino == ROOT_INODE or self._parent[ino] != 0

    def parent(self, ino: int) -> int:
        return self._parent[ino]

    def is_under(self, ino: int, ancestor: int) -> bool:
        while ino > ROOT_INODE:
            if ino == ancestor:
                return True
            ino = self._parent[ino]
        return ino == ancestor

    def files_under(self, ino: int) -> list[int]:
        if not self.is_dir(ino):
            return [ino]
        out: list[int] = []
        for k in self._listing[ino]:
            out.extend(self.files_under(k))
        return out

    def __len__(self) -> int:
        return len(self._names) - FIRST_INODE + 1

    @property
    def total_bytes(self) -> int:
        return sum(self._size)

    def check(self, ino: int) -> None:
        if not 0 < ino < len(self._names):
            raise NotFound(f"no inode {ino}")

    def is_dir(self, ino: int) -> bool:
        return bool(self._is_dir[ino])

    def size(self, ino: int) -> int:
        return self._size[ino]

    def xet_hash(self, ino: int) -> MerkleHash | None:
        return self._xet[ino]

    def lookup(self, parent: int, name: str) -> int:
        if name == STATS_NAME and parent == ROOT_INODE:
            return STATS_INODE
        ino = self._children.get((parent, name))
        if ino is None:
            raise NotFound(name)
        return ino

    def children(self, ino: int) -> list[int]:
        if not self.is_dir(ino):
            raise NotADirectory(self.path(ino))
        return self._listing[ino]

    def resolve(self, path: str) -> int | None:
        ino = ROOT_INODE
        for part in path.strip("/").split("/"):
            child = self._children.get((ino, part))
            if child is None:
                return None
            ino = child
        return ino

    def name(self, ino: int) -> str:
        return self._names[ino]

    def path(self, ino: int) -> str:
        parts = []
        while ino > ROOT_INODE:
            parts.append(self._names[ino])
            ino = self._parent[ino]
        return "/".join(reversed(parts))


@dataclass(slots=True)
class Handle:
    inode: int
    readahead: Readahead
    reader: Reader | None = None
    snapshot: bytes | None = None      # stats file contents, fixed at open
    write: bool = False                # opened for writing (writable mounts)


class Vfs:
    """The read-only filesystem model of one revision."""

    def __init__(self, tree: Tree, backend: Backend, *, mtime_ns: int = 0,
                 stats: Callable[[], dict[str, Any]] | None = None, readers_kept: int = 64,
                 readahead_max_bytes: int = 64 << 20) -> None:
        self.tree = tree
        self.backend = backend
        self.mtime_ns = mtime_ns
        self._stats = stats or (lambda: {})
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._readers: OrderedDict[int, Reader] = OrderedDict()
        self._open_count: dict[int, int] = {}
        self.readers_kept = readers_kept
        self.readahead_max_bytes = readahead_max_bytes
        self.bytes_read = 0

    # -- metadata
    def getattr(self, ino: int) -> Attr:
        self.tree.check(ino)
        if ino == STATS_INODE:
            return Attr(ino, FILE_MODE, 0, self.mtime_ns, 1)
        if self.tree.is_dir(ino):
            return Attr(ino, DIR_MODE, 0, self.mtime_ns, 2)
        return Attr(ino, FILE_MODE, self.tree.size(ino), self.mtime_ns, 1)

    def lookup(self, parent: int, name: str) -> Attr:
        self.tree.check(parent)
        if name == ".":
            return self.getattr(parent)
        if name == "..":
            return self.getattr(ROOT_INODE if parent == ROOT_INODE else self.tree._parent[parent])
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
        handle.readahead.boundaries = handle.reader.boundaries
        return handle.reader

    def forget_reader(self, ino: int) -> None:
        """The inode's content changed: its cached reader (old file hash) must not serve it again."""
        self._readers.pop(ino, None)

    async def _reader(self, ino: int) -> Reader:
        reader = self._readers.pop(ino, None)
        if reader is None:
            xet = self.tree.xet_hash(ino)
            assert xet is not None
            reader = self.backend.reader(xet, self.tree.size(ino))
            if self.tree.name(ino).endswith(".safetensors"):
                try:
                    reader.boundaries = await self.backend.safetensors_boundaries(reader)
                except XetError as exc:   # only a hint: the open itself must not fail for it
                    log.warning("cannot read the safetensors header of %s: %s", self.tree.path(ino), exc)
        self._readers[ino] = reader
        self._open_count[ino] = self._open_count.get(ino, 0) + 1
        while len(self._readers) > self.readers_kept:
            old = next(iter(self._readers))
            if self._open_count.get(old, 0) > 0:
                break
            del self._readers[old]
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
        return await handle.reader.read(offset, size, fetch_end=fetch_end)

    async def _read_regular(self, ino: int, file_size: int, offset: int, size: int) -> bytes:
        return await self.backend.read_regular(self.tree.path(ino), file_size, offset, size)

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is not None and handle.reader is not None:
            self._open_count[handle.inode] -= 1
            if self._open_count[handle.inode] <= 0:
                del self._open_count[handle.inode]

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

    @property
    def open_handles(self) -> int:
        return len(self._handles)
