"""What a reader knows of its file's layout: chunks at known file offsets (docs/architecture.md, "The read
path").

A ``FileReader`` learns, from the terms of its reconstructions once their chunks are decoded, the file offset
and size of each chunk (``learn``). A read of known chunks is then a chunk-cache lookup with no reconstruction
query at all. The learned terms are persisted as the file's layout in the disk tier (``xetfs.read.layout``
encodes them; one save at a time through the fetcher's disk writer, coalescing what is learned meanwhile),
merged with what another process stored meanwhile (``DiskTier.update_layout``), and loaded back at the first
read (``load``), so a remount with a warm disk cache reads a file it read before without asking the server
anything.
"""
from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import ReconstructionTerm
from xetfs.errors import FormatError
from xetfs.read.fetcher import Fetcher
from xetfs.read.flight import Pending
from xetfs.read.layout import LayoutTerm, decode_layout, merge_into

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Chunk:
    xorb_hash: bytes
    index: int
    size: int


class KnownChunks:
    """The chunks of one file whose offsets are known, and the terms they were learned from."""

    def __init__(self, file_hash: MerkleHash, size: int, fetcher: Fetcher) -> None:
        self.file_hash = file_hash
        self.size = size
        self.fetcher = fetcher
        self._starts: list[int] = []             # file offsets of known chunks, sorted
        self._chunks: dict[int, Chunk] = {}      # file offset -> chunk
        self._terms: dict[int, LayoutTerm] = {}  # file offset -> learned term (persisted as the file's layout)
        self._layout: Pending | None = None      # the load of the stored layout (once, at the first read)
        self._saving = self._dirty = False

    def __bool__(self) -> bool:
        return bool(self._starts)

    def starting_in(self, lo: int, hi: int) -> list[tuple[int, Chunk]]:
        """The known chunks whose first byte is in ``[lo, hi)``, in file order."""
        return [(at, self._chunks[at]) for at in self._starts[bisect.bisect_left(self._starts, lo):
                                                              bisect.bisect_left(self._starts, hi)]]

    def next_start(self, pos: int) -> int | None:
        """The file offset of the first known chunk starting after ``pos``."""
        i = bisect.bisect_right(self._starts, pos)
        return self._starts[i] if i < len(self._starts) else None

    def run(self, pos: int, end: int) -> list[tuple[int, Chunk]]:
        i = bisect.bisect_right(self._starts, pos) - 1
        run: list[tuple[int, Chunk]] = []
        if i < 0:
            return run
        at = self._starts[i]
        while i < len(self._starts) and self._starts[i] == at and at < end:
            c = self._chunks[at]
            if at + c.size <= pos:
                break
            run.append((at, c))
            at += c.size
            i += 1
        return run

    def learn(self, file_offset: int, terms: Sequence[ReconstructionTerm], chunks: Sequence[Sequence[bytes]]) -> None:
        """The terms starting at ``file_offset``, one after the other, with their (verified) chunks."""
        self.learn_sizes(file_offset, terms, [tuple(map(len, datas)) for datas in chunks])

    def learn_sizes(self, file_offset: int, terms: Sequence[ReconstructionTerm],
                    sizes: Sequence[Sequence[int]]) -> None:
        """Like ``learn`` with each chunk's size only."""
        learned = False
        for term, n in zip(terms, sizes):
            learned |= self._add(LayoutTerm(file_offset, bytes(term.xorb_hash), term.chunk_start, tuple(n),
                                            None if term.verification_hash is None else bytes(term.verification_hash)))
            file_offset += sum(n)
        if learned:
            self._save_soon()

    def _add(self, t: LayoutTerm, *, insort: bool = True) -> bool:
        if t.file_offset in self._terms:
            return False
        self._terms[t.file_offset] = t
        at = t.file_offset
        for i, n in enumerate(t.chunk_sizes):
            if at not in self._chunks:
                self._chunks[at] = Chunk(t.xorb_hash, t.chunk_start + i, n)
                if insort:
                    bisect.insort(self._starts, at)
            at += n
        return True

    async def load(self) -> None:
        """At the first read: learn the stored layout (single-flight; a cancelled load is retried later)."""
        if self._layout is not None:
            if not self._layout.done.is_set():
                await self._layout.done.wait()
            return
        self._layout = pending = Pending()
        try:
            if self.fetcher.cache.disk is not None:
                terms = await trio.to_thread.run_sync(self._read, limiter=self.fetcher.cpu)
                for t in terms:
                    self._add(t, insort=False)
                self._starts = sorted(self._chunks)
                self.fetcher.stats.layouts_loaded += bool(terms)
        except BaseException:
            self._layout = None
            raise
        finally:
            pending.done.set()

    def _read(self) -> list[LayoutTerm]:
        """(worker thread) The stored layout, [] when absent; a damaged one is dropped (relearned)."""
        disk = self.fetcher.cache.disk
        assert disk is not None
        data = disk.get_layout(self.file_hash)
        if data is None:
            return []
        try:
            return decode_layout(data, self.file_hash, self.size)
        except FormatError as exc:
            log.warning("layout of file %s is damaged (%s); dropping it", self.file_hash, exc)
            self.fetcher.cache.stats.disk_corrupt += 1
            disk.drop_layout(self.file_hash)
            return []

    def _save_soon(self) -> None:
        """Write the learned terms back (mount only): one save at a time, coalescing what is learned meanwhile."""
        self._dirty = True
        if not self._saving and self.fetcher.nursery is not None and self.fetcher.cache.disk is not None:
            self._saving = True
            self.fetcher.submit_soon(self._next_job)

    def _next_job(self) -> Callable[[], None] | None:
        disk = self.fetcher.cache.disk
        if not self._dirty or disk is None:
            self._saving = False
            return None
        self._dirty = False
        terms = list(self._terms.values())
        return lambda: disk.update_layout(self.file_hash, lambda old: merge_into(old, self.file_hash, self.size, terms))
