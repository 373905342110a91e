"""Prefetch: warm a cache dir with whole files of one revision, without a mount (docs/architecture.md, "Cache
management"; used by ``xetfs prefetch``).

1. The revision is resolved to its commit, the commit's tree listed, and the revision snapshot saved
   (``xetfs.read.snapshot``: what an offline mount starts from). With ``pin``, the selected Xet files are pinned
   first (``xetfs.read.pins``), so a running mount's eviction spares each layout as soon as it is stored.
2. Files already complete in the cache (their stored layout covers them and every chunk it names is in an entry,
   ``CacheIndex.file_coverage``) are skipped. The others are read front to back through ``FileReader`` with a
   ``Fetcher`` over the cache dir's disk tier (verified per term, like a mount), so their chunks land in chunk
   entries and their layouts are stored, merged under a lock with what running mounts store
   (``DiskTier.update_layout``). Every disk write is an atomic rename: mounts sharing the cache dir meanwhile see
   whole entries or none.
   The tier's bound (``--cache-size``, on unpinned bytes) is applied after each pass, once the layouts that
   make the pins protect the new chunks are stored; a selection that cannot fit unpinned is refused up front.
3. The files are checked again; one that fell short (an eviction by a mount meanwhile) is read once more.

Regular (non-Xet) files up to ``regular_store.MAX_BYTES`` are fetched whole, checked against their git blob id
and kept in the cache dir's regular-file store (``xetfs.read.regular_store``); larger ones are only counted.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.errors import IntegrityError, ValidationError, XetError
from xetfs.protocol.hub import TreeEntry
from xetfs.read.cache import ChunkCache
from xetfs.read.cache_admin import CacheIndex, load_layout
from xetfs.read.download import Progress, select
from xetfs.read.fetcher import Fetcher
from xetfs.read.pins import PinNote, add_pins
from xetfs.read.reader import FileReader
from xetfs.read.regular_store import MAX_BYTES, has_regular, put_regular
from xetfs.read.snapshot import save_snapshot, snapshot_of

log = logging.getLogger(__name__)

MiB = 1024 * 1024
BLOCK_BYTES = 16 * MiB
FILES_IN_PARALLEL = 2
PASSES = 2
UNBOUNDED = 1 << 62



@dataclass(frozen=True, slots=True)
class PrefetchResult:
    commit: str
    files: int                 # Xet files now complete in the cache
    bytes: int                 # their total size
    already_cached: int        # files that were complete before
    fetched_bytes: int         # xorb bytes received from the network
    regular_files: int         # regular files now in the regular-file store
    uncached_files: int        # regular files too large for it (mounts read them from the server)
    pinned: int                # pins added (0 without --pin)


async def resolve_revision(hub: HubClient, repo: RepoRef) -> tuple[str, list[TreeEntry], str | None, bool]:
    """(commit, its tree, its date, whether ``repo.revision`` is a branch)."""
    info = await hub.repo_info(repo)
    entries = await hub.list_tree(repo.at(info.sha))
    try:
        is_branch = repo.revision in await hub.branches(repo)
    except XetError as exc:
        log.info("cannot list the branches of %s: %s", repo, exc)
        is_branch = False
    return info.sha, entries, info.last_modified, is_branch


def incomplete(cache_dir: Path, files: Sequence[TreeEntry]) -> list[TreeEntry]:
    """The Xet files whose bytes the cache dir does not wholly hold (blocking)."""
    index = CacheIndex(cache_dir)
    out = []
    for e in files:
        assert e.xet_hash is not None
        terms = load_layout(cache_dir, e.xet_hash, e.size)
        if e.size and (terms is None or index.file_coverage(terms)[0] < e.size):
            out.append(e)
    return out


async def prefetch(hub: HubClient, repo: RepoRef, paths: Sequence[str], cache_dir: Path, *, pin: bool = False,
                   disk_bytes: int, memory_bytes: int = 128 * MiB,
                   on_plan: Callable[[int], object] = lambda total: None, progress: Progress = lambda n: None
                   ) -> PrefetchResult:
    """Warm ``cache_dir`` with ``paths`` (all files when empty) of ``repo`` at ``repo.revision``."""
    commit, entries, last_modified, is_branch = await resolve_revision(hub, repo)
    await trio.to_thread.run_sync(save_snapshot, cache_dir, snapshot_of(repo, commit, entries,
                                                                        last_modified=last_modified,
                                                                        is_branch=is_branch))
    chosen = select(entries, paths)
    xet = [e for e in chosen if e.xet_hash is not None]
    regular = [e for e in chosen if e.xet_hash is None]
    small = [e for e in regular if e.size <= MAX_BYTES]
    at = repo.at(commit)
    for e in small:
        if not await trio.to_thread.run_sync(has_regular, cache_dir, e.oid):
            data = await hub.resolve(at, e.path)
            if not await trio.to_thread.run_sync(put_regular, cache_dir, e.oid, data):
                raise IntegrityError(f"{e.path}: the server's bytes do not match the tree (git blob {e.oid}) "
                                     f"or cannot be written to {cache_dir}")
    added = 0
    if pin:
        notes = [(bytes(e.xet_hash), PinNote(repo.repo_id, repo.revision, e.path)) for e in xet if e.xet_hash]
        added = await trio.to_thread.run_sync(add_pins, cache_dir, notes)
    todo = await trio.to_thread.run_sync(incomplete, cache_dir, xet)
    if not pin and sum(e.size for e in todo) > disk_bytes:
        raise ValidationError(f"{sum(e.size for e in todo)} bytes to prefetch do not fit in --cache-size "
                              f"{disk_bytes}: raise it, or --pin them (pinned bytes are outside the bound)")
    on_plan(sum(e.size for e in todo))
    cas = CasClient(TokenProvider(lambda: hub.xet_token(at, "read")), hub.http, retry=hub.retry)
    # No eviction while reading: a file's chunks are written before its layout (which makes a pin protect them);
    # the bound is enforced once the layouts are stored, after each pass.
    cache = await trio.to_thread.run_sync(ChunkCache, memory_bytes, cache_dir, UNBOUNDED)   # scans the tier
    disk = cache.disk
    assert disk is not None
    fetched, first = 0, len(todo)
    for attempt in range(PASSES):
        if not todo:
            break
        fetched += await _read_files(cas, cache, todo, progress)
        if disk.size_bytes > disk_bytes:
            disk.max_bytes = disk_bytes
            await trio.to_thread.run_sync(disk.evict)
            disk.max_bytes = UNBOUNDED
        todo = await trio.to_thread.run_sync(incomplete, cache_dir, todo)
        if todo and attempt + 1 < PASSES:
            log.info("%d files fell short (evicted meanwhile?); reading them again", len(todo))
    if todo:
        raise IntegrityError(f"{len(todo)} files could not be completed in {cache_dir} (first: {todo[0].path}); "
                             "is --cache-size too small for them? (--pin keeps them)")
    return PrefetchResult(commit=commit, files=len(xet), bytes=sum(e.size for e in xet),
                          already_cached=len(xet) - first, fetched_bytes=fetched,
                          regular_files=len(small), uncached_files=len(regular) - len(small), pinned=added)


async def _read_files(cas: CasClient, cache: ChunkCache, files: Sequence[TreeEntry], progress: Progress) -> int:
    """Read ``files`` whole through one fetcher over ``cache``, flush its disk writes; the bytes fetched."""
    limiter = trio.CapacityLimiter(FILES_IN_PARALLEL)
    async with trio.open_nursery() as nursery:
        fetcher = Fetcher(cas, cache, nursery=nursery)
        async with trio.open_nursery() as files_nursery:
            for entry in files:
                files_nursery.start_soon(_read_one, fetcher, entry, limiter, progress)
        await fetcher.drain(timeout_s=300.0)   # the chunks and layouts reach the disk tier
        nursery.cancel_scope.cancel()          # readahead still running
    return fetcher.stats.bytes_fetched


async def _read_one(fetcher: Fetcher, entry: TreeEntry, limiter: trio.CapacityLimiter, progress: Progress) -> None:
    assert entry.xet_hash is not None
    async with limiter:
        reader = FileReader(fetcher.cas, entry.xet_hash, entry.size, fetcher=fetcher)
        offset = 0
        while offset < entry.size:
            data = await reader.read(offset, BLOCK_BYTES, fetch_end=min(entry.size, offset + 2 * BLOCK_BYTES))
            if not data:
                raise IntegrityError(f"{entry.path}: ends at {offset} of {entry.size} bytes")
            offset += len(data)
            progress(len(data))
