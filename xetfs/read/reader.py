"""FileReader: random-access reads of one Xet file (docs/architecture.md, "The read path"; docs/protocol.md,
"Reconstruction").

``FileReader.read(offset, size, fetch_end=...)`` loops over the window:

1. **Known chunks** (``xetfs.read.known``): every chunk whose file offset the reader has learned, from its
   reconstructions or from the file's layout saved in the disk tier, is looked up in the ``ChunkCache``
   (memory, then disk in a worker thread). Consecutive hits are served with no network round trip at all.
2. **Reconstruction windows** (``xetfs.read.windows``): at the first byte not served from cache the reader
   needs a reconstruction covering it: one it has (kept below the URL expiry), one in flight (waited for),
   or a new query ``[pos, fetch_end)``, stopped where another window's or a known chunk begins. Windows never
   overlap, so no chunk is fetched through two of them.
3. **Plan and fetch**: ``core.reconstruction.plan_read`` picks the terms and fetch ranges; a range whose
   chunks are cached costs nothing; the others go through the shared ``Fetcher`` (``xetfs.read.fetcher``:
   joined when running already, verified per term, no lock across a network await). Each term's chunks are
   checked against it (``core.reconstruction.verify_term``) before their bytes are used.
4. **Readahead** (with the mount's background nursery): the rest of the window is fetched in the background
   and then learned (``_fill``); known chunks of ``[end, fetch_end)`` are loaded from the disk tier in batches
   (``read.disk_readahead``); unknown bytes get windows of at least ``PREFETCH_MIN_BYTES``. ``stream_rest``
   fetches the whole file in file order for a reader that loads all of it: up to ``STREAM_DEPTH`` windows at
   once, never more than the lead (``read.flight.StreamLead``) of bytes not asked for yet, then the next
   file it was given (docs/architecture.md, "Whole-file streams").

Not done: pushing readahead into the kernel page cache (``notify_store``) was measured and did not speed up
cold or remount reads on this stack; it stays out.

Every wait is bounded: the whole read by ``read_timeout_s`` (-> ``TransientError``), each fetch by
``fetch_timeout_s``. A fetch answered 403 (an expired data URL) drops the reader's reconstructions and is
retried once with fresh ones.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from xetfs.read.assembly import Placed, slice_chunks, whole_chunks
from xetfs.read.cache import ChunkCache, ChunkKey
from xetfs.read.disk_readahead import DiskReadahead
from xetfs.transport.tasks import single_error
from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, ReadPlan, Reconstruction, plan_read, verify_term
from xetfs.errors import Forbidden, FormatError, TransientError, XetError
from xetfs.read.fetcher import FetchCancelled, Fetcher, Pending, ReadStats, tune_allocator
from xetfs.read.known import KnownChunks
from xetfs.read.source import ChunkSource, FileCounters
from xetfs.read.readahead import Readahead, Runs
from xetfs.read.stream import STREAM_WINDOW_BYTES, Chained, FileStream
from xetfs.read.windows import Window, Windows

__all__ = ["FetchCancelled", "Fetcher", "FileReader", "PREFETCH_MIN_BYTES", "ReadStats",
           "Readahead", "tune_allocator"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
PREFETCH_MIN_BYTES = 16 * MiB


class FileReader:
    """Random-access reads of one Xet file (file hash + size), any number of concurrent callers."""

    def __init__(self, cas: ChunkSource, file_hash: MerkleHash, size: int, cache: ChunkCache | None = None, *,
                 fetcher: Fetcher | None = None, read_timeout_s: float = 120.0,
                 reconstruction_ttl_s: float = 300.0, max_windows: int = 64) -> None:
        self.file_hash = file_hash
        self.size = size
        self.fetcher = fetcher if fetcher is not None else Fetcher(cas, cache)
        self.cas = self.fetcher.cas
        self.cache = self.fetcher.cache
        self.read_timeout_s = read_timeout_s
        self._windows = Windows(reconstruction_ttl_s, max_windows)
        self.known = KnownChunks(file_hash, size, self.fetcher)   # chunks at known file offsets
        self.counters = FileCounters()
        self.stream = FileStream(self, self.fetcher)   # the whole-file stream, and the open handles
        self._asked = Runs()                     # the bytes readers asked for, from the first read (a stream's
                                                 # lead counts the rest)
        self.boundaries: list[int] | None = None  # safetensors tensor boundaries, when known
        self.disk_ahead = DiskReadahead(self.known, self.fetcher, self._asked, self._prefetch_network)

    @property
    def stats(self) -> ReadStats:
        return self.fetcher.stats

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None,
                   placed: list[Placed] | None = None) -> bytes:
        """Bytes ``[offset, offset + size)`` (short at EOF). ``fetch_end`` asks to read ahead up to there.
        ``placed`` receives the chunk objects that lie whole in the bytes returned (``read.assembly``)."""
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        first_read = not self._asked.covers(offset, end)   # not a re-read (``read.disk_readahead``)
        self._asked.add(offset, end)
        self.stream.read()   # this file's stream may be waiting for its reader
        try:
            with trio.fail_after(self.read_timeout_s):
                data = await self._read(offset, end, min(max(end, fetch_end or end), self.size), placed, first_read)
        except trio.TooSlowError:
            self.stats.read_errors += 1
            raise TransientError(f"read of {end - offset} bytes at {offset} timed out "
                                 f"after {self.read_timeout_s}s") from None
        except XetError:
            self.stats.read_errors += 1
            raise
        return data

    def stream_rest(self, window_bytes: int = STREAM_WINDOW_BYTES, after: Sequence[Chained] = ()) -> bool:
        """Fetch the whole file in file order in the background (mount only; once): windows of at most
        ``window_bytes`` (the mount passes its readahead bound, a share of the memory tier), ``STREAM_DEPTH``
        at a time, within the lead (``read.stream``), each fetched by the shared fetcher (its parallel fetches
        and byte budget bound the memory). Then the first of ``after`` not streamed yet is streamed, with the
        rest of ``after`` queued behind it. False when it was started before or there is no background."""
        if not self.stream.start(max(1, min(window_bytes, STREAM_WINDOW_BYTES)), after):
            return False
        self.counters.whole_file_streams += 1
        return True

    @property
    def handles(self) -> int:
        return self.stream.handles

    def opened(self) -> None:
        self.stream.opened()

    def closed(self) -> None:
        self.stream.closed()

    def read_below(self, pos: int) -> int:
        """How many bytes before ``pos`` readers have asked for so far."""
        return self._asked.below(pos)

    def next_missing(self, pos: int) -> int:
        """The first offset at or after ``pos`` that neither a window covers nor a known chunk holds."""
        while pos < self.size:
            pos = self._windows.covered_until(pos)
            run = self.known.run(pos, pos + 1)
            if not run:
                break
            pos = run[-1][0] + run[-1][1].size
        return pos

    async def _read(self, offset: int, end: int, fetch_end: int, placed: list[Placed] | None,
                    first_read: bool = True) -> bytes:
        await self.known.load()
        parts: list[bytes] = []
        pos = offset
        retried = False
        while pos < end:
            data = await self._from_cache(pos, end, placed)
            if not data:
                try:
                    with single_error():   # the error itself, not the group of _fetch_plan's nursery
                        data = await self._from_network(pos, end, fetch_end, placed)
                except Forbidden:
                    if retried:
                        raise
                    retried = True   # an expired data URL: fresh reconstructions, one more try
                    self.stats.refetches += 1
                    self._windows.clear()
                    continue
            parts.append(data)
            pos += len(data)
        self._prefetch(end, fetch_end, first_read)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- 1. known layout + cache ---------------------------------------------------------------------------

    async def _from_cache(self, pos: int, end: int, placed: list[Placed] | None) -> bytes:
        run = self.known.run(pos, end)
        if not run:
            return b""
        keys = [(c.xorb_hash, c.index) for _, c in run]
        datas: list[bytes] = []
        waited: set[int] = set()
        i = 0
        while i < len(run):
            at = run[i][0]
            data = self.cache.get_memory(keys[i])
            if data is None:
                batch = self.disk_ahead.loading(at)
                if batch is not None and at not in waited:   # being loaded: share it, do not load it twice
                    waited.add(at)
                    await batch.done.wait()
                    continue
                # load from disk the chunks memory lacks up to the next one it holds, not the rest of the run
                j = i + 1
                while j < len(run) and not self.cache.in_memory(keys[j]):
                    j += 1
                loaded = await self._disk_run(keys[i:j])
                datas.extend(loaded)
                if len(loaded) < j - i:
                    break
                i = j
                continue
            datas.append(data)
            i += 1
        if not datas:
            return b""
        data = slice_chunks(datas, pos - run[0][0], end - pos)
        self._mark_read(run[0][0], keys[:len(datas)], datas)
        if placed is not None:
            placed.extend(whole_chunks(run[0][0], keys, datas, pos, pos + len(data)))
        return data

    def _mark_read(self, at: int, keys: Sequence[ChunkKey], chunks: Sequence[bytes]) -> None:
        """Tell the memory tier which of these chunks (the first at file offset ``at``) readers have now asked
        for whole, and which in part (``read.memory_tier``: it keeps the latter longer)."""
        partly: list[ChunkKey] = []
        consumed: list[ChunkKey] = []
        for key, chunk in zip(keys, chunks):
            (consumed if self._asked.covers(at, at + len(chunk)) else partly).append(key)
            at += len(chunk)
        self.cache.mark_read(partly, consumed)

    async def _disk_run(self, keys: list[ChunkKey]) -> list[bytes]:
        if self.cache.disk is None:
            return []
        hits = await trio.to_thread.run_sync(self.cache.get_many_disk, keys, limiter=self.fetcher.disk)
        out = []
        for k in keys:
            if k not in hits:
                break
            out.append(hits[k])
        return out

    # -- 2. reconstructions --------------------------------------------------------------------------------

    async def _window_at(self, pos: int, fetch_end: int) -> Window:
        """A reconstruction covering ``pos``: cached, in flight, or queried now (``Windows``: they never
        overlap, so no chunk is fetched through two of them)."""
        while True:
            self._windows.expire(trio.current_time())
            w = self._windows.covering(pos)
            if w is None:
                stop = self._windows.free_until(pos, max(fetch_end, pos + 1))
                known = self.known.next_start(pos)   # no query for chunks whose offsets are known
                stop = stop if known is None else min(stop, known)
                near = self._windows.pending_near(pos, stop)
                if near is not None:
                    await near.pending.done.wait()
                    continue
                w = self._windows.add(pos, stop, trio.current_time())
                await self._query(w)
            await w.pending.done.wait()
            if w.pending.error is None:
                return w
            if isinstance(w.pending.error, Exception):
                raise w.pending.error
            # the querying task was cancelled (its caller timed out): query again ourselves

    async def _query(self, w: Window) -> None:
        self.stats.pending_reconstructions += 1
        try:
            started = trio.current_time()
            r = await self.cas.reconstruction(self.file_hash, (w.start, w.stop))
            self.stats.reconstruction_seconds.observe(trio.current_time() - started)
            w.answered(r)
            w.pending.value = w.recon
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

    async def _from_network(self, pos: int, end: int, fetch_end: int, placed: list[Placed] | None) -> bytes:
        w = await self._window_at(pos, fetch_end)
        r = w.recon
        assert r is not None
        if not w.covers(pos):
            raise FormatError(f"reconstruction for [{w.start}, {w.stop}) does not reach offset {pos}")
        plan = plan_read(r, pos - w.cov_start, min(end, w.cov_end) - pos)
        decoded = await self._fetch_plan(w, plan)
        term_chunks = [decoded[f][t.chunk_start - f.chunk_start:t.chunk_end - f.chunk_start]
                       for t, f in zip(plan.terms, plan.term_fetch)]
        for t, cs in zip(plan.terms, term_chunks):   # hashes were checked when the chunks were fetched
            verify_term(t, cs, with_hash=False)
        self.known.learn(pos - plan.skip_bytes, plan.terms, term_chunks)
        chunks = [c for cs in term_chunks for c in cs]
        data = slice_chunks(chunks, plan.skip_bytes, plan.size_bytes)
        keys = [(bytes(t.xorb_hash), i) for t in plan.terms for i in range(t.chunk_start, t.chunk_end)]
        self._mark_read(pos - plan.skip_bytes, keys, chunks)
        if placed is not None:
            placed.extend(whole_chunks(pos - plan.skip_bytes, keys, chunks, pos, pos + len(data)))
        return data

    async def _fetch_plan(self, w: Window, plan: ReadPlan) -> dict[FetchRange, list[bytes]]:
        r = w.recon
        assert r is not None
        decoded: dict[FetchRange, list[bytes]] = {}
        waits: dict[FetchRange, Pending] = {}
        async with trio.open_nursery() as local:
            nursery = self.fetcher.nursery or local
            for fr in plan.fetches:
                cached = await self.fetcher.cached_chunks_any_tier(fr)
                if cached is not None:
                    decoded[fr] = cached
                else:
                    waits[fr] = self.fetcher.start(fr, r.terms, nursery, self.counters)
            if self.fetcher.nursery is not None:   # the rest of the window, in the background
                self.fetcher.nursery.start_soon(self._fill, w)
            for fr, pending in waits.items():
                while True:
                    await pending.done.wait()
                    if isinstance(pending.error, FetchCancelled):   # a cache tier may hold it now
                        cached = await self.fetcher.cached_chunks_any_tier(fr)
                        if cached is not None:
                            decoded[fr] = cached
                            break
                        pending = self.fetcher.start(fr, r.terms, nursery, self.counters)
                        continue
                    decoded[fr] = pending.result()
                    break
        return decoded

    # -- 4. readahead ----------------------------------------------------------------------------------------

    async def _fill(self, w: Window) -> None:
        """Fetch every range of ``w`` that no cache tier holds (a disk hit is promoted to memory), then learn
        the offsets of all its chunks, so later reads of them need no reconstruction."""
        r = w.recon
        assert r is not None and self.fetcher.nursery is not None
        sizes: dict[ChunkKey, int] = {}   # what the fetches (or the cache) said of each chunk
        async with trio.open_nursery() as nursery:
            for ranges in r.fetch.values():
                for fr in ranges:   # concurrently: disk loads share the CPU limiter, fetches the network one
                    nursery.start_soon(self._ensure, fr, r, sizes)
        at = w.cov_start
        for t in r.terms:
            n = [sizes.get((bytes(t.xorb_hash), i)) for i in range(t.chunk_start, t.chunk_end)]
            known = [k for k in n if k is not None]
            if len(known) == len(n) and sum(known) == t.unpacked_bytes:
                self.known.learn_sizes(at, [t], [known])
            at += t.unpacked_bytes
        w.filled = True   # every chunk of it is known now (or was lost): the window may leave the table

    async def _ensure(self, fr: FetchRange, r: Reconstruction, sizes: dict[ChunkKey, int]) -> None:
        """``fr``'s chunks in a cache tier, fetched if need be; their sizes go into ``sizes``."""
        nursery = self.fetcher.nursery
        assert nursery is not None
        xorb = bytes(fr.xorb_hash)
        try:
            chunks = self.fetcher.cached_chunks(fr) or await self.fetcher.cached_chunks_any_tier(fr)
            while chunks is None:
                pending = self.fetcher.start(fr, r.terms, nursery, self.counters)
                await pending.done.wait()
                if not isinstance(pending.error, FetchCancelled):
                    chunks = pending.result()
                else:
                    chunks = await self.fetcher.cached_chunks_any_tier(fr)
            sizes.update(((xorb, fr.chunk_start + i), len(c)) for i, c in enumerate(chunks))
        except XetError as exc:
            log.debug("readahead of xorb %s failed: %s", fr.xorb_hash, exc)

    def _prefetch(self, start: int, stop: int, first_read: bool = True) -> None:
        """Make sure ``[start, stop)`` is being fetched in the background (mount only)."""
        if self.fetcher.nursery is None or start >= stop:
            return
        if self.cache.disk is not None and self.known:
            self.disk_ahead.start(start, stop, first_read)
        self._prefetch_network(start, stop)

    def _prefetch_network(self, start: int, stop: int) -> None:
        assert self.fetcher.nursery is not None
        pos = start
        pos = self._windows.covered_until(pos)
        # Keep the whole readahead in flight, in windows of at least PREFETCH_MIN_BYTES (few queries).
        if stop - pos >= min(stop - start, PREFETCH_MIN_BYTES) and not self.known.run(pos, pos + 1):
            self.fetcher.nursery.start_soon(self._prefetch_window, pos, stop)

    async def _prefetch_window(self, pos: int, stop: int) -> None:
        w = await self.prefetch_query(pos, stop)
        if w is not None and w.recon is not None:
            await self.prefetch_fill(w)

    async def prefetch_query(self, pos: int, stop: int) -> Window | None:
        """The window covering ``pos`` (queried up to ``stop`` if need be); None when that failed."""
        try:
            with trio.fail_after(self.read_timeout_s):
                return await self._window_at(pos, stop)
        except (XetError, trio.TooSlowError) as exc:
            log.debug("prefetch query of [%d, %d) failed: %s", pos, stop, exc)
            return None

    async def prefetch_fill(self, w: Window) -> None:
        try:
            with trio.fail_after(self.read_timeout_s):
                await self._fill(w)
        except (XetError, trio.TooSlowError) as exc:
            log.debug("prefetch of [%d, %d) failed: %s", w.cov_start, w.cov_end, exc)
