"""Upload a file while it is being written (docs/architecture.md, "The write path").

A staged file that grows by appends only (a new or truncated file written front to back) gets a
``StreamUpload`` once it passes ``STREAM_MIN_BYTES``: an upload session of its own reads the staged data
file as the writer appends (``GrowingFile``), chunks and hashes it in worker threads, and uploads completed
xorbs before the file is closed. The last close finishes the stream (last chunk, file hash, last xorb, shard);
the writeback then commits the file by its sha256 without reading it again. Any other change of the file
(a write that is not an append, a truncate, a write after the last close) drops the stream: the writeback
falls back to chunking the file at commit time, deduplicating against what the stream already stored.
Before it places a chunk, a stream registers its dedup candidates from the mounted revision (``base``:
``xetfs.write.basecands``, the files read since the mount and the file its path held).

Durability is unchanged: close still fsyncs the data and journals the change; a stream lives in memory only
(after a crash the journaled file is chunked again). Memory: at most ``max_streams`` streams at a time, each
one upload pipeline (bounded as in ``xetfs.write.upload``) plus the bytes of appends it keeps
(``xetfs.write.growing``, bounded); what it did not keep it reads from the data file through its own ``dup`` of
the descriptor, so a staged file released meanwhile never makes it read another file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.core.shard import Shard
from xetfs.osutil.directio import open_direct_reader
from xetfs.write.shardcache import ShardCache
from xetfs.write.upload import (Answers, GrowingFile, UploadParams, UploadStats, XetFile, upload_session,
                                write_cas)

log = logging.getLogger(__name__)

STREAM_MIN_BYTES = 16 << 20

BaseShards = Callable[[], Awaitable[list[Shard]]]   # the dedup candidates of the file's base (write.basecands)


@dataclass(frozen=True, slots=True)
class Streamed:
    """What a finished stream stored: the file, its shard (uploaded), what dedup answers taught."""

    file: XetFile
    shard: Shard | None
    learned: Shard | None
    stats: UploadStats
    layout: Shard | None = None   # the file's layout (UploadParams.keep_layouts)

    def keep(self) -> list[Shard]:
        return [s for s in (self.shard, self.learned) if s is not None]


class StreamUpload:
    """One file streamed to the CAS as it is appended to (see the module docstring)."""

    def __init__(self, fd: int, hub: HubClient, repo: RepoRef, params: UploadParams, shard_cache: ShardCache,
                 answers: Answers | None = None, base: BaseShards | None = None) -> None:
        self._fd = os.dup(fd)
        self._direct_fd = open_direct_reader(fd)   # what the upload reads back skips the page cache
        self.base = base
        self.answers = answers
        self.growing = GrowingFile(self._fd, direct_fd=self._direct_fd)
        self.hub, self.repo, self.params, self.shard_cache = hub, repo, params, shard_cache
        self.stats = UploadStats()
        self.result: Streamed | None = None
        self.dropped = False
        self._scope = trio.CancelScope()
        self._done = trio.Event()

    @property
    def finished(self) -> bool:
        return self.growing.finished

    def appended(self, end: int, data: bytes | None = None) -> bool:
        """The file now ends at ``end``; ``data``: its last bytes, when the caller has them (no read back).
        Whether they were kept (``GrowingFile.grew``)."""
        return self.growing.grew(end, data)

    def finish(self) -> None:
        """The writer closed the file: read to the end, then store the last xorb and the shard."""
        self.growing.finish()

    def drop(self) -> None:
        """The file changed other than by an append: stop; its content is chunked at commit time."""
        self.dropped = True
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                base = await self.base() if self.base is not None else []
                known = await trio.to_thread.run_sync(self.shard_cache.load)
                async with upload_session(write_cas(self.hub, self.repo), self.params, stats=self.stats,
                                          known_shards=known, answers=self.answers, base_shards=base) as session:
                    xet = await session.add_file(self.growing)
                self.result = Streamed(xet, session.shard, session.learned, self.stats,
                                       session.layouts.get(xet.file_hash))
        except Exception as exc:   # the commit falls back to chunking the file: log, never crash the mount
            log.warning("streaming upload stopped (%s: %s); the file is uploaded at commit time",
                        type(exc).__name__, exc)
        finally:
            os.close(self._fd)
            if self._direct_fd is not None:
                os.close(self._direct_fd)
            self._done.set()

    async def wait(self) -> Streamed | None:
        """The finished stream's result, or None (dropped or failed)."""
        await self._done.wait()
        return None if self.dropped else self.result


class Streams:
    """The streams of one writable mount: at most ``max_streams`` at a time, run in ``nursery`` (set by
    ``Writeback.run``; without it nothing streams)."""

    def __init__(self, hub: HubClient, repo: RepoRef, params: UploadParams, shard_cache: ShardCache,
                 answers: Answers, max_streams: int = 2) -> None:
        self.hub, self.repo, self.params, self.shard_cache = hub, repo, params, shard_cache
        self.answers = answers
        self.max_streams = max_streams
        self.nursery: trio.Nursery | None = None
        self.active = 0
        self.started = 0     # streams started since the mount (stats)

    def start(self, fd: int, base: BaseShards | None = None) -> StreamUpload | None:
        if self.nursery is None or self.active >= self.max_streams:
            return None
        stream = StreamUpload(fd, self.hub, self.repo, self.params, self.shard_cache, self.answers, base)
        self.active += 1
        self.started += 1
        self.nursery.start_soon(self._run, stream)
        return stream

    async def _run(self, stream: StreamUpload) -> None:
        try:
            await stream.run()
        finally:
            self.active -= 1
