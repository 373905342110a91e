"""The write path: local files -> chunks -> dedup -> xorbs + shard on the CAS -> one Hub commit
(docs/architecture.md, "The write path"; docs/protocol.md: commits).

1. ``preupload`` asks the Hub, per file, ``regular`` (inline base64 in the commit) or ``lfs`` (through Xet).
   Empty files are always regular, like huggingface_hub; files the Hub says to ignore are skipped.
2. The Xet files go through one upload session (``xetfs.write.session``): chunked, deduplicated against
   the local shard cache and the server's global dedup, new xorbs and then the shard stored on the CAS.
3. ``commit`` sends the NDJSON body: ``file`` lines for regular files, ``lfsFile`` (sha256 + size) lines.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.core.hashing import MerkleHash
from xetfs.core.shard import Shard
from xetfs.protocol.hub import AddRegular, AddXet, CommitOp, PreuploadFile
from xetfs.write.growing import GrowingFile
from xetfs.write.session import (FROM_BASE, FROM_SERVER, Answers, FROM_SESSION, FROM_SHARD_CACHE, LocalSource,
                                 Progress, Source, UploadParams, UploadSession, UploadStats, XetFile, upload_session)
from xetfs.write.shardcache import ShardCache, StaleShardCache

__all__ = ["Answers", "FROM_BASE", "FROM_SERVER", "FROM_SESSION", "FROM_SHARD_CACHE", "GrowingFile", "LocalSource",
           "PreparedCommit", "Progress", "Source", "UploadParams", "UploadResult", "UploadSession", "UploadStats",
           "XetFile", "prepare_commit_ops", "upload_files", "upload_session", "write_cas"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UploadResult:
    commit_oid: str
    commit_url: str
    stats: UploadStats
    files: dict[str, XetFile] = field(default_factory=dict)   # path in repo -> Xet file (lfs files only)




# ---------------------------------------------------------------------------------------------- files -> commit

def _describe(source: LocalSource) -> tuple[int, bytes]:
    """(size, first 512 bytes) for the preupload call."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source), bytes(source[:512])
    with open(source, "rb") as f:
        return os.fstat(f.fileno()).st_size, f.read(512)


def _read_all(source: LocalSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source).read_bytes()


def write_cas(hub: HubClient, repo: RepoRef) -> CasClient:
    """A CAS client holding a write token for ``repo`` (refreshed from the Hub before it expires)."""
    return CasClient(TokenProvider(lambda: hub.xet_token(repo, "write")), hub.http, retry=hub.retry)


@dataclass(frozen=True, slots=True)
class PreparedCommit:
    """The data of some files is stored on the CAS; ``ops`` commit them (``shard``: the uploaded shard)."""

    ops: list[CommitOp]
    files: dict[str, XetFile]
    shard: Shard | None
    learned: Shard | None = None     # worth keeping in the local shard cache too
    layouts: dict[MerkleHash, Shard] = field(default_factory=dict)   # UploadParams.keep_layouts

    def keep(self) -> list[Shard]:
        """The shards the local shard cache should keep after this commit."""
        return [s for s in (self.shard, self.learned) if s is not None]


class _ProgressOnce:
    """``progress`` that never counts a byte twice: an upload tried again reports from 0 once more
    (``again``), and only what passes the furthest point already reported is forwarded."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.reported = 0
        self.seen = 0

    def again(self) -> None:
        self.seen = 0

    def __call__(self, n: int) -> None:
        self.seen += n
        if self.seen > self.reported:
            self.progress(self.seen - self.reported)
            self.reported = self.seen


async def prepare_commit_ops(hub: HubClient, repo: RepoRef, files: Sequence[tuple[LocalSource, str]], *,
                             stats: UploadStats, progress: Progress | None = None,
                             params: UploadParams = UploadParams(), shard_cache: ShardCache | None = None,
                             answers: Answers | None = None, base_shards: Sequence[Shard] = ()) -> PreparedCommit:
    """Preupload, then upload the Xet files' xorbs and shard; returns the commit operations for all files.

    With a ``shard_cache`` the upload first deduplicates against the shards it holds. When the server refuses
    the shard because the cache named xorbs it no longer stores (``StaleShardCache``: its data was reset
    behind the same URL, or collected), the cache is cleared and the files are uploaded once more without it;
    ``stats`` and ``progress`` then count that second upload only."""
    known = await trio.to_thread.run_sync(shard_cache.load) if shard_cache is not None else []
    once = _ProgressOnce(progress) if progress is not None else None
    before = stats.copy()
    try:
        return await _prepare(hub, repo, files, stats=stats, progress=once, params=params, known_shards=known,
                              answers=answers, base_shards=base_shards)
    except StaleShardCache as exc:
        assert shard_cache is not None
        log.warning("%s; clearing the local shard cache and uploading again", exc)
        await trio.to_thread.run_sync(shard_cache.clear)
        stats.set(before)
        if once is not None:
            once.again()
        return await _prepare(hub, repo, files, stats=stats, progress=once, params=params, known_shards=(),
                              answers=answers, base_shards=base_shards)


async def _prepare(hub: HubClient, repo: RepoRef, files: Sequence[tuple[LocalSource, str]], *,
                   stats: UploadStats, progress: Progress | None, params: UploadParams,
                   known_shards: Sequence[Shard], answers: Answers | None,
                   base_shards: Sequence[Shard]) -> PreparedCommit:
    if not files:
        return PreparedCommit([], {}, None)
    learned: Shard | None = None
    layouts: dict[MerkleHash, Shard] = {}
    described = [await trio.to_thread.run_sync(_describe, src) for src, _ in files]
    modes = await hub.preupload(repo, [PreuploadFile(path, size, sample)
                                         for (_, path), (size, sample) in zip(files, described)])
    ops: list[CommitOp] = []
    xet_files: dict[str, XetFile] = {}
    shard: Shard | None = None
    lfs = [(src, path) for (src, path), (size, _) in zip(files, described)
           if modes[path].mode == "lfs" and size > 0 and not modes[path].should_ignore]
    if lfs:
        cas = write_cas(hub, repo)
        async with upload_session(cas, params, stats=stats, progress=progress,
                                  known_shards=known_shards, answers=answers, base_shards=base_shards) as session:
            for src, path in lfs:
                xet_files[path] = await session.add_file(src)
        shard, learned, layouts = session.shard, session.learned, session.layouts
        ops.extend(AddXet(p, f.sha256, f.size) for p, f in xet_files.items())
    for (src, path), (size, _) in zip(files, described):
        if path not in xet_files and not modes[path].should_ignore:
            content = await trio.to_thread.run_sync(_read_all, src)
            ops.append(AddRegular(path, content))
            stats.regular_bytes += len(content)
            if progress is not None:
                progress(len(content))
    return PreparedCommit(ops, xet_files, shard, learned, layouts)


async def upload_files(hub: HubClient, repo: RepoRef, files: Sequence[tuple[LocalSource, str]], message: str, *,
                       description: str = "", parent_commit: str | None = None, progress: Progress | None = None,
                       params: UploadParams = UploadParams(), shard_cache: ShardCache | None = None) -> UploadResult:
    """Upload ``(local path or bytes, path in repo)`` pairs as one commit on ``repo.revision``. With a
    ``shard_cache`` the upload first deduplicates against the shards it holds, and the new shard joins it."""
    stats = UploadStats()
    prepared = await prepare_commit_ops(hub, repo, files, stats=stats, progress=progress, params=params,
                                        shard_cache=shard_cache)
    if shard_cache is not None:
        for shard in prepared.keep():
            await trio.to_thread.run_sync(shard_cache.save, shard)
    stats.files = len(prepared.ops)
    stats.total_bytes = stats.regular_bytes + sum(f.size for f in prepared.files.values())
    info = await hub.commit(repo, prepared.ops, message, description=description, parent_commit=parent_commit)
    log.info("committed %d files to %s as %s: %s", len(prepared.ops), repo, info.oid, stats)
    return UploadResult(info.oid, info.url, stats, prepared.files)
