"""One staged file: its data file descriptor, size, base version and the base ranges present locally; and one
pending ``Change`` of a path, which may name a staged file (docs/architecture.md, "The write path").
``Staging`` creates, accounts and journals them."""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from xetfs.core.hashing import MerkleHash
from xetfs.osutil.directio import open_direct
from xetfs.write.journal import Expect, Remote, StagedRef

if TYPE_CHECKING:
    from xetfs.write.stream import StreamUpload


class Extents:
    """Sorted disjoint ``[start, end)`` byte ranges."""

    def __init__(self, ranges: tuple[tuple[int, int], ...] = ()) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for a, b in ranges:
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

    def ranges(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self.starts, self.ends))


class BaseReader(Protocol):
    """Reads the base version of a staged file (the mount wires a ``FileReader``)."""

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes: ...


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
    broken: bool = False      # a write failed (ENOSPC, EIO): never sealed until a clean rewrite is closed
    appends_only: bool = True # written front to back since it was empty: may stream (write.stream)
    stream: StreamUpload | None = None
    stream_tried: bool = False  # one stream per file: a dropped one is not restarted
    in_flight: bool = False   # being uploaded: a new writer gets a copy
    attached: bool = False    # an inode of the VFS shows it
    refs: int = 0             # pending changes naming it
    dir_synced: bool = False
    dfd: int | None = None    # its O_DIRECT descriptor (``direct_fd``): None until asked for, -1 when refused
    base_reader: BaseReader | None = None
    base_origin: tuple[str, str] | None = None   # a regular (non-Xet) base file: (commit, path)
    base_file: tuple[MerkleHash, int] | None = None   # the Xet file (hash, size) the path held when staged,
    #                                                   even if truncated (dedup candidates: write.basecands)

    def direct_fd(self, path: str | os.PathLike[str]) -> int:
        """A second descriptor of its data file ``path``, opened with ``O_DIRECT`` on first use; -1 where the
        file system refuses it (``osutil.directio``)."""
        if self.dfd is None:
            fd = open_direct(path)
            self.dfd = -1 if fd is None else fd
        return self.dfd

    def close(self) -> None:
        os.close(self.fd)
        if self.dfd is not None and self.dfd >= 0:
            os.close(self.dfd)
        self.dfd = None

    def holes(self, a: int, b: int) -> list[tuple[int, int]]:
        """Ranges of ``[a, b)`` that still have to come from the base file."""
        b = min(b, self.base_limit)
        return self.local.missing(a, b) if a < b else []

    def record(self) -> StagedRef:
        return StagedRef(self.id, self.size, str(self.base_xet) if self.base_xet else None, self.base_origin,
                         self.base_size, self.base_limit, self.local.ranges())


@dataclass(slots=True)
class Change:
    """What a path will look like in the next commit."""

    gen: int
    kind: Literal["put", "del"]
    staged: StagedFile | None = None
    remote: Remote | None = None           # a committed file renamed without changes
    conflict: str | None = None            # head commit that changed the path too: kept staged
    failed: str | None = None              # the Hub's permanent refusal: kept staged, not retried
    intent: Expect | None = None           # expected head entry once committed (idempotent resume)
    in_repo: bool = True                   # a delete: the path may exist in the repo

    @property
    def counts(self) -> bool:
        """Whether committing this change may change the repo (a delete of a path it never had does not)."""
        return self.kind == "put" or self.in_repo

    @property
    def held(self) -> bool:
        """Not uploaded automatically (until a new save of the path replaces this change)."""
        return self.conflict is not None or self.failed is not None

    @property
    def size(self) -> int:
        if self.staged is not None:
            return self.staged.size
        return self.remote.size if self.remote else 0
