"""Dedup candidates from the mounted revision's files (docs/architecture.md, "The write path", dedup sources).

Which base files: the one a path held in the base revision, for a change of that path committed (whether it
was edited in place, truncated, or replaced by a rename, as ``safetensors`` and most savers do), and the file
a staged path held (``prepare``, at its first write). A file streamed while it is written
(``xetfs.write.stream``) has no final name yet (a save-then-rename writes a temp file): its candidates are the
files read since the mount (``note_read``: a handle that read at least half of the file, as a model is loaded
before it is saved again; a file only peeked at is not learned, which would fetch it whole), newest
``max_noted`` of them, plus the file its path held. Nothing is learned before a file is written.

For each, ``prepare`` learns, in the background, where that file's chunks live: its terms (the CAS
reconstruction: xorb, chunk range) and its chunk hashes, which come from chunking the base file's bytes as the
mount's reader returns them (from the chunk cache first: a file the application read before rewriting it
costs no network; a file only partly read is fetched whole). The chunk list is accepted only when its Xet
file hash is the base file's hash, so each chunk hash is known to sit at the xorb index the terms give; then
it becomes a shard of the file's xorbs (the indices the file uses; the others are size-0 placeholders, which
``DedupSession`` merges with a full listing of the same xorb). The upload session of the rewritten file
(commit or stream) registers those shards as known xorbs, source ``base_revision``, before it places a chunk
or asks the server: a rewrite that keeps most of the content deduplicates locally.

A file this mount uploaded itself is never read back for this: the upload that stored it knew every chunk
and where it put each one, and hands that layout over once committed (``learn``). So a file saved again
and again to the same path (a checkpoint) fetches nothing. The local shard cache would not do: it lists only
the new xorbs of each upload, not the older xorbs its file reuses.

Bounds: at most ``max_entries`` chunk entries kept over all files (oldest file dropped first; a file with
more chunks is skipped); one file chunked at a time, in a worker thread; every base read has the reader's
timeout and the reconstruction ``timeout_s``; a consumer waits at most ``wait_s`` for a file still being
prepared. Any failure only logs: the upload then goes the usual way (shard cache, then the server).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import trio

from xetfs.core.chunking import Chunker
from xetfs.core.dedup import layout_shard
from xetfs.core.hashing import MerkleHash, file_hash
from xetfs.core.params import DEFAULT_CHUNKING, ChunkingParams
from xetfs.core.reconstruction import TermLike
from xetfs.core.shard import Shard
from xetfs.write.staged import BaseReader

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 1 << 18           # ~16 GiB of base files at 64 KiB chunks, ~30 MB of entries at most
DEFAULT_MAX_NOTED = 16
READ_BYTES = 8 << 20

Terms = Callable[[MerkleHash], Awaitable[Sequence[TermLike]]]
OpenReader = Callable[[MerkleHash, int], BaseReader]


class BaseCandidates:
    """The dedup candidates of one writable mount (see the module docstring). ``nursery`` is set by the
    writeback's run; without it nothing is prepared."""

    def __init__(self, terms: Terms, open_reader: OpenReader, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_noted: int = DEFAULT_MAX_NOTED, chunking: ChunkingParams = DEFAULT_CHUNKING,
                 timeout_s: float = 60.0, wait_s: float = 120.0) -> None:
        self.terms, self.open_reader = terms, open_reader
        self.max_entries, self.chunking = max_entries, chunking
        self.timeout_s, self.wait_s = timeout_s, wait_s
        self.nursery: trio.Nursery | None = None
        self.max_noted = max_noted
        self._noted: OrderedDict[MerkleHash, int] = OrderedDict()   # files opened for reading -> size
        self._ready: OrderedDict[MerkleHash, Shard] = OrderedDict()
        self._running: dict[MerkleHash, trio.Event] = {}
        self._entries = 0
        self._cpu = trio.CapacityLimiter(1)
        self._one = trio.Lock()                          # one base file read + chunked at a time
        self.prepared = 0                                # files whose candidates were learned (stats)
        self.learned = 0                                 # files whose layout an upload handed over (stats)
        self.failed = 0

    def prepare(self, file: MerkleHash, size: int) -> None:
        """Start learning the layout of base file ``file`` (``size`` bytes), once."""
        if (self.nursery is None or size <= 0 or file in self._ready
                or file in self._running or size // self.chunking.min_chunk_size > self.max_entries):
            return
        try:
            self.nursery.start_soon(self._prepare, file, size)
        except RuntimeError:   # the writeback ended (unmount): nothing more to learn
            return
        self._running[file] = trio.Event()

    def learn(self, file: MerkleHash, layout: Shard) -> None:
        """``layout`` of ``file`` is known already (``core.dedup.layout_shard``: the upload that stored it)."""
        entries = sum(len(x.chunks) for x in layout.xorbs)
        if file not in self._ready and file not in self._running and entries <= self.max_entries:
            self._keep(file, layout, entries)
            self.learned += 1

    def note_read(self, file: MerkleHash, size: int) -> None:
        """``file`` was opened for reading: a candidate for the next file streamed (newest kept)."""
        self._noted[file] = size
        self._noted.move_to_end(file)
        while len(self._noted) > self.max_noted:
            self._noted.popitem(last=False)

    async def for_stream(self, file: tuple[MerkleHash, int] | None) -> list[Shard]:
        """The candidates of a file being streamed: the files read since the mount, and ``file``."""
        files = list(self._noted.items()) + ([file] if file is not None else [])
        return await self.shards(files)

    async def shards(self, files: Iterable[tuple[MerkleHash, int]]) -> list[Shard]:
        """The candidates of ``(file, size)`` base files, prepared now when not yet (waiting at most ``wait_s``
        for those being prepared)."""
        wanted = list(dict(files).items())
        for f, size in wanted:
            self.prepare(f, size)
        wanted_files = [f for f, _ in wanted]
        with trio.move_on_after(self.wait_s) as scope:
            for f in wanted_files:
                event = self._running.get(f)
                if event is not None:
                    await event.wait()
        if scope.cancelled_caught:
            log.warning("base-revision dedup candidates not ready after %.0fs; uploading without them", self.wait_s)
        out = []
        for f in wanted_files:
            if f in self._ready:
                self._ready.move_to_end(f)
                out.append(self._ready[f])
        return out

    async def _prepare(self, file: MerkleHash, size: int) -> None:
        try:
            async with self._one:
                with trio.fail_after(self.timeout_s):
                    terms = await self.terms(file)
                leaves = await self._chunk(self.open_reader(file, size), size)
                shard = await trio.to_thread.run_sync(self._check, file, terms, leaves, limiter=self._cpu)
            self._keep(file, shard, len(leaves))
            self.prepared += 1
        except Exception as exc:   # best effort: the upload falls back to the shard cache and the server
            self.failed += 1
            log.warning("no base-revision dedup candidates for %s (%s: %s)", file, type(exc).__name__, exc)
        finally:
            self._running.pop(file).set()

    async def _chunk(self, reader: BaseReader, size: int) -> list[tuple[MerkleHash, int]]:
        chunker = Chunker(self.chunking)
        leaves: list[tuple[MerkleHash, int]] = []

        def feed(data: bytes | None) -> None:
            chunks = chunker.finish() if data is None else chunker.feed(data)
            leaves.extend((c.hash, c.size) for c in chunks)
            if len(leaves) > self.max_entries:
                raise ValueError(f"more than {self.max_entries} chunks")

        pos = 0
        while pos < size:
            data = await reader.read(pos, min(READ_BYTES, size - pos), fetch_end=min(size, pos + 2 * READ_BYTES))
            if not data:
                raise ValueError(f"base file ended at {pos} of {size} bytes")
            await trio.to_thread.run_sync(feed, data, limiter=self._cpu)
            pos += len(data)
        await trio.to_thread.run_sync(feed, None, limiter=self._cpu)
        return leaves

    @staticmethod
    def _check(file: MerkleHash, terms: Sequence[TermLike], leaves: Sequence[tuple[MerkleHash, int]]) -> Shard:
        if file_hash(leaves) != file:
            raise ValueError("chunking the base file does not give its file hash (other chunking parameters?)")
        return layout_shard(terms, leaves)

    def _keep(self, file: MerkleHash, shard: Shard, entries: int) -> None:
        self._ready[file] = shard
        self._entries += sum(len(x.chunks) for x in shard.xorbs)
        while self._entries > self.max_entries and len(self._ready) > 1:
            _, old = self._ready.popitem(last=False)
            self._entries -= sum(len(x.chunks) for x in old.xorbs)
