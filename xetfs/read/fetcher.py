"""The shared fetch machinery of the read path: xorb byte ranges -> decoded, verified chunks in the cache
(docs/architecture.md, "The read path"; docs/protocol.md, "Xorbs" and "Reconstruction").

A ``Fetcher`` is shared by every ``FileReader`` of a mount. ``start(fetch range, terms)`` returns the fetch
of that range: the running one of the same byte range, else a join of running fetches when they (and the
memory tier) hold every chunk of it (running fetches are also keyed by chunk), else a new one. No lock is held
across a network await, so any number of readers proceed in parallel. A fetch is received in pieces
(``read.pieces``: one GET per fetch range, received ``piece_bytes`` at a time into two pooled buffers, so
while one piece arrives the previous one is decoded and hashed in a worker thread). Each term is then
verified (``core.reconstruction.verify_term``, with the hashes already computed); a mismatch is refetched
once, then raises ``IntegrityError`` (EIO).
Verified chunks go to the memory tier with their chunk hashes (snapshot download reuses them: ``read.assembly``),
waiters are released, and the chunks go on to the disk tier with their chunk hashes as checksums (hashed once)
through one writer task (``submit`` queues any other disk job -- a file layout -- behind it, so ``drain`` at
unmount flushes both). Disk-tier loads are single-flight too (``cached_chunks_any_tier``).

Memory: the daemon's RSS is the memory tier plus a fixed overhead independent of file size:
``max_inflight_bytes`` of decoded chunks not yet handed to the disk writer (a fetch holds its byte budget
until the writer takes its chunks), ``2 x max_parallel_fetches`` piece buffers (reused, never freed), the
one range the disk writer is writing, and the interpreter. ``tune_allocator`` keeps glibc from returning
and re-faulting those buffers. Every fetch is bounded by ``fetch_timeout_s``; the CAS client retries by
classification underneath.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.core.params import DEFAULT_XORB, XorbParams
from xetfs.core.reconstruction import FetchRange, ReconstructionTerm, verify_term
from xetfs.errors import FormatError, IntegrityError, TransientError
from xetfs.read.cache import ChunkCache, ChunkKey
from xetfs.read.flight import ByteBudget, FetchCancelled, Pending, StreamLead, maybe_thread, tune_allocator
from xetfs.read.pieces import PieceReceiver
from xetfs.read.source import ChunkSource, FileCounters, ReadStats

__all__ = ["DiskJob", "FetchCancelled", "Fetcher", "Pending", "ReadStats", "tune_allocator"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024

DISK_LOADERS = 2                 # disk-tier loads in worker threads at once
DiskJob = Callable[[], None]   # blocking disk-tier work, run by the writer task in a worker thread


@dataclass(frozen=True, slots=True)
class _Flight:
    """A running fetch, as seen from each of its chunks."""

    fr: FetchRange
    pending: Pending


class Fetcher:
    """Shared by every reader of a mount: the CAS client, the chunk cache, the in-flight fetch table."""

    def __init__(self, cas: ChunkSource, cache: ChunkCache | None = None, *, nursery: trio.Nursery | None = None,
                 max_parallel_fetches: int = 8, fetch_timeout_s: float = 60.0,
                 params: XorbParams = DEFAULT_XORB, max_inflight_bytes: int = 96 * MiB,
                 piece_bytes: int = 4 * MiB) -> None:
        self.cas = cas
        self.cache = cache if cache is not None else ChunkCache(memory_bytes=256 * MiB)
        self.nursery = nursery
        self.fetch_timeout_s = fetch_timeout_s
        self.params = params
        self.stats = ReadStats()
        self.cpu = trio.CapacityLimiter(2)
        # Disk-tier loads: two at a time, one per core. The checksum (blake3) releases the GIL, so one load's
        # hashing overlaps the other's preads (docs/architecture.md, "Performance").
        self.disk = trio.CapacityLimiter(DISK_LOADERS)
        self._net = trio.CapacityLimiter(max_parallel_fetches)
        self._budget = ByteBudget(max_inflight_bytes)   # bounds the RSS of fetch buffers + decoded chunks
        self.streams = StreamLead(self.cache.memory.lead_bytes)   # whole-file streams' lead (FileReader)
        self._inflight: dict[tuple[bytes, int, int], Pending] = {}   # running fetches by byte range ...
        self._flights: dict[ChunkKey, _Flight] = {}                  # ... and by chunk
        self.pieces = PieceReceiver(cas, self.stats, self.cpu, params, piece_bytes,
                                    max_pooled_buffers=2 * max_parallel_fetches)   # two per running fetch
        self._disk_loads: dict[tuple[bytes, int, int], Pending] = {}   # single-flight disk-tier loads
        # Disk-tier writes leave the read's critical path: a writer task drains a bounded queue.
        self._disk_queue: trio.MemorySendChannel[DiskJob] | None = None
        self._writer_done = trio.Event()
        self._disk_senders = 0   # tasks waiting to hand a job to the writer (drain lets them finish)
        if nursery is not None:   # the mount daemon (a long-lived reader process)
            tune_allocator()
        if nursery is not None and self.cache.disk is not None:
            self._disk_queue, receive = trio.open_memory_channel(0)
            nursery.start_soon(self._disk_writer, receive)
        else:
            self._writer_done.set()

    async def _disk_writer(self, receive: trio.MemoryReceiveChannel[DiskJob]) -> None:
        try:
            async for job in receive:
                await trio.to_thread.run_sync(job)
        finally:
            self._writer_done.set()

    async def submit(self, job: DiskJob, size_bytes: int = 0) -> None:
        """Run blocking disk-tier work off the read's critical path: queued to the writer task (returns once
        the writer took it), or run now (in a thread when large) without a background nursery. After
        ``drain`` closed the queue the job is dropped (the disk tier is a cache)."""
        if self._disk_queue is None:
            await maybe_thread(job, size_bytes, self.cpu)
            return
        self._disk_senders += 1
        try:
            await self._disk_queue.send(job)
        except trio.ClosedResourceError:
            log.debug("disk job dropped: the writer is closed")
        finally:
            self._disk_senders -= 1

    def submit_soon(self, next_job: Callable[[], DiskJob | None]) -> None:
        """From a background task: submit ``next_job()`` until it returns None (so a producer can coalesce
        what piles up while the writer is busy). ``drain`` waits for it from now on."""
        assert self.nursery is not None
        self._disk_senders += 1
        self.nursery.start_soon(self._submit_loop, next_job)

    async def _submit_loop(self, next_job: Callable[[], DiskJob | None]) -> None:
        try:
            while (job := next_job()) is not None:
                await self.submit(job)
        finally:
            self._disk_senders -= 1

    async def drain(self, timeout_s: float = 30.0) -> None:
        """At unmount: let queued disk-cache writes finish (so a remount finds them), within a bound."""
        with trio.move_on_after(timeout_s):
            while self._disk_senders:
                await trio.sleep(0.01)
        if self._disk_queue is not None:
            await self._disk_queue.aclose()
        with trio.move_on_after(timeout_s):
            await self._writer_done.wait()

    def cached_chunks(self, fr: FetchRange) -> list[bytes] | None:
        """The chunks of ``fr`` when all are in the memory tier."""
        out = []
        for i in range(fr.chunk_start, fr.chunk_end):
            data = self.cache.get_memory(self.cache.key(fr.xorb_hash, i))
            if data is None:
                return None
            out.append(data)
        return out

    async def cached_chunks_any_tier(self, fr: FetchRange) -> list[bytes] | None:
        """The chunks of ``fr`` from memory, else disk (one load per range at a time: concurrent callers
        -- a read and the readahead -- share it instead of reading the same entry twice)."""
        found = self.cached_chunks(fr)
        if found is not None or self.cache.disk is None:
            return found
        key = (bytes(fr.xorb_hash), fr.chunk_start, fr.chunk_end)
        pending = self._disk_loads.get(key)
        if pending is None:
            pending = self._disk_loads[key] = Pending()
            try:
                pending.value = await trio.to_thread.run_sync(self._load_disk, fr, limiter=self.disk)
            except BaseException as exc:
                pending.error = exc
                raise
            finally:
                del self._disk_loads[key]
                pending.done.set()
            return cast("list[bytes] | None", pending.value)
        await pending.done.wait()
        return cast("list[bytes] | None", pending.value) if pending.error is None else self.cached_chunks(fr)

    def _load_disk(self, fr: FetchRange) -> list[bytes] | None:
        keys = [self.cache.key(fr.xorb_hash, i) for i in range(fr.chunk_start, fr.chunk_end)]
        have: dict[ChunkKey, bytes] = {}
        for k in keys:
            data = self.cache.get_memory(k)
            if data is not None:
                have[k] = data
        missing = [k for k in keys if k not in have]
        have.update(self.cache.get_many_disk(missing))
        return [have[k] for k in keys] if len(have) == len(keys) else None

    def start(self, fr: FetchRange, terms: Sequence[ReconstructionTerm], nursery: trio.Nursery,
              owner: FileCounters | None = None) -> Pending:
        """The fetch of ``fr``: the running fetch of the same range; else, when the memory tier holds every
        chunk, those chunks; else, when running fetches (and the memory tier) hold every chunk of it, a join of
        them (nothing is fetched twice); else a new fetch."""
        key = (bytes(fr.xorb_hash), fr.byte_start, fr.byte_end)
        pending = self._inflight.get(key)
        if pending is not None:
            return pending
        # A caller looks in the cache tiers before it starts a fetch, but that look awaits (a disk load in a
        # thread): a fetch of these chunks may have finished meanwhile. Looking again here, with no await
        # between the look and the start, keeps what is fetched independent of that timing.
        cached = self.cached_chunks(fr)
        if cached is not None:
            pending = Pending()
            pending.value = cached
            pending.done.set()
            return pending
        holders = self._holders(fr)
        if holders is not None:
            pending = Pending()
            self.stats.fetches_joined += 1
            nursery.start_soon(self._join, fr, holders, pending)
            return pending
        pending = self._inflight[key] = Pending()
        flight = _Flight(fr, pending)
        for i in range(fr.chunk_start, fr.chunk_end):
            self._flights[(key[0], i)] = flight
        self.stats.pending_fetches += 1
        nursery.start_soon(self._run, key, fr, tuple(t for t in terms if fr.contains(t)), pending, owner)
        return pending

    def _holders(self, fr: FetchRange) -> list[_Flight] | None:
        """The running fetches that, with the memory tier, hold every chunk of ``fr``; None if any chunk is
        in neither (or none is running: the caller looked in the cache already)."""
        xorb = bytes(fr.xorb_hash)
        holders: list[_Flight] = []
        for i in range(fr.chunk_start, fr.chunk_end):
            flight = self._flights.get((xorb, i))
            if flight is None:
                if not self.cache.in_memory((xorb, i)):
                    return None
            elif not holders or holders[-1] is not flight:
                holders.append(flight)
        return holders or None

    async def _join(self, fr: FetchRange, holders: list[_Flight], pending: Pending) -> None:
        """Assemble ``fr`` from the fetches holding its chunks and the cache tiers (a chunk that was in memory
        may have moved to disk meanwhile). If a chunk is in none of them (a joined fetch failed), the waiter is
        told to start again (``FetchCancelled``)."""
        try:
            for holder in holders:
                await holder.pending.done.wait()
            found: dict[int, bytes] = {}
            xorb = bytes(fr.xorb_hash)
            for i in range(fr.chunk_start, fr.chunk_end):
                h = next((h for h in holders if h.fr.chunk_start <= i < h.fr.chunk_end and h.pending.error is None),
                         None)
                data = h.pending.value[i - h.fr.chunk_start] if h is not None else self.cache.get_memory((xorb, i))
                if data is not None:
                    found[i] = data
            missing = [(xorb, i) for i in range(fr.chunk_start, fr.chunk_end) if i not in found]
            if missing and self.cache.disk is not None:
                hits = await trio.to_thread.run_sync(self.cache.get_many_disk, missing, limiter=self.disk)
                found.update((i, data) for (_, i), data in hits.items())
            if len(found) != fr.chunk_end - fr.chunk_start:
                raise FetchCancelled("a joined fetch failed")
            pending.value = [found[i] for i in range(fr.chunk_start, fr.chunk_end)]
        except BaseException as exc:
            pending.error = exc if isinstance(exc, Exception) else FetchCancelled("join cancelled")
            if not isinstance(exc, Exception):
                raise
        finally:
            pending.done.set()

    async def _run(self, key: tuple[bytes, int, int], fr: FetchRange, terms: tuple[ReconstructionTerm, ...],
                   pending: Pending, owner: FileCounters | None) -> None:
        try:
            await self._budget.acquire(fr.size_bytes)
            try:
                with trio.fail_after(self.fetch_timeout_s):
                    items, checked = await self._fetch_verified(fr, terms)
                if owner is not None:
                    owner.bytes_fetched += fr.size_bytes
                pending.value = [c for _, c in items]
                self._finish(key, fr, pending)    # waiters go on now; the disk write follows, still in budget
                await self._store_disk(fr, items, checked)
            finally:
                self._budget.release(fr.size_bytes)
        except trio.TooSlowError:
            pending.error = TransientError(f"fetch of xorb {fr.xorb_hash} timed out after {self.fetch_timeout_s}s")
        except Exception as exc:
            if not pending.done.is_set():
                pending.error = exc
            else:
                log.warning("disk cache write of xorb %s failed: %s", fr.xorb_hash, exc)
        except BaseException:   # cancelled: waiters re-check and start their own fetch
            if not pending.done.is_set():
                pending.error = FetchCancelled("fetch cancelled")
            raise
        finally:
            self._finish(key, fr, pending)

    def _finish(self, key: tuple[bytes, int, int], fr: FetchRange, pending: Pending) -> None:
        if not pending.done.is_set():
            del self._inflight[key]
            for i in range(fr.chunk_start, fr.chunk_end):
                mine = self._flights.get((key[0], i))
                if mine is not None and mine.pending is pending:
                    del self._flights[(key[0], i)]
            self.stats.pending_fetches -= 1
            pending.done.set()

    async def _store_disk(self, fr: FetchRange, items: list[tuple[ChunkKey, bytes]],
                          checked: Sequence[bytes] | None) -> None:
        """Hand verified chunks to the disk writer. The queue is unbuffered and the caller holds the fetch's
        byte budget until the writer takes them, so chunks waiting for the disk are bounded memory too."""
        if self.cache.disk is not None:
            await self.submit(functools.partial(self.cache.put_disk, items, checked), fr.size_bytes)

    async def _fetch_verified(self, fr: FetchRange, terms: Sequence[ReconstructionTerm]
                              ) -> tuple[list[tuple[ChunkKey, bytes]], Sequence[bytes] | None]:
        """Verified chunks of ``fr`` (now in the memory tier) and, when every term had a verification hash,
        their chunk hashes (reused as disk checksums: nothing is hashed twice)."""
        for attempt in range(2):
            try:
                async with self._net:
                    started = trio.current_time()
                    chunks, hashes = await self.pieces.fetch(fr)
                    self.stats.fetch_seconds.observe(trio.current_time() - started)
                self._verify(fr, terms, chunks, hashes)
            except (IntegrityError, FormatError) as exc:
                self.stats.integrity_failures += 1
                log.error("integrity failure on xorb %s bytes %d-%d (attempt %d): %s",
                          fr.xorb_hash, fr.byte_start, fr.byte_end, attempt + 1, exc)
                if attempt:
                    raise IntegrityError(f"xorb {fr.xorb_hash} bytes {fr.byte_start}-{fr.byte_end} "
                                         f"failed verification twice: {exc}") from exc
                self.stats.refetches += 1
                continue
            items = [(self.cache.key(fr.xorb_hash, fr.chunk_start + i), c) for i, c in enumerate(chunks)]
            self.cache.put_many(items, disk=False, hashes=hashes)   # hashes of these objects (read.assembly)
            return items, (hashes if all(t.verification_hash is not None for t in terms) else None)
        raise AssertionError("unreachable")

    def _verify(self, fr: FetchRange, terms: Sequence[ReconstructionTerm], chunks: Sequence[bytes],
                hashes: Sequence[MerkleHash]) -> None:
        if len(chunks) != fr.chunk_end - fr.chunk_start:
            raise FormatError(f"fetch range of {fr.chunk_end - fr.chunk_start} chunks decoded to {len(chunks)}")
        for t in terms:
            lo, hi = t.chunk_start - fr.chunk_start, t.chunk_end - fr.chunk_start
            verify_term(t, chunks[lo:hi], hashes[lo:hi])
