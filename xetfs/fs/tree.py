"""The inode table of one repo revision (docs/architecture.md, "Stages": fs).

``Tree`` is built once from the Hub tree listing of a commit (docs/protocol.md, "Tree entries"). Inodes are
dense ints (root = 1, the hidden stats file = 2); per inode it keeps the parent inode, the name, the size and
the Xet file hash in parallel arrays, children as one dict ``(parent, name) -> inode``. A read-only mount
never grows it after the start, so it is bounded by the listing. A writable mount mutates it (``add_file``,
``remove``, ``move``...): inodes are never reused; a removed inode keeps its slot with parent 0.
"""
from __future__ import annotations

import errno
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from xetfs.core.hashing import MerkleHash
from xetfs.errors import AlreadyExists, NotFound, XetError

ROOT_INODE = 1
STATS_NAME = ".xetfs-stats"
STATS_INODE = 2
FIRST_INODE = 3


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
