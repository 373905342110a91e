"""The read path: file window -> reconstruction -> chunk cache / xorb range fetches -> verified bytes
(shared/xet-protocol.md §7.3; design.md §2.8, §2.9, §3).

``FileReader.read(offset, size)`` loops over the window:

1. **Known layout.** Every chunk whose file offset and size the reader has learned (``_layout``) is looked up
   in the ``ChunkCache`` (memory, then disk in a worker thread). Consecutive hits are served with no network
   round trip at all, not even a reconstruction query.
2. **Reconstruction.** At the first byte not served from cache, the reader needs a reconstruction covering it.
   Reconstructions are kept per reader for ``reconstruction_ttl_s`` (below the URL expiry) in a small table of
   query windows; an in-flight query covering the position is waited for (single-flight), never repeated.
   A new query asks ``Range = [pos, fetch_end)`` where ``fetch_end`` is the caller's readahead hint.
3. **Plan and fetch.** ``core.reconstruction.plan_read`` picks the terms and fetch ranges; a fetch range whose
   chunks are all cached costs nothing; the others go through the shared ``Fetcher``: an in-flight table of
   ``trio.Event``s keyed by (xorb, byte range) coalesces identical fetches, no lock is held across a network
   await, so any number of readers of one file proceed in parallel. A fetch runs in pieces of ``piece_bytes``
   received (``CasClient.fetch_range_into``: raw-socket range GETs, ``xetfs.cas.rangeget``) into two pooled
   buffers, so while one piece arrives the previous one's chunk records are decoded and hashed in a worker
   thread. Each term is then verified against its ``verification_hash`` (xet-protocol §7.3); a mismatch is
   refetched once, then raises ``IntegrityError`` (EIO). Verified chunks go to the memory tier, waiters are
   released, and the chunks go on to the disk tier with their chunk hashes as checksums (hashed once).
4. **Readahead.** With a background nursery (the mount's), fetch ranges past the requested bytes and the
   window ``[end, fetch_end)`` are fetched in the background; their chunks land in the cache.

Memory (design.md §4): the daemon's RSS is the memory tier plus a fixed overhead independent of file size:
``max_inflight_bytes`` of decoded chunks not yet handed to the disk writer (a fetch holds its byte budget
until the writer takes its chunks), ``2 x max_parallel_fetches`` piece buffers (reused, never freed), the
one range the disk writer is writing, and the interpreter. ``tune_allocator`` keeps glibc from returning
and re-faulting those buffers.

Every wait is bounded: the whole read by ``read_timeout_s`` (-> ``TransientError``), each fetch by
``fetch_timeout_s``; the CAS client retries by classification underneath. A fetch answered 403 (an expired
data URL) drops the reader's reconstructions and is retried once with fresh ones.

``Readahead`` (per open handle) grows a sequential window from ``min_bytes``, doubling up to ``max_bytes``;
random reads fetch what is asked (the server aligns to chunks), extended to the end of the safetensors
tensor they start in (``safetensors_boundaries``).
"""
from __future__ import annotations

import bisect
import ctypes
import dataclasses
import functools
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from xetfs.cache import ChunkCache, ChunkKey
from xetfs.cas.tasks import single_error
from xetfs.core.hashing import MerkleHash, chunk_hash, verification_hash
from xetfs.core.reconstruction import FetchRange, ReadPlan, Reconstruction, ReconstructionTerm, plan_read
from xetfs.core.xorb import CHUNK_HEADER_BYTES, decode_record, parse_chunk_records
from xetfs.core.xorb import _parse_header as parse_chunk_header
from xetfs.errors import Forbidden, FormatError, IntegrityError, TransientError, XetError
from xetfs.params import DEFAULT_XORB, XorbParams

log = logging.getLogger(__name__)

MiB = 1024 * 1024
THREAD_MIN_BYTES = 64 * 1024
PREFETCH_MIN_BYTES = 16 * MiB


@dataclass(slots=True)
class ReadStats:
    bytes_read: int = 0              # returned to callers (applications)
    bytes_fetched: int = 0           # xorb bytes received from the network
    fetches: int = 0
    reconstructions: int = 0
    refetches: int = 0               # integrity or expired-URL retries
    integrity_failures: int = 0
    read_errors: int = 0
    pending_fetches: int = 0
    pending_reconstructions: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


_DiskItems = tuple[list[tuple[ChunkKey, bytes]], Sequence[bytes] | None]   # chunks, their checksums


class FetchCancelled(TransientError):
    """The task running a fetch was cancelled (its nursery closed): a waiter starts the fetch again."""


class _Pending:
    """One in-flight operation: waiters ``await done.wait()`` then read ``value`` or ``error``."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def tune_allocator(mmap_threshold_bytes: int = 64 * MiB, trim_threshold_bytes: int = 128 * MiB) -> bool:
    """glibc malloc settings for the mount daemon (design.md §4): a fixed mmap threshold so fetch buffers
    and 1 MiB reply buffers come from the heap and are reused instead of being mmapped, page-faulted and
    unmapped each time; a trim threshold so freed memory is kept for reuse; one arena, so chunks decoded in
    worker threads reuse the memory the cache evicted. False when the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    return all(mallopt(opt, value) == 1 for opt, value in ((m_mmap_threshold, mmap_threshold_bytes),
                                                           (m_trim_threshold, trim_threshold_bytes),
                                                           (m_arena_max, 1)))


async def _concurrently(*fns: Callable[[], Awaitable[Any]] | None) -> None:
    """Run the given async callables concurrently; re-raise the first failure as itself (not a group)."""
    failures: list[Exception] = []

    async def run(fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            await fn()
        except Exception as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for fn in fns:
            if fn is not None:
                nursery.start_soon(run, fn)
    if failures:
        raise failures[0]


async def _maybe_thread(fn: Any, size: int, limiter: trio.CapacityLimiter, *args: Any) -> Any:
    if size < THREAD_MIN_BYTES:
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter)


class _ByteBudget:
    """At most ``limit_bytes`` of fetch buffers (and their decoded copies) in flight; one oversized fetch may
    run alone. ``release`` is synchronous, so it is safe in a ``finally`` of a cancelled task."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._changed = trio.Event()

    async def acquire(self, n: int) -> None:
        while self.used_bytes and self.used_bytes + n > self.limit_bytes:
            await self._changed.wait()
        self.used_bytes += n

    def release(self, n: int) -> None:
        self.used_bytes -= n
        self._changed.set()
        self._changed = trio.Event()


class Fetcher:
    """Shared by every reader of a mount: the CAS client, the chunk cache, the in-flight fetch table."""

    def __init__(self, cas: Any, cache: ChunkCache | None = None, *, nursery: trio.Nursery | None = None,
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
        self._net = trio.CapacityLimiter(max_parallel_fetches)
        self._budget = _ByteBudget(max_inflight_bytes)   # bounds the RSS of fetch buffers + decoded chunks
        self._inflight: dict[tuple[bytes, int, int], _Pending] = {}
        self.max_record_bytes = CHUNK_HEADER_BYTES + params.max_chunk_compressed
        self.piece_bytes = max(piece_bytes, self.max_record_bytes)
        self.max_pooled_buffers = 2 * max_parallel_fetches   # two per running fetch: a fixed pool
        self._buffers: list[bytearray] = []
        self._disk_loads: dict[tuple[bytes, int, int], _Pending] = {}   # single-flight disk-tier loads
        # Disk-tier writes leave the read's critical path: a writer task drains a bounded queue.
        self._disk_queue: trio.MemorySendChannel[_DiskItems] | None = None
        self._writer_done = trio.Event()
        if nursery is not None:   # the mount daemon (a long-lived reader process)
            tune_allocator()
        if nursery is not None and self.cache.disk is not None:
            self._disk_queue, receive = trio.open_memory_channel(0)
            nursery.start_soon(self._disk_writer, receive)
        else:
            self._writer_done.set()

    async def _disk_writer(self, receive: trio.MemoryReceiveChannel[_DiskItems]) -> None:
        try:
            async for items in receive:
                await trio.to_thread.run_sync(self._write_disk, items)
        finally:
            self._writer_done.set()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """At unmount: let queued disk-cache writes finish (so a remount finds them), within a bound."""
        if self._disk_queue is not None:
            await self._disk_queue.aclose()
        with trio.move_on_after(timeout_s):
            await self._writer_done.wait()

    def _write_disk(self, job: _DiskItems) -> None:
        self.cache.put_disk(*job)

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
            pending = self._disk_loads[key] = _Pending()
            try:
                pending.value = await trio.to_thread.run_sync(self._load_disk, fr, limiter=self.cpu)
            except BaseException as exc:
                pending.error = exc
                raise
            finally:
                del self._disk_loads[key]
                pending.done.set()
            return pending.value
        await pending.done.wait()
        return pending.value if pending.error is None else self.cached_chunks(fr)

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

    def start(self, fr: FetchRange, terms: Sequence[ReconstructionTerm], nursery: trio.Nursery) -> _Pending:
        """The in-flight fetch of ``fr`` (started now unless an identical one is running)."""
        key = (bytes(fr.xorb_hash), fr.byte_start, fr.byte_end)
        pending = self._inflight.get(key)
        if pending is None:
            pending = self._inflight[key] = _Pending()
            self.stats.pending_fetches += 1
            nursery.start_soon(self._run, key, fr, tuple(t for t in terms if fr.contains(t)), pending)
        return pending

    async def _run(self, key: tuple[bytes, int, int], fr: FetchRange, terms: tuple[ReconstructionTerm, ...],
                   pending: _Pending) -> None:
        try:
            await self._budget.acquire(fr.size_bytes)
            try:
                with trio.fail_after(self.fetch_timeout_s):
                    items, checked = await self._fetch_verified(fr, terms)
                pending.value = [c for _, c in items]
                self._finish(key, pending)    # waiters go on now; the disk write follows, still in budget
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
            self._finish(key, pending)

    def _finish(self, key: tuple[bytes, int, int], pending: _Pending) -> None:
        if not pending.done.is_set():
            del self._inflight[key]
            self.stats.pending_fetches -= 1
            pending.done.set()

    async def _store_disk(self, fr: FetchRange, items: list[tuple[ChunkKey, bytes]],
                          checked: Sequence[bytes] | None) -> None:
        """Hand verified chunks to the disk writer. The queue is unbuffered and the caller holds the fetch's
        byte budget until the writer takes them, so chunks waiting for the disk are bounded memory too."""
        if self._disk_queue is not None:
            await self._disk_queue.send((items, checked))
        elif self.cache.disk is not None:
            await _maybe_thread(self._write_disk, fr.size_bytes, self.cpu, (items, checked))

    async def _fetch_verified(self, fr: FetchRange, terms: Sequence[ReconstructionTerm]
                              ) -> tuple[list[tuple[ChunkKey, bytes]], Sequence[bytes] | None]:
        """Verified chunks of ``fr`` (now in the memory tier) and, when every term had a verification hash,
        their chunk hashes (reused as disk checksums: nothing is hashed twice)."""
        for attempt in range(2):
            try:
                async with self._net:
                    chunks, hashes = await self._fetch_pieces(fr)
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
            self.cache.put_many(items, disk=False)
            return items, (hashes if all(t.verification_hash is not None for t in terms) else None)
        raise AssertionError("unreachable")

    async def _fetch_pieces(self, fr: FetchRange) -> tuple[list[bytes], list[MerkleHash]]:
        """Fetch ``fr`` in pieces of ``piece_bytes`` into two pooled buffers: while one piece is received,
        the complete chunk records of the previous one are decoded and hashed in a worker thread. The bytes
        of a record cut by a piece's end are copied in front of the next piece (each buffer keeps
        ``max_record_bytes`` of headroom for them). Returns chunks + chunk hashes, not yet verified."""
        chunks: list[bytes] = []
        hashes: list[MerkleHash] = []
        head = self.max_record_bytes
        bufs = [self._take_buffer(), self._take_buffer()]
        try:
            pos, end, i = fr.byte_start, fr.byte_end + 1, 0
            prev: memoryview | None = None          # the last piece (with its carried-in head), undecoded
            while True:
                buf = bufs[i % 2]
                n = min(self.piece_bytes, end - pos)
                consumed = [0]
                decode = None if prev is None else functools.partial(
                    self._decode_piece_async, prev, n == 0, chunks, hashes, consumed)
                fetch = None if n == 0 else functools.partial(
                    self.cas.fetch_range_into, dataclasses.replace(fr, byte_start=pos, byte_end=pos + n - 1),
                    memoryview(buf)[head:head + n])
                await _concurrently(decode, fetch)
                if n == 0:
                    break
                self.stats.bytes_fetched += n
                tail = memoryview(b"") if prev is None else prev[consumed[0]:]
                buf[head - len(tail):head] = tail
                prev = memoryview(buf)[head - len(tail):head + n]
                pos += n
                i += 1
            self.stats.fetches += 1
        finally:
            self._buffers.extend(bufs[:max(0, self.max_pooled_buffers - len(self._buffers))])
        return chunks, hashes

    def _take_buffer(self) -> bytearray:
        return self._buffers.pop() if self._buffers else bytearray(self.max_record_bytes + self.piece_bytes)

    async def _decode_piece_async(self, view: memoryview, final: bool, chunks: list[bytes],
                                  hashes: list[MerkleHash], consumed: list[int]) -> None:
        got, got_hashes, consumed[0] = await _maybe_thread(self._decode_piece, len(view), self.cpu, view, final)
        chunks.extend(got)
        hashes.extend(got_hashes)

    def _decode_piece(self, view: memoryview, final: bool) -> tuple[list[bytes], list[MerkleHash], int]:
        """Decode + hash the complete records of ``view``; a cut record at its end is left (unless final).
        A malformed record is told from a cut one by length: a cut one is shorter than any whole record."""
        if final:
            records = parse_chunk_records(view, self.params)
        else:
            records, off = [], 0
            while True:
                try:
                    record = parse_chunk_header(view, off, self.params)
                except FormatError:
                    if len(view) - off >= self.max_record_bytes:
                        raise
                    break
                records.append(record)
                off = record.end
        out = [decode_record(view, r) for r in records]
        return out, [chunk_hash(c) for c in out], records[-1].end if records else 0

    def _verify(self, fr: FetchRange, terms: Sequence[ReconstructionTerm], chunks: Sequence[bytes],
                hashes: Sequence[MerkleHash]) -> None:
        if len(chunks) != fr.chunk_end - fr.chunk_start:
            raise FormatError(f"fetch range of {fr.chunk_end - fr.chunk_start} chunks decoded to {len(chunks)}")
        for t in terms:
            lo, hi = t.chunk_start - fr.chunk_start, t.chunk_end - fr.chunk_start
            if sum(map(len, chunks[lo:hi])) != t.unpacked_bytes:
                raise IntegrityError(f"term {t.xorb_hash}[{t.chunk_start},{t.chunk_end}) has the wrong size")
            if t.verification_hash is not None and verification_hash(hashes[lo:hi]) != t.verification_hash:
                raise IntegrityError(f"term {t.xorb_hash}[{t.chunk_start},{t.chunk_end}) fails verification")


@dataclass(slots=True)
class _Window:
    """A reconstruction query ``[start, stop)`` and (once answered) its result."""

    start: int
    stop: int
    pending: _Pending
    born_s: float
    recon: Reconstruction | None = None


@dataclass(slots=True)
class _Chunk:
    xorb_hash: bytes
    index: int
    size: int


def _slice_chunks(chunks: Any, skip: int, size: int) -> bytes:
    """Bytes ``[skip, skip + size)`` of the concatenated ``chunks`` (short if they end first), copying only those."""
    parts: list[bytes | memoryview] = []
    at = 0
    for c in chunks:
        n = len(c)
        if at + n > skip:
            lo, hi = max(skip - at, 0), min(skip + size - at, n)
            parts.append(c if lo == 0 and hi == n else memoryview(c)[lo:hi])
        at += n
        if at >= skip + size:
            break
    if len(parts) == 1:
        return bytes(parts[0]) if isinstance(parts[0], memoryview) else parts[0]
    return b"".join(parts)


class FileReader:
    """Random-access reads of one Xet file (file hash + size), any number of concurrent callers."""

    def __init__(self, cas: Any, file_hash: MerkleHash, size: int, cache: ChunkCache | None = None, *,
                 fetcher: Fetcher | None = None, read_timeout_s: float = 120.0,
                 reconstruction_ttl_s: float = 300.0, max_windows: int = 64) -> None:
        self.file_hash = file_hash
        self.size = size
        self.fetcher = fetcher if fetcher is not None else Fetcher(cas, cache)
        self.cas = self.fetcher.cas
        self.cache = self.fetcher.cache
        self.read_timeout_s = read_timeout_s
        self.reconstruction_ttl_s = reconstruction_ttl_s
        self.max_windows = max_windows
        self._windows: list[_Window] = []
        self._starts: list[int] = []             # file offsets of known chunks, sorted
        self._chunks: dict[int, _Chunk] = {}     # file offset -> chunk
        self.boundaries: list[int] | None = None  # safetensors tensor boundaries, when known

    @property
    def stats(self) -> ReadStats:
        return self.fetcher.stats

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes:
        """Bytes ``[offset, offset + size)`` (short at EOF). ``fetch_end`` asks to read ahead up to there."""
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        try:
            with trio.fail_after(self.read_timeout_s):
                data = await self._read(offset, end, min(max(end, fetch_end or end), self.size))
        except trio.TooSlowError:
            self.stats.read_errors += 1
            raise TransientError(f"read of {end - offset} bytes at {offset} timed out "
                                 f"after {self.read_timeout_s}s") from None
        except XetError:
            self.stats.read_errors += 1
            raise
        self.stats.bytes_read += len(data)
        return data

    async def _read(self, offset: int, end: int, fetch_end: int) -> bytes:
        parts: list[bytes] = []
        pos = offset
        retried = False
        while pos < end:
            data = await self._from_cache(pos, end)
            if not data:
                try:
                    with single_error():   # the error itself, not the group of _fetch_plan's nursery
                        data = await self._from_network(pos, end, fetch_end)
                except Forbidden:
                    if retried:
                        raise
                    retried = True   # an expired data URL: fresh reconstructions, one more try
                    self.stats.refetches += 1
                    self._windows.clear()
                    continue
            parts.append(data)
            pos += len(data)
        self._prefetch(end, fetch_end)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- 1. known layout + cache ---------------------------------------------------------------------------

    def _known_run(self, pos: int, end: int) -> list[tuple[int, _Chunk]]:
        i = bisect.bisect_right(self._starts, pos) - 1
        run: list[tuple[int, _Chunk]] = []
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

    async def _from_cache(self, pos: int, end: int) -> bytes:
        run = self._known_run(pos, end)
        if not run:
            return b""
        datas: list[bytes] = []
        for i, (_, c) in enumerate(run):
            data = self.cache.get_memory((c.xorb_hash, c.index))
            if data is None:
                datas.extend(await self._disk_run([(c.xorb_hash, c.index) for _, c in run[i:]]))
                break
            datas.append(data)
        if not datas:
            return b""
        return _slice_chunks(datas, pos - run[0][0], end - pos)

    async def _disk_run(self, keys: list[ChunkKey]) -> list[bytes]:
        if self.cache.disk is None:
            return []
        hits = await trio.to_thread.run_sync(self.cache.get_many_disk, keys, limiter=self.fetcher.cpu)
        out = []
        for k in keys:
            if k not in hits:
                break
            out.append(hits[k])
        return out

    def _learn(self, file_offset: int, terms: Sequence[ReconstructionTerm], chunks: Sequence[Sequence[bytes]]) -> None:
        for term, datas in zip(terms, chunks):
            for i, data in enumerate(datas):
                if file_offset not in self._chunks:
                    bisect.insort(self._starts, file_offset)
                    self._chunks[file_offset] = _Chunk(bytes(term.xorb_hash), term.chunk_start + i, len(data))
                file_offset += len(data)

    # -- 2. reconstructions --------------------------------------------------------------------------------

    async def _window_at(self, pos: int, fetch_end: int) -> _Window:
        """A reconstruction whose query covers ``pos``: cached, in flight, or queried now."""
        while True:
            now = trio.current_time()
            self._windows = [w for w in self._windows
                             if w.pending.error is None and now - w.born_s < self.reconstruction_ttl_s]
            for w in self._windows:
                if w.start <= pos < w.stop:
                    break
            else:
                w = self._new_window(pos, fetch_end)
                await self._query(w)
            await w.pending.done.wait()
            if w.pending.error is None:
                return w
            if isinstance(w.pending.error, Exception):
                raise w.pending.error
            # the querying task was cancelled (its caller timed out): query again ourselves

    def _new_window(self, pos: int, fetch_end: int) -> _Window:
        w = _Window(pos, max(fetch_end, pos + 1), _Pending(), trio.current_time())
        self._windows.append(w)
        if len(self._windows) > self.max_windows:
            del self._windows[0]
        return w

    async def _query(self, w: _Window) -> None:
        self.stats.pending_reconstructions += 1
        try:
            w.recon = w.pending.value = await self.cas.reconstruction(self.file_hash, (w.start, w.stop))
            self.stats.reconstructions += 1
        except BaseException as exc:
            w.pending.error = exc
            if isinstance(exc, Exception):
                return
            raise
        finally:
            self.stats.pending_reconstructions -= 1
            w.pending.done.set()

    # -- 3. plan, fetch, assemble --------------------------------------------------------------------------

    async def _from_network(self, pos: int, end: int, fetch_end: int) -> bytes:
        w = await self._window_at(pos, fetch_end)
        r = w.recon
        assert r is not None
        avail_end = w.start + r.size_bytes
        if avail_end <= pos:
            raise FormatError(f"reconstruction for [{w.start}, {w.stop}) does not reach offset {pos}")
        plan = plan_read(r, pos - w.start, min(end, avail_end) - pos)
        decoded = await self._fetch_plan(r, plan)
        term_chunks = [decoded[f][t.chunk_start - f.chunk_start:t.chunk_end - f.chunk_start]
                       for t, f in zip(plan.terms, plan.term_fetch)]
        for t, cs in zip(plan.terms, term_chunks):
            if sum(map(len, cs)) != t.unpacked_bytes:
                raise IntegrityError(f"term {t.xorb_hash}[{t.chunk_start},{t.chunk_end}) has the wrong size")
        self._learn(pos - plan.skip_bytes, plan.terms, term_chunks)
        return _slice_chunks((c for cs in term_chunks for c in cs), plan.skip_bytes, plan.size_bytes)

    async def _fetch_plan(self, r: Reconstruction, plan: ReadPlan) -> dict[FetchRange, list[bytes]]:
        decoded: dict[FetchRange, list[bytes]] = {}
        waits: dict[FetchRange, _Pending] = {}
        async with trio.open_nursery() as local:
            nursery = self.fetcher.nursery or local
            for fr in plan.fetches:
                cached = await self.fetcher.cached_chunks_any_tier(fr)
                if cached is not None:
                    decoded[fr] = cached
                else:
                    waits[fr] = self.fetcher.start(fr, r.terms, nursery)
            if self.fetcher.nursery is not None:   # the rest of the window, in the background
                self.fetcher.nursery.start_soon(self._start_all, r)
            for fr, pending in waits.items():
                while True:
                    await pending.done.wait()
                    if isinstance(pending.error, FetchCancelled):
                        pending = self.fetcher.start(fr, r.terms, nursery)
                        continue
                    decoded[fr] = pending.result()
                    break
        return decoded

    # -- 4. readahead ----------------------------------------------------------------------------------------

    async def _start_all(self, r: Reconstruction) -> None:
        """Fetch every range of ``r`` that no cache tier holds (a disk hit is promoted to memory)."""
        nursery = self.fetcher.nursery
        assert nursery is not None
        for ranges in r.fetch.values():
            for fr in ranges:   # concurrently: disk loads share the CPU limiter, fetches the network one
                if self.fetcher.cached_chunks(fr) is None:
                    nursery.start_soon(self._ensure, fr, r)

    async def _ensure(self, fr: FetchRange, r: Reconstruction) -> None:
        nursery = self.fetcher.nursery
        assert nursery is not None
        try:
            if await self.fetcher.cached_chunks_any_tier(fr) is None:
                self.fetcher.start(fr, r.terms, nursery)
        except XetError as exc:
            log.debug("readahead of xorb %s failed: %s", fr.xorb_hash, exc)

    def _prefetch(self, start: int, stop: int) -> None:
        """Make sure ``[start, stop)`` is being fetched in the background (mount only)."""
        if self.fetcher.nursery is None or start >= stop:
            return
        pos = start
        for w in sorted(self._windows, key=lambda w: w.start):
            if w.start <= pos < w.stop:
                pos = w.stop
        # Keep the whole readahead in flight, in windows of at least PREFETCH_MIN_BYTES (few queries).
        if stop - pos >= min(stop - start, PREFETCH_MIN_BYTES) and not self._known_run(pos, pos + 1):
            self.fetcher.nursery.start_soon(self._prefetch_window, pos, stop)

    async def _prefetch_window(self, pos: int, stop: int) -> None:
        try:
            with trio.fail_after(self.read_timeout_s):
                w = await self._window_at(pos, stop)
            if w.recon is not None:
                await self._start_all(w.recon)
        except (XetError, trio.TooSlowError) as exc:
            log.debug("prefetch of [%d, %d) failed: %s", pos, stop, exc)


class Readahead:
    """Per open handle: how far past a read to fetch (sequential growth, tensor alignment when random)."""

    def __init__(self, min_bytes: int = 1 * MiB, max_bytes: int = 64 * MiB,
                 boundaries: Sequence[int] | None = None) -> None:
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.boundaries = boundaries
        self.window = 0
        self.next_offset = 0

    def fetch_end(self, offset: int, size: int) -> int:
        end = offset + size
        slack = self.window   # growing windows tolerate kernel reads arriving slightly out of order
        if self.next_offset - slack <= offset <= self.next_offset + slack:
            self.window = min(max(self.window * 2, self.min_bytes), self.max_bytes)
            self.next_offset = max(self.next_offset, end)
            return end + self.window
        self.window = 0
        self.next_offset = end
        if self.boundaries:
            i = bisect.bisect_right(self.boundaries, offset)
            if i < len(self.boundaries):
                return max(end, min(self.boundaries[i], offset + self.max_bytes))
        return end


def parse_safetensors_header(prefix: bytes) -> tuple[int, list[int]] | None:
    """(header end, sorted absolute tensor boundaries) from the start of a .safetensors file, or None."""
    if len(prefix) < 8:
        return None
    (n,) = struct.unpack("<Q", prefix[:8])
    if len(prefix) < 8 + n:
        return None
    try:
        header = json.loads(prefix[8:8 + n])
    except ValueError:
        return None
    base = 8 + n
    bounds = {base}
    for name, info in header.items() if isinstance(header, dict) else ():
        if name != "__metadata__" and isinstance(info, dict):
            begin, stop = info.get("data_offsets", (0, 0))
            bounds.update((base + int(begin), base + int(stop)))
    return base, sorted(bounds)


async def safetensors_boundaries(reader: FileReader, max_header_bytes: int = 64 * MiB) -> list[int] | None:
    """Read a .safetensors header through ``reader``: the tensor boundaries, or None if it is not one."""
    if reader.size < 8:
        return None
    (n,) = struct.unpack("<Q", await reader.read(0, 8))
    if n > max_header_bytes or 8 + n > reader.size:
        return None
    parsed = parse_safetensors_header(await reader.read(0, 8 + n))
    return None if parsed is None else parsed[1]
