"""One whole Xet file into a local file, for ``xetfs download`` (docs/architecture.md, "Downloads").

A download reads every byte once, in any order, so it needs none of the mount's read path (windows, caches,
readahead). The file's reconstruction is asked for once; each fetch range is one GET into a buffer of its
own while it runs (``BufferPool``: buffers are reused, never zeroed again); a worker thread then decodes its
records (an uncompressed record is a view into the buffer, no copy), hashes each chunk and writes each term
that uses the range at the term's place in the file with one ``pwritev``. BLAKE3 and ``pwritev`` release the
GIL, so the two cores receive, hash and write together. Ranges run in parallel, across the files of a download
too, within ``Budget``: at most ``max_ranges`` GETs and ``max_bytes`` of buffers held, in use or idle (one
range larger than that runs alone).

Verification (docs/protocol.md, "Hashes"): each term's chunks must have its size and, when the answer gives
one, its verification hash; the file's Xet hash over the hashes of the chunks written must be the one the
listing names, else ``IntegrityError`` and the caller removes the file. A data URL that expired (or whose node
died) is re-asked for with a new reconstruction, ``URL_REFRESHES`` times per range.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from xetfs.client.cas import CasClient, FetchUrlExpired
from xetfs.core.hashing import MerkleHash, chunk_hash, file_hash
from xetfs.core.params import DEFAULT_XORB, XorbParams
from xetfs.core.reconstruction import FetchRange, ReconstructionTerm, plan_read, verify_term
from xetfs.core.xorb import CHUNK_HEADER_BYTES, parse_chunk_records, record_view
from xetfs.errors import FormatError, IntegrityError, RemoteError
from xetfs.osutil.writeback import start_writeback
from xetfs.read.flight import MiB

URL_REFRESHES = 3
BUFFER_ROUND_BYTES = MiB          # buffer sizes are rounded up to this, so ranges of similar size share them
IOV_MAX = 1024                    # iovecs per pwritev (Linux's UIO_MAXIOV)


class BufferPool:
    """The fetch-range buffers of a download, reused. A fresh ``bytearray`` is zeroed and paged in: one per range
    on the trio thread cost about a tenth of a download's samples (py-spy), so buffers are reused and a new one
    is made in a worker thread. Every buffer the pool holds counts against ``limit_bytes``, in use or idle: an
    idle buffer too small for a request is freed to make room, and one request larger than the limit runs
    alone."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._idle: list[bytearray] = []
        self._changed = trio.Event()

    async def take(self, n: int) -> bytearray:
        """A buffer of at least ``n`` bytes (its first ``n`` are the caller's to fill); ``give`` it back."""
        while True:
            fits = [i for i, b in enumerate(self._idle) if len(b) >= n]
            if fits:
                return self._idle.pop(min(fits, key=lambda i: len(self._idle[i])))
            size = n + -n % BUFFER_ROUND_BYTES
            while self._idle and self.held_bytes + size > self.limit_bytes:
                self.held_bytes -= len(self._idle.pop(0))
            if not self.held_bytes or self.held_bytes + size <= self.limit_bytes:
                self.held_bytes += size
                return await trio.to_thread.run_sync(bytearray, size)   # zeroed off the trio thread
            await self._changed.wait()

    def give(self, buf: bytearray) -> None:
        """``buf`` is free again (synchronous: safe in a ``finally`` of a cancelled task)."""
        self._idle.append(buf)
        self._changed.set()
        self._changed = trio.Event()


@dataclass
class Budget:
    """What every file of one download shares: GETs at once, buffer bytes at once, decoding threads."""
    max_ranges: int = 8
    max_bytes: int = 256 * MiB
    threads: int = 2
    durable: bool = False         # the files are fsynced before their rename: start their writeback early
    params: XorbParams = DEFAULT_XORB
    gets: trio.CapacityLimiter = field(init=False)
    buffers: BufferPool = field(init=False)
    cpu: trio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.gets = trio.CapacityLimiter(self.max_ranges)
        self.buffers = BufferPool(self.max_bytes)
        self.cpu = trio.CapacityLimiter(self.threads)

    @property
    def max_range_bytes(self) -> int:
        """The largest fetch range a well-formed answer has: one whole serialized xorb, its record headers
        plus payloads (a record's payload is at most ``max_chunk_compressed``, twice the largest chunk)."""
        return self.params.max_xorb_chunks * CHUNK_HEADER_BYTES + self.params.max_xorb_bytes * 2


@dataclass(frozen=True, slots=True)
class Place:
    """One term of the file: its index, its first byte in the file, its chunks within its fetch range."""
    term: int
    offset: int
    first: int
    stop: int


async def download_xet_file(cas: CasClient, name: str, file_hash_: MerkleHash, size: int, fd: int,
                            budget: Budget, progress: Callable[[int], object] = lambda n: None) -> None:
    """Write the ``size`` bytes of the Xet file ``file_hash_`` into ``fd`` (a new file; written with
    ``pwritev``, so its offset is left alone); ``IntegrityError`` unless they are the file the listing names."""
    if size == 0:        # no chunks, nothing to ask for: the empty file's hash is the zero hash
        _check(name, size, file_hash_, [])
        return
    r = await cas.reconstruction(file_hash_)
    if r.offset_into_first_range != 0 or r.size_bytes != size:
        raise RemoteError(f"{name}: the reconstruction covers {r.size_bytes} bytes "
                          f"(from {r.offset_into_first_range}), the listing {size}")
    plan = plan_read(r)
    places: dict[FetchRange, list[Place]] = {fr: [] for fr in plan.fetches}
    offset = 0
    for i, (term, fr) in enumerate(zip(plan.terms, plan.term_fetch)):
        places[fr].append(Place(i, offset, term.chunk_start - fr.chunk_start, term.chunk_end - fr.chunk_start))
        offset += term.unpacked_bytes
    leaves: list[list[tuple[bytes, int]]] = [[] for _ in plan.terms]
    async with trio.open_nursery() as nursery:
        for fr, at in places.items():
            nursery.start_soon(_one_range, cas, file_hash_, fr, at, plan.terms, fd, budget, leaves, progress)
    await trio.to_thread.run_sync(_check, name, size, file_hash_, [leaf for term in leaves for leaf in term],
                                  limiter=budget.cpu)


def _check(name: str, size: int, expected: MerkleHash, leaves: list[tuple[bytes, int]]) -> None:
    """IntegrityError unless the chunks written, (chunk hash, size) in file order, are the listed file."""
    if sum(n for _, n in leaves) != size or file_hash(leaves) != expected:
        raise IntegrityError(f"{name}: the downloaded bytes are not the listed file "
                             f"({size} bytes, Xet hash {expected})")


async def _one_range(cas: CasClient, file_hash_: MerkleHash, fr: FetchRange, places: list[Place],
                     terms: Sequence[ReconstructionTerm], fd: int, budget: Budget,
                     leaves: list[list[tuple[bytes, int]]], progress: Callable[[int], object]) -> None:
    if fr.size_bytes > budget.max_range_bytes:
        raise RemoteError(f"fetch range of xorb {fr.xorb_hash}: {fr.size_bytes} bytes, more than a xorb holds")
    buf = await budget.buffers.take(fr.size_bytes)
    try:
        view = memoryview(buf)[:fr.size_bytes]
        async with budget.gets:
            await _fetch(cas, file_hash_, fr, view)
        written = await trio.to_thread.run_sync(_write_terms, fd, view, fr, places, terms, budget,
                                                limiter=budget.cpu)
    finally:
        budget.buffers.give(buf)
    for place, hashes in zip(places, written):
        leaves[place.term] = hashes
        progress(terms[place.term].unpacked_bytes)


async def _fetch(cas: CasClient, file_hash_: MerkleHash, fr: FetchRange, buf: memoryview) -> None:
    """One GET of ``fr`` into ``buf``; an expired URL is replaced by the one a new reconstruction gives."""
    for refreshes in range(URL_REFRESHES + 1):
        try:
            await cas.fetch_range_into(fr, buf)
            return
        except FetchUrlExpired:
            if refreshes == URL_REFRESHES:
                raise
        fresh = await cas.reconstruction(file_hash_)
        same = [f for f in fresh.fetch.get(fr.xorb_hash, ())
                if (f.chunk_start, f.chunk_end, f.byte_start, f.byte_end) == (fr.chunk_start, fr.chunk_end,
                                                                                fr.byte_start, fr.byte_end)]
        if not same:
            raise RemoteError(f"a new reconstruction no longer has bytes {fr.byte_start}-{fr.byte_end} "
                              f"of xorb {fr.xorb_hash}")
        fr = same[0]


def _write_terms(fd: int, view: memoryview, fr: FetchRange, places: list[Place],
                 terms: Sequence[ReconstructionTerm], budget: Budget) -> list[list[tuple[bytes, int]]]:
    """Decode ``view`` (the bytes of ``fr``), write each placed term; each term's (chunk hash, size) leaves."""
    records = parse_chunk_records(view, budget.params)
    if len(records) != fr.chunk_end - fr.chunk_start:
        raise FormatError(f"fetch range of {fr.chunk_end - fr.chunk_start} chunks decoded to {len(records)}")
    views = [record_view(view, r) for r in records]
    hashes = [chunk_hash(v) for v in views]   # a fetch range holds only chunks some term uses
    out: list[list[tuple[bytes, int]]] = []
    for p in places:
        chunks, term_hashes = views[p.first:p.stop], hashes[p.first:p.stop]
        verify_term(terms[p.term], chunks, term_hashes)
        pwrite_all(fd, chunks, p.offset)
        if budget.durable:
            start_writeback(fd, p.offset, terms[p.term].unpacked_bytes)
        leaves: list[tuple[bytes, int]] = [(h, len(c)) for h, c in zip(term_hashes, chunks)]
        out.append(leaves)
    return out


def pwrite_all(fd: int, parts: Sequence[bytes | memoryview], offset: int) -> None:
    """Write ``parts`` back to back at ``offset``: ``pwritev`` of up to ``IOV_MAX`` of them at a time, a short
    write continued where it stopped."""
    views = [memoryview(p) for p in parts if len(p)]
    i = 0
    while i < len(views):
        n = os.pwritev(fd, views[i:i + IOV_MAX], offset)
        if n <= 0:
            raise OSError(errno.EIO, f"pwritev wrote nothing at offset {offset}")
        offset += n
        while n and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if n:
            views[i] = views[i][n:]
