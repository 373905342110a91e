"""Mount lifecycle: resolve the revision, build the tree, serve FUSE, unmount (docs/architecture.md, "Stages").

``run_mount(options, on_ready)``:
1. cheap preconditions (``check_mountpoint``): the mountpoint exists, is an empty directory, /dev/fuse is
   usable — before any network I/O;
2. the revision is resolved to a commit (a missing repo/revision or a bad token fails here with one line),
   the tree of that commit is listed, the xet read token fetched; a branch or ``refs/pr/N`` is then followed
   by ``fs.follow`` (its head polled every ``--poll-interval``, new commits swapped in);
3. ``pyfuse3.init`` mounts; the mount's backing-device readahead is raised (``read_ahead_kb``, found
   through /proc/self/mountinfo so we never stat our own mountpoint before serving it) to 256 KiB: large
   ``read`` calls still arrive as requests of up to 1 MiB, while a page fault reads only 256 KiB around it
   (so loading one tensor spills little into its neighbours; ``xetfs.read.readahead`` fetches the rest); ``on_ready(None)`` tells the waiting parent (daemon mode) that the mount is usable;
4. ``pyfuse3.main()`` serves until ``fusermount3 -u`` or SIGTERM/SIGINT (-> ``pyfuse3.terminate``); the
   background nursery (readahead fetches) is cancelled and the session closed (unmounting if still mounted).

All background work (prefetch fetches, the follow poll) lives in one nursery owned here. ``RepoBackend`` wires the VFS to
``FileReader`` (Xet files, one shared ``Fetcher``) and the Hub resolve route (other files: a small LRU, and the
cache dir's regular-file store, ``xetfs.read.regular_store``, for the small files of the mounted commit).
"""
from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio
from cachetools import LRUCache

from xetfs.read.cache import ChunkCache
from xetfs.client.config import RepoRef
from xetfs.core.hashing import MerkleHash
from xetfs.read.reader import Fetcher, FileReader
from xetfs.read.regular_store import MAX_BYTES as REGULAR_WHOLE_MAX_BYTES, get_regular, put_regular
from xetfs.errors import ValidationError
from xetfs.fs.offline import Gate, GatedSource, ReconnectParams, arm, probe_of, reconnect, resolve_start
from xetfs.fs.metrics import sampler, serve_metrics
from xetfs.fs.follow import Follower, commit_mtime_ns, follower_for
from xetfs.fs.stats import CacheStats, EndpointStats, MountStats, PendingStats
from xetfs.fs.vfs import Tree, Vfs
from xetfs.protocol.hub import RepoInfo, TreeEntry
from xetfs.transport.tasks import single_error

if TYPE_CHECKING:
    from xetfs.client.hub import HubClient
    from xetfs.write.staging import Staging
    from xetfs.write.writeback import Writeback

log = logging.getLogger(__name__)

MiB = 1024 * 1024
REGULAR_CACHE_BYTES = 64 * MiB
# Chunks readers asked for whole that the memory tier keeps, with a disk tier behind it: the kernel's page
# cache holds their bytes (``keep_cache``), so more would only grow the daemon (read.memory_tier)
CONSUMED_MEMORY_BYTES = 16 * MiB
RECONNECT = ReconnectParams()


@dataclass(frozen=True, slots=True)
class MountOptions:
    repo: RepoRef
    mountpoint: Path
    endpoint: str
    token: str | None
    cache_dir: Path
    disk_cache_bytes: int = 10 * 1024 * MiB
    memory_cache_bytes: int = 256 * MiB
    read_timeout_s: float = 120.0
    fetch_timeout_s: float = 90.0
    read_ahead_kb: int = 256
    readahead_max_bytes: int = 64 * MiB
    max_parallel_fetches: int = 4
    extra_fuse_options: tuple[str, ...] = field(default_factory=tuple)
    read_only: bool = False                 # a branch mounts writable unless this is set
    writeback_cache: bool = False           # --writeback-cache: the kernel gathers writes (writable mounts)
    staging_bytes: int = 50 * 1024 * MiB    # --staging-size: staged files beyond it -> ENOSPC
    commit_delay_s: float = 0.5             # --commit-delay: closes within it share one commit
    retry_max_s: float = 30.0               # --upload-retry-max: backoff cap of failed uploads
    metrics_addr: tuple[str, int] | None = None   # --metrics-addr: Prometheus text there (fs.metrics)
    poll_interval_s: float = 30.0           # --poll-interval: check a branch's head (0: never; fs.follow)


def staging_dir(opts: MountOptions) -> Path:
    """One staging area (and journal) per repo + branch + cache dir (docs/architecture.md, "Durability")."""
    safe = opts.repo.revision.replace("/", "%2F")
    return opts.cache_dir / "staging" / opts.repo.repo_type / opts.repo.repo_id / safe


def check_mountpoint(path: Path) -> None:
    """One-line errors for the preconditions that need no network, checked before any request."""
    if not os.path.exists("/dev/fuse"):
        raise ValidationError("FUSE is not available: /dev/fuse is missing (modprobe fuse, or run with --device /dev/fuse)")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise ValidationError("FUSE is not usable: no read/write access to /dev/fuse")
    if not path.exists():
        raise ValidationError(f"mountpoint {path} does not exist")
    if not path.is_dir():
        raise ValidationError(f"mountpoint {path} is not a directory")
    if os.path.ismount(path):
        raise ValidationError(f"{path} is already a mountpoint")
    if any(path.iterdir()):
        raise ValidationError(f"mountpoint {path} is not empty")


def bdi_of(mountpoint: Path, mountinfo: str | None = None) -> str | None:
    """``major:minor`` of a mounted filesystem, from /proc/self/mountinfo (no stat of the mount itself)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    target = str(mountpoint).replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == target:
            found = fields[2]   # the last one wins: the most recent mount on that path
    return found


async def raise_readahead(mountpoint: Path, kb: int, attempts: int = 50) -> None:
    """Write ``read_ahead_kb``. The kernel resets it when the FUSE INIT reply arrives (which happens once
    ``pyfuse3.main`` runs), so write until the value sticks."""
    dev = bdi_of(mountpoint)
    if dev is None:
        log.warning("cannot find %s in /proc/self/mountinfo; readahead left as is", mountpoint)
        return
    path = Path(f"/sys/class/bdi/{dev}/read_ahead_kb")
    try:
        for _ in range(attempts):
            path.write_text(str(kb))
            await trio.sleep(0.02)
            if path.read_text().strip() == str(kb):
                await trio.sleep(0.05)
                if path.read_text().strip() == str(kb):
                    return
    except OSError as exc:   # not root, or no sysfs: a slower mount, not a broken one
        log.info("cannot raise read_ahead_kb of %s: %s", dev, exc)
        return
    log.warning("read_ahead_kb of %s did not stay at %d", dev, kb)


class RepoBackend:
    """Bytes for the VFS: FileReader for Xet files, the resolve route for the rest."""

    def __init__(self, hub: HubClient, repo: RepoRef, fetcher: Fetcher, read_timeout_s: float,
                 gate: Gate | None = None, *, cache_dir: Path | None = None, entries: Iterable[TreeEntry] = ()) -> None:
        self.hub = hub
        self.cache_dir = cache_dir
        # the small regular files of the mounted commit, path -> git blob id: the cache dir's regular-file store
        # may hold them (xetfs.read.regular_store; kept by earlier reads and by xetfs prefetch, served offline)
        self._oids = {e.path: e.oid for e in entries if e.is_file and e.xet_hash is None}
        self.gate = gate
        self.repo = repo
        self.fetcher = fetcher
        self.read_timeout_s = read_timeout_s
        self._regular: LRUCache[tuple[str, str], bytes] = LRUCache(maxsize=REGULAR_CACHE_BYTES, getsizeof=len)

    def reader(self, xet_hash: MerkleHash, size: int) -> FileReader:
        return FileReader(self.fetcher.cas, xet_hash, size, fetcher=self.fetcher, read_timeout_s=self.read_timeout_s)

    async def read_regular(self, path: str, file_size: int, offset: int, size: int) -> bytes:
        return await self.read_regular_at(self.repo.revision, path, file_size, offset, size)

    async def read_regular_at(self, commit: str, path: str, file_size: int, offset: int, size: int) -> bytes:
        """A regular (non-Xet) file as of ``commit`` (an immutable key: cached by commit and path)."""
        repo = self.repo.at(commit)
        with trio.fail_after(self.read_timeout_s):
            if file_size > REGULAR_WHOLE_MAX_BYTES:
                return await self._resolve(repo, path, (offset, offset + size))
            data = self._regular.get((commit, path))
            if data is None:
                data = await self._whole_regular(repo, path, file_size)
                self._regular[(commit, path)] = data
        return data[offset:offset + size]

    async def _whole_regular(self, repo: RepoRef, path: str, file_size: int) -> bytes:
        """A small regular file: from the regular-file store when it holds it, else fetched and kept there."""
        oid = self._oids.get(path) if repo.revision == self.repo.revision else None
        if oid is None or self.cache_dir is None:
            return await self._resolve(repo, path, None)
        data = await trio.to_thread.run_sync(get_regular, self.cache_dir, oid, file_size)
        if data is None:
            data = await self._resolve(repo, path, None)
            await trio.to_thread.run_sync(put_regular, self.cache_dir, oid, data)   # checks it is that blob
        return data

    async def _resolve(self, repo: RepoRef, path: str, byte_range: tuple[int, int] | None) -> bytes:
        if self.gate is None:
            return await self.hub.resolve(repo, path, byte_range)
        return await self.gate.run(f"reading {path}", lambda: self.hub.resolve(repo, path, byte_range))


def endpoints_snapshot(hub: HubClient) -> EndpointStats:
    """Failover health of the Hub/CAS nodes (``xetfs.transport.endpoints``; empty ``nodes`` until several are used)."""
    health = hub.failover.health
    return EndpointStats(urls=list(hub.endpoints), nodes=health.snapshot(), failovers=health.failovers,
                         retries=health.retries)


def stats_snapshot(opts: MountOptions, commit: str, vfs: Vfs, fetcher: Fetcher, writeback: Writeback | None = None,
                   hub: HubClient | None = None, follow: Follower | None = None) -> MountStats:
    s = fetcher.stats
    commit = follow.commit if follow is not None and writeback is None else commit
    write = {**writeback.snapshot(), "write_requests": vfs.write_requests, "bytes_written": vfs.bytes_written,
             "writeback_cache": opts.writeback_cache} if writeback is not None else None
    return MountStats(
        writable=writeback is not None, write=write,
        endpoints=endpoints_snapshot(hub) if hub is not None else None,
        pid=os.getpid(), repo=str(opts.repo), commit=commit, mountpoint=str(opts.mountpoint),
        bytes_read=vfs.bytes_read, bytes_fetched=s.bytes_fetched, cache=CacheStats.of(fetcher.cache.snapshot()),
        reconstructions=s.reconstructions, fetches=s.fetches, retries=s.refetches,
        integrity_failures=s.integrity_failures, read_errors=s.read_errors, fetches_joined=s.fetches_joined,
        open_files=vfs.open_files(), follow=follow.stats() if follow is not None else None,
        link=hub.failover.reach.snapshot() if hub is not None and hub.failover.reach is not None else None,
        pending=PendingStats(fetches=s.pending_fetches, reconstructions=s.pending_reconstructions,
                             open_handles=vfs.open_handles, streams=fetcher.streams.running,
                             files=int(write["pending_files"]) if write else 0,
                             bytes=int(write["pending_bytes"]) if write else 0))


class Ready(Protocol):
    """Tells the waiting parent the outcome: an error, or ready (with a notice for the user's terminal)."""

    def __call__(self, error: str | None, notice: str | None = None) -> None: ...


def run_mount(opts: MountOptions, on_ready: Ready) -> int:
    check_mountpoint(opts.mountpoint)
    with single_error():     # an error raised in the mount's nursery (e.g. a busy --metrics-addr) as itself
        return trio.run(_serve, opts, on_ready)


async def _serve(opts: MountOptions, on_ready: Ready) -> int:
    import pyfuse3

    from xetfs.client.cas import CasClient, TokenProvider
    from xetfs.transport.http import make_http_client
    from xetfs.fs.fuse_ops import FuseOps, invalidate_entries
    from xetfs.client.hub import HubClient

    async with make_http_client() as client:
        hub = HubClient(opts.endpoint, opts.token, client)
        start = await resolve_start(hub, opts.repo, opts.cache_dir, read_only=opts.read_only)
        info, commit, writable, notice = start.info, start.info.sha, start.writable, start.notice
        reach = arm(client, start.offline, RECONNECT)
        gate = Gate(reach)
        pinned = opts.repo.at(commit)
        tree = Tree(start.entries)
        follower = await follower_for(hub, opts.repo, commit, start.entries, opts.poll_interval_s,
                                      start.is_branch if start.offline or not opts.read_only else None,
                                      list_timeout_s=opts.read_timeout_s, invalidate=invalidate_entries,
                                      cache_dir=opts.cache_dir)
        tokens = TokenProvider(lambda: hub.xet_token(pinned, "read"))
        cas = GatedSource(CasClient(tokens, client), gate)
        cache = ChunkCache(opts.memory_cache_bytes, opts.cache_dir, opts.disk_cache_bytes,
                           consumed_memory_bytes=CONSUMED_MEMORY_BYTES)
        staging = _open_staging(opts) if writable else None
        try:
            async with trio.open_nursery() as nursery:
                fetcher = Fetcher(cas, cache, nursery=nursery, fetch_timeout_s=opts.fetch_timeout_s,
                                  max_parallel_fetches=opts.max_parallel_fetches)
                backend = RepoBackend(hub, pinned, fetcher, opts.read_timeout_s, gate, cache_dir=opts.cache_dir,
                                      entries=start.entries)
                vfs, writeback = _make_vfs(opts, hub, tree, backend, staging, commit, info, fetcher, follower)
                if opts.metrics_addr is not None:
                    await nursery.start(serve_metrics, opts.metrics_addr, sampler(vfs.stats, fetcher.stats))
                fuse_options = set(pyfuse3.default_options) | {f"fsname=xetfs:{opts.repo.repo_id}",
                                                               "subtype=xetfs", *opts.extra_fuse_options}
                if writeback is None:
                    fuse_options.add("ro")
                pyfuse3.init(FuseOps(vfs, writeback_cache=opts.writeback_cache and writeback is not None),
                             str(opts.mountpoint), fuse_options)
                try:
                    nursery.start_soon(_on_signals, pyfuse3.terminate)
                    nursery.start_soon(reconnect, reach, probe_of(hub, opts.repo), RECONNECT)
                    if writeback is not None:
                        await nursery.start(writeback.run)
                        if staging is not None and staging.pending:
                            writeback.kick()   # resume what the previous mount left journaled
                    if follower is not None:
                        nursery.start_soon(follower.run, vfs, writeback)
                    nursery.start_soon(_announce, opts, commit, len(tree), on_ready, notice)
                    await pyfuse3.main()
                finally:
                    pyfuse3.close(unmount=True)
                    await fetcher.drain()
                    nursery.cancel_scope.cancel()
        finally:
            if staging is not None:
                if staging.pending:
                    log.warning("%d changes stay journaled in %s; the next mount uploads them",
                                len(staging.pending), staging.root)
                staging.close()
    log.info("unmounted %s", opts.mountpoint)
    return 0


def _open_staging(opts: MountOptions) -> Staging:
    """The branch's staging area; a second writable mount of the same branch and cache dir fails."""
    from xetfs.write.staging import Staging, StagingBusy

    try:
        return Staging(staging_dir(opts), opts.staging_bytes)
    except StagingBusy:
        raise StagingBusy(f"another writable mount of {opts.repo} uses the cache dir {opts.cache_dir}: unmount it, "
                          "give this mount its own --cache-dir, or mount --read-only") from None


def _make_vfs(opts: MountOptions, hub: HubClient, tree: Tree, backend: RepoBackend, staging: Staging | None,
              commit: str, info: RepoInfo, fetcher: Fetcher, follower: Follower | None
              ) -> tuple[Vfs, Writeback | None]:
    readahead_max = min(opts.readahead_max_bytes, max(MiB, opts.memory_cache_bytes // 4))
    if staging is None:
        ro = Vfs(tree, backend, mtime_ns=commit_mtime_ns(info), readahead_max_bytes=readahead_max,
                 stats=lambda: stats_snapshot(opts, commit, ro, fetcher, hub=hub, follow=follower).to_json())
        return ro, None
    from xetfs.transport.retry import RetryPolicy
    from xetfs.fs.writable import WritableVfs
    from xetfs.client.hub import HubClient
    from xetfs.core.reconstruction import ReconstructionTerm
    from xetfs.write.basecands import BaseCandidates
    from xetfs.write.session import UploadParams
    from xetfs.write.shardcache import ShardCache, shard_cache_dir
    from xetfs.write.writeback import Writeback, WritebackParams

    vfs: WritableVfs       # both named by the stats callback before they exist
    writeback: Writeback
    vfs = WritableVfs(tree, backend, staging, commit=commit, mtime_ns=commit_mtime_ns(info),
                      readahead_max_bytes=readahead_max,
                      stats=lambda: stats_snapshot(opts, writeback.base, vfs, fetcher, writeback, hub,
                                                   follower).to_json())
    vfs.apply_pending()
    base = staging.base_commit if staging.pending and staging.base_commit else commit
    params = WritebackParams(commit_delay_s=opts.commit_delay_s, max_delay_s=max(5.0, opts.commit_delay_s * 4),
                             retry_max_s=opts.retry_max_s,   # layouts of what it stores: for BaseCandidates.learn
                             upload=UploadParams(keep_layouts=True))
    # The writeback retries whole batches itself: its requests fail fast so stats show the error.
    wb_hub = HubClient(hub.endpoint, hub.token, hub.http, retry=RetryPolicy(max_attempts=3, max_delay_s=2.0,
                                                                              max_total_s=60.0))

    async def terms(file: MerkleHash) -> tuple[ReconstructionTerm, ...]:
        return (await fetcher.cas.reconstruction(file)).terms

    candidates = BaseCandidates(terms, backend.reader, timeout_s=opts.read_timeout_s)
    writeback = Writeback(wb_hub, opts.repo, staging, vfs, base,
                          ShardCache(shard_cache_dir(opts.cache_dir, opts.endpoint)), params, candidates)
    vfs.kick = writeback.kick
    vfs.start_stream = writeback.start_stream
    vfs.prepare_base, vfs.note_read = candidates.prepare, candidates.note_read
    return vfs, writeback


async def _announce(opts: MountOptions, commit: str, entries: int, on_ready: Ready, notice: str | None) -> None:
    """Once pyfuse3.main serves (INIT answered): raise the readahead, then report readiness."""
    await raise_readahead(opts.mountpoint, opts.read_ahead_kb)
    log.info("mounted %s (commit %s, %d entries) at %s", opts.repo, commit, entries, opts.mountpoint)
    on_ready(None, notice)


async def _on_signals(terminate: Callable[[], None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.warning("signal %s: unmounting", signal.Signals(signum).name)
            terminate()
            return
