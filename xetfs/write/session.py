"""The per-file upload pipeline: bytes -> chunks -> dedup -> xorbs on the CAS, then the session's shard
(docs/architecture.md, "The write path"; docs/protocol.md: chunking, xorbs, dedup, shards).

An ``UploadSession`` (write token from the Hub) runs the per-file pipeline ``add_file``: a producer reads the
file in ``read_block_bytes`` blocks into one reused buffer and chunks + sha256-hashes each block in a worker
thread (a ``GrowingFile`` is read as a sequential writer appends to it); the consumer sends the CAS its
queries about a block's chunks eligible for global dedup (best effort) in the background as soon as the
block arrives and goes on: the answers are fed to ``DedupSession.add_known_shard`` ``dedup_answer_lag_bytes``
of input later, and a block is packed into xorbs (worker thread; compression happens there) only once
``dedup_lookahead_bytes`` more have been answered, so a dedup answer found late in a xorb still covers the
xorb's earlier chunks. Completed xorbs go through an unbuffered channel to ``xorb_uploads_in_flight``
uploader tasks, so memory stays bounded: a few blocks of chunks plus the open xorb plus the xorbs being
uploaded. CPU work runs behind ONE ``trio.CapacityLimiter`` (docs/architecture.md, "Threads"); the trio
thread never hashes or compresses.

When the session closes (``upload_session``), the last xorb is uploaded; only after every xorb is stored does
the shard go up (a shard may only reference stored xorbs). The shard carries each file's sha256 metadata
extension, which is how the Hub links a commit's ``lfsFile`` sha256 to the Xet file hash.
"""
from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace

import trio

from xetfs.client.cas import CasClient
from xetfs.core.chunking import Chunk, Chunker
from xetfs.core.compression import CompressionScheme
from xetfs.core.dedup import SESSION, DedupSession
from xetfs.core.hashing import MerkleHash
from xetfs.core.params import DEFAULT_CHUNKING, DEFAULT_XORB, ChunkingParams, XorbParams
from xetfs.core.shard import Shard, serialize_upload_shard
from xetfs.core.xorb import BuiltXorb
from xetfs.errors import XetError
from xetfs.transport.http import http_status_of
from xetfs.transport.tasks import single_error
from xetfs.write.growing import GrowingFile, Segment, block_buffer, read_segments
from xetfs.write.shardcache import StaleShardCache

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


class Answers:
    """Global-dedup answers shared by the upload sessions of one writable mount, newest ``max_answers`` kept
    (answers expire with their key): a session seeds itself with the answers others got, so a file written
    after an earlier commit changed the repo still deduplicates against what the repo held before."""

    def __init__(self, max_answers: int = 64) -> None:
        self.max_answers = max_answers
        self.shards: list[Shard] = []

    def add(self, shard: Shard) -> None:
        self.shards.append(shard)
        del self.shards[:-self.max_answers]

    def current(self, now: float) -> list[Shard]:
        self.shards = [s for s in self.shards if s.footer is None or not s.footer.key_expiry
                       or s.footer.key_expiry > now]
        return list(self.shards)


LocalSource = str | os.PathLike[str] | bytes
Source = LocalSource | GrowingFile

# Where deduplicated bytes were found (``UploadStats.deduped_by_source``).
FROM_SESSION = SESSION                    # earlier in the same upload
FROM_SHARD_CACHE = "local_shard_cache"    # shards this machine uploaded or learned before
FROM_SERVER = "server_global_dedup"       # a global-dedup answer of the CAS
FROM_BASE = "base_revision"               # a file of the mounted revision the upload rewrites (write.basecands)


@dataclass(frozen=True, slots=True)
class UploadParams:
    chunking: ChunkingParams = DEFAULT_CHUNKING
    xorb: XorbParams = DEFAULT_XORB
    compression: CompressionScheme | None = None      # None = automatic per chunk
    read_block_bytes: int = 8 * 1024 * 1024
    xorb_uploads_in_flight: int = 2
    dedup_queries_in_flight: int = 4
    dedup_lookahead_bytes: int = 64 * 1024 * 1024   # one full xorb
    dedup_answer_lag_bytes: int = 16 * 1024 * 1024  # input read while a block's queries are in flight
    global_dedup: bool = True
    cpu_threads: int = 2
    keep_layouts: bool = False   # give each file's layout after the session (``UploadSession.layouts``)


@dataclass(slots=True)
class UploadStats:
    files: int = 0
    total_bytes: int = 0            # bytes of every file committed
    regular_bytes: int = 0          # bytes sent inline in the commit
    new_bytes: int = 0              # uncompressed chunk bytes that went into new xorbs
    deduped_bytes: int = 0          # uncompressed chunk bytes found already stored (or earlier in the session)
    xorbs_uploaded: int = 0
    xorb_bytes_uploaded: int = 0    # serialized xorb bytes sent
    xorbs_already_stored: int = 0   # uploads the server answered with was_inserted = false
    shard_bytes: int = 0
    dedup_queries: int = 0
    dedup_hits: int = 0
    deduped_by_source: dict[str, int] = field(default_factory=dict)   # FROM_* -> bytes

    def add(self, other: UploadStats) -> None:
        """Add the counters of ``other`` (e.g. a stream's) to these."""
        for f in fields(self):
            if f.name != "deduped_by_source":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for source, n in other.deduped_by_source.items():
            self.deduped_by_source[source] = self.deduped_by_source.get(source, 0) + n

    def copy(self) -> UploadStats:
        return replace(self, deduped_by_source=dict(self.deduped_by_source))

    def set(self, other: UploadStats) -> None:
        """Take ``other``'s counters (an upload tried again counts from where ``other`` was taken)."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))
        self.deduped_by_source = dict(other.deduped_by_source)


@dataclass(frozen=True, slots=True)
class XetFile:
    file_hash: MerkleHash
    sha256: str                     # hex
    size: int



def _open_source(source: LocalSource) -> io.BufferedIOBase | io.BytesIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    return open(source, "rb")   # noqa: SIM115 - closed by the producer


@dataclass(slots=True)
class _Block:
    """One block of a file's chunks with its global-dedup queries (``UploadSession._consume_chunks``)."""

    chunks: list[Chunk]
    size: int
    queries: list[MerkleHash] = field(default_factory=list)       # in the order they were chosen
    answers: dict[MerkleHash, Shard | None] = field(default_factory=dict)
    in_flight: int = 0
    settled: trio.Event = field(default_factory=trio.Event)


class _Window:
    """Blocks in file order and their bytes."""

    def __init__(self) -> None:
        self.blocks: collections.deque[_Block] = collections.deque()
        self.bytes = 0

    def push(self, block: _Block) -> None:
        self.blocks.append(block)
        self.bytes += block.size

    def pop(self) -> _Block:
        block = self.blocks.popleft()
        self.bytes -= block.size
        return block


class UploadSession:
    """Chunks, deduplicates and uploads files into xorbs; ``upload_session`` uploads the shard on exit."""

    def __init__(self, cas: CasClient, params: UploadParams, limiter: trio.CapacityLimiter,
                 xorb_send: trio.MemorySendChannel[BuiltXorb], stats: UploadStats,
                 progress: Progress | None) -> None:
        self.cas, self.params, self.limiter = cas, params, limiter
        self.dedup = DedupSession(params.xorb, params.compression, keep_layouts=params.keep_layouts)
        self.stats = stats
        self.shard: Shard | None = None
        self.layouts: dict[MerkleHash, Shard] = {}   # file hash -> layout (``keep_layouts``, core.dedup)
        self.learned: Shard | None = None   # xorbs global-dedup answers taught us (plain hashes where matched)
        self.answers: Answers | None = None
        self._xorb_send = xorb_send
        self._progress = progress
        self._dedup_lock = trio.Lock()   # DedupSession is driven by one task at a time (never across network)
        self._dedup_limiter = trio.CapacityLimiter(params.dedup_queries_in_flight)

    async def add_file(self, source: Source) -> XetFile:
        """Run one file through the pipeline; its xorbs are uploaded as they complete."""
        send, recv = trio.open_memory_channel[list[Chunk]](1)
        sha = hashlib.sha256()
        size = [0]
        with single_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._produce_chunks, source, sha, size, send)
                async with self._dedup_lock:
                    file_id = self.dedup.start_file()
                async with recv:
                    await self._consume_chunks(file_id, recv)
        async with self._dedup_lock:
            file_hash = self.dedup.finish_file(file_id, sha.digest())
        return XetFile(file_hash, sha.hexdigest(), size[0])

    async def _produce_chunks(self, source: Source, sha: "hashlib._Hash", size: list[int],
                              send: trio.MemorySendChannel[list[Chunk]]) -> None:
        chunker = Chunker(self.params.chunking)
        if isinstance(source, GrowingFile):
            with block_buffer(self.params.read_block_bytes) as block:
                await self._produce_growing(source, chunker, block, sha, size, send)
            return
        view = memoryview(bytearray(self.params.read_block_bytes))
        f = await trio.to_thread.run_sync(_open_source, source, limiter=self.limiter)

        def step() -> tuple[list[Chunk], bool]:
            n = f.readinto(view)
            if not n:
                return chunker.finish(), True
            sha.update(view[:n])
            size[0] += n
            return chunker.feed(view[:n]), False

        async with send:
            try:
                while True:
                    chunks, done = await trio.to_thread.run_sync(step, limiter=self.limiter)
                    if chunks:
                        await send.send(chunks)
                    if done:
                        return
            finally:
                f.close()

    async def _produce_growing(self, source: GrowingFile, chunker: Chunker, buf: memoryview,
                               sha: "hashlib._Hash", size: list[int],
                               send: trio.MemorySendChannel[list[Chunk]]) -> None:
        view = buf[:self.params.read_block_bytes]

        def step(segments: list[Segment]) -> tuple[list[Chunk], bool]:
            if not segments:
                return chunker.finish(), True
            chunks: list[Chunk] = []
            for data in read_segments(source.fd, segments, buf, source.direct_fd):
                sha.update(data)
                size[0] += len(data)
                chunks += chunker.feed(data)
            return chunks, False

        async with send:
            while True:
                end = await source.available(size[0], len(view))
                n = min(end - size[0], len(view))
                segments = source.take(size[0], n) if n else []
                chunks, done = await trio.to_thread.run_sync(step, segments, limiter=self.limiter)
                if chunks:
                    await send.send(chunks)
                if done:
                    return

    async def _consume_chunks(self, file_id: int, recv: trio.MemoryReceiveChannel[list[Chunk]]) -> None:
        """Place each block of chunks once ``dedup_lookahead_bytes`` of answered blocks follow it.

        A block's global-dedup queries are chosen and sent as soon as it arrives, in the background; its
        answers are registered ``dedup_answer_lag_bytes`` of input later (or at the end of the file), waiting
        only if they are still in flight then. So the packer never waits on a round trip it could overlap,
        and what each chunk can be deduplicated against is a function of the data alone, never of timing
        (docs/architecture.md, "Global-dedup queries"). A global-dedup answer names the xorb holding the
        queried chunk; the chunks of that xorb that come BEFORE the queried one in the file are only
        deduplicated if the answer is registered before they are placed: the lookahead (one xorb, 64 MiB)
        covers every chunk of a re-uploaded xorb.
        """
        unanswered = _Window()   # queries sent, answers not registered yet
        answered = _Window()     # answers registered, chunks not placed yet
        lag = self.params.dedup_answer_lag_bytes
        lookahead = self.params.dedup_lookahead_bytes if self.params.global_dedup else 0
        first = True
        with single_error():
            async with trio.open_nursery() as queries:
                async for chunks in recv:
                    block = _Block(chunks, sum(c.size for c in chunks))
                    if self.params.global_dedup:
                        async with self._dedup_lock:
                            block.queries = self.dedup.dedup_queries(chunks, first)
                        block.in_flight = len(block.queries)
                        for h in block.queries:
                            queries.start_soon(self._query_one, h, block)
                    first = False
                    unanswered.push(block)
                    while unanswered.blocks and unanswered.bytes - unanswered.blocks[0].size >= lag:
                        answered.push(await self._register(unanswered.pop()))
                    while answered.blocks and answered.bytes > lookahead:
                        await self._place_chunks(file_id, answered.pop().chunks)
                while unanswered.blocks:
                    answered.push(await self._register(unanswered.pop()))
                while answered.blocks:
                    await self._place_chunks(file_id, answered.pop().chunks)

    async def _place_chunks(self, file_id: int, chunks: list[Chunk]) -> int:
        async with self._dedup_lock:
            completed = await trio.to_thread.run_sync(self.dedup.add_chunks, file_id, chunks, limiter=self.limiter)
        for xorb in completed:
            await self._xorb_send.send(xorb)      # blocks while the uploaders are busy: bounded memory
        placed = sum(c.size for c in chunks)
        if self._progress is not None:
            self._progress(placed)
        return placed

    async def _query_one(self, h: MerkleHash, block: _Block) -> None:
        async with self._dedup_limiter:
            block.answers[h] = await self.cas.query_dedup(h)
        block.in_flight -= 1
        if not block.in_flight:
            block.settled.set()

    async def _register(self, block: _Block) -> _Block:
        """Wait for the block's answers (in flight only if the server is slower than the input), then
        register them in the order the queries were chosen: the dedup session sees the same answers at the
        same point of the file whatever the timing."""
        if block.in_flight:
            await block.settled.wait()
        shards = [s for h in block.queries if (s := block.answers[h]) is not None]
        self.stats.dedup_queries += len(block.queries)
        self.stats.dedup_hits += len(shards)
        if shards:
            async with self._dedup_lock:
                for shard in shards:
                    self.dedup.add_known_shard(shard, FROM_SERVER, learn=True)
                    if self.answers is not None:
                        self.answers.add(shard)
        return block

    async def _finish(self) -> list[BuiltXorb]:
        async with self._dedup_lock:
            last, shard = await trio.to_thread.run_sync(self.dedup.finish, limiter=self.limiter)
            if self.params.keep_layouts:
                self.layouts = await trio.to_thread.run_sync(self.dedup.file_layouts, limiter=self.limiter)
        self.shard = shard
        self.stats.new_bytes += self.dedup.stats.new_bytes
        self.stats.deduped_bytes += self.dedup.stats.deduped_bytes
        for source, n in self.dedup.stats.deduped_by_source.items():
            self.stats.deduped_by_source[source] = self.stats.deduped_by_source.get(source, 0) + n
        learned = self.dedup.learned_xorbs()
        self.learned = Shard((), learned) if learned else None
        return last


async def _upload_xorbs(cas: CasClient, recv: trio.MemoryReceiveChannel[BuiltXorb], stats: UploadStats) -> None:
    async with recv:
        async for xorb in recv:
            inserted = await cas.upload_xorb(xorb)
            stats.xorbs_uploaded += 1
            stats.xorb_bytes_uploaded += len(xorb.data)
            stats.xorbs_already_stored += 0 if inserted else 1


@asynccontextmanager
async def upload_session(cas: CasClient, params: UploadParams = UploadParams(), *,
                         stats: UploadStats | None = None, progress: Progress | None = None,
                         known_shards: Sequence[Shard] = (), answers: Answers | None = None,
                         base_shards: Sequence[Shard] = ()) -> AsyncIterator[UploadSession]:
    """Open a session; on a clean exit the last xorbs, then the shard, are uploaded (``session.shard``).
    ``base_shards`` (the layouts of base-revision files, ``write.basecands``), then ``known_shards`` (the local
    shard cache) seed the dedup session, and so do ``answers`` (shared with other sessions: this session's
    answers join them); all before any chunk is placed or any server query."""
    stats = stats if stats is not None else UploadStats()
    limiter = trio.CapacityLimiter(params.cpu_threads)
    send, recv = trio.open_memory_channel[BuiltXorb](0)
    with single_error():
        async with trio.open_nursery() as nursery:
            for _ in range(params.xorb_uploads_in_flight):
                nursery.start_soon(_upload_xorbs, cas, recv.clone(), stats)
            recv.close()
            session = UploadSession(cas, params, limiter, send, stats, progress)

            def register() -> None:   # indexing up to many thousand chunk entries: a worker thread
                for shard in base_shards:
                    session.dedup.add_known_shard(shard, FROM_BASE)
                for shard in known_shards:
                    session.dedup.add_known_shard(shard, FROM_SHARD_CACHE)

            await trio.to_thread.run_sync(register, limiter=limiter)
            if answers is not None:
                session.answers = answers
                for shard in answers.current(time.time()):
                    session.dedup.add_known_shard(shard, FROM_SERVER, learn=True)
            async with send:
                yield session
                for xorb in await session._finish():
                    await send.send(xorb)
    assert session.shard is not None
    if session.shard.files or session.shard.xorbs:
        data = await trio.to_thread.run_sync(serialize_upload_shard, session.shard, limiter=limiter)
        try:
            await cas.upload_shard(data)
        except XetError as exc:
            if http_status_of(exc) == 400 and stats.deduped_by_source.get(FROM_SHARD_CACHE):
                raise StaleShardCache(f"the server refused a shard deduplicated against the local shard cache "
                                      f"({exc})") from exc
            raise
        stats.shard_bytes += len(data)
