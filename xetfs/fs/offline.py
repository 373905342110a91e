"""How a mount starts (online, or offline from a revision snapshot) and how it runs without the server
(docs/architecture.md, "Offline mode").

Start (``resolve_start``). Online: the revision is resolved, its tree listed and saved as the revision's
snapshot (``xetfs.read.snapshot``), whether it is a branch and whether the token may write are asked. When the
server cannot be reached (``xetfs.transport.reachability.unreachable``: refused, reset, timed out, 5xx -- never
a 401/403/404, those stay errors) and the cache dir holds a snapshot of that revision, the mount starts
``offline`` from it, with one notice line for the user's terminal; with no snapshot the server's error stands.
A snapshot found up front shortens the retries of the start's first request (``START_RETRY``), so an offline
start waits seconds.

Running (``Gate``, ``GatedSource``, ``reconnect``). The mount arms a ``Reachability`` on its HTTP client:
every request attempt reports to it, a few connection-level failures in a row switch a running mount to
``degraded``. While offline or degraded, whatever needs the server -- a reconstruction, a xorb fetch, a read
token, a regular file not in memory -- raises ``ServerOffline`` (EIO) at once, and the calls already waiting
on the server are cancelled at the switch (EIO too); cached bytes (layouts and chunks in the disk tier) are
served and verified as usual, and staging keeps taking writes (the writeback retries its uploads on its own
schedule). ``reconnect`` probes the Hub with backoff (``ReconnectParams``: each probe bounded, the wait
between probes doubling up to a bound, cut to the minimum when a refused read asks for the server); any answer of a live server -- a probe's, an upload's -- switches back
to ``online`` (one log line), and the next read of an uncached file goes to the server (fetching the read
token then), without a remount.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction
from xetfs.errors import FormatError, XetError
from xetfs.protocol.hub import RepoInfo, TreeEntry
from xetfs.read.snapshot import Snapshot, load_snapshot, save_snapshot, snapshot_of
from xetfs.read.source import ChunkSource, RangeStream
from xetfs.transport.endpoints import failover_for
from xetfs.transport.http import http_status_of
from xetfs.transport.reachability import DEGRADED, OFFLINE, ONLINE, Reachability, ServerOffline, unreachable
from xetfs.transport.retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

# A start that has a snapshot to fall back on: a few quick attempts, then offline.
START_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.25, max_delay_s=1.0, max_total_s=15.0)


@dataclass(frozen=True, slots=True)
class ReconnectParams:
    first_s: float = 0.5            # first wait between probes, doubling ...
    max_s: float = 10.0             # ... up to this
    timeout_s: float = 5.0          # one probe's bound
    failures_to_degrade: int = 3    # connection-level failures in a row that make a running mount degraded


@dataclass(frozen=True, slots=True)
class Start:
    """What a mount starts from."""

    info: RepoInfo                  # the commit and its date
    entries: list[TreeEntry]
    is_branch: bool
    writable: bool
    offline: bool
    notice: str | None              # one line for the user's terminal (offline start, refused writes)


# ------------------------------------------------------------------------------------------------ start

async def resolve_start(hub: HubClient, repo: RepoRef, cache_dir: Path, *, read_only: bool) -> Start:
    """Online from the server, else offline from the cache dir's snapshot of ``repo`` (module docstring)."""
    snapshot = await trio.to_thread.run_sync(_load, cache_dir, repo)
    # With a snapshot to fall back on, the first request (is the server there?) gives up sooner; the rest of an
    # online start keeps the usual retries (a large tree listing may take its time).
    first = hub if snapshot is None else HubClient(hub.endpoint, hub.token, hub.http, retry=START_RETRY)
    try:
        return await _online(hub, await first.repo_info(repo), repo, cache_dir, read_only)
    except XetError as exc:
        if snapshot is None or not unreachable(exc):
            raise
        return offline_start(snapshot, hub.endpoint, exc, read_only=read_only)


def _load(cache_dir: Path, repo: RepoRef) -> Snapshot | None:
    try:
        return load_snapshot(cache_dir, repo)
    except (OSError, FormatError) as exc:
        log.warning("cannot read the revision snapshot of %s in %s: %s", repo, cache_dir, exc)
        return None


def offline_start(snapshot: Snapshot, endpoint: str, exc: BaseException, *, read_only: bool) -> Start:
    writable = snapshot.is_branch and not read_only
    notice = (f"OFFLINE: cannot reach {endpoint}; mounted {snapshot.repo} (commit {snapshot.commit[:12]}) from "
              f"the cache: cached files are served, other reads fail with EIO until the server answers again "
              f"(it reconnects by itself){'; writes are staged' if writable else ''}")
    log.warning("%s (%s)", notice, exc)
    return Start(RepoInfo(snapshot.commit, snapshot.last_modified), list(snapshot.entries), snapshot.is_branch,
                 writable, True, notice)


async def _online(hub: HubClient, info: RepoInfo, repo: RepoRef, cache_dir: Path, read_only: bool) -> Start:
    is_branch = not read_only and await _is_branch(hub, repo)   # (a read-only mount does not ask)
    writable, notice = is_branch, None
    if writable:
        refused = await _write_refused(hub, repo)
        if refused is not None:
            writable = False
            notice = f"the token cannot write to {repo} ({refused}): mounted read-only, writes fail with EROFS"
            log.warning("%s", notice)
    entries = await hub.list_tree(repo.at(info.sha))
    await _save_snapshot(cache_dir, snapshot_of(repo, info.sha, entries, last_modified=info.last_modified,
                                                is_branch=is_branch))
    return Start(info, entries, is_branch, writable, False, notice)


async def _save_snapshot(cache_dir: Path, snapshot: Snapshot) -> None:
    """Record the revision for an offline start later (``xetfs.read.snapshot``); a failure only logs."""
    try:
        await trio.to_thread.run_sync(save_snapshot, cache_dir, snapshot)
    except OSError as exc:
        log.warning("cannot save the revision snapshot of %s in %s: %s", snapshot.repo, cache_dir, exc)


async def _is_branch(hub: HubClient, repo: RepoRef) -> bool:
    """Writable only for a branch (a commit sha or a tag mounts read-only: EROFS)."""
    try:
        return repo.revision in await hub.branches(repo)
    except XetError as exc:
        if unreachable(exc):
            raise   # the start goes offline (or fails) rather than mounting read-only by accident
        log.info("cannot list the branches of %s (%s); mounting read-only", repo, exc)
        return False


async def _write_refused(hub: HubClient, repo: RepoRef) -> str | None:
    """Why the token cannot write to ``repo`` (the Hub refuses it a write token), or None."""
    try:
        await hub.xet_token(repo, "write")
    except XetError as exc:
        if http_status_of(exc) in (401, 403):
            return str(exc)
        log.info("cannot check write access to %s (%s); mounting writable", repo, exc)
    return None


# ---------------------------------------------------------------------------------------------- running

def arm(client: httpx.AsyncClient, offline: bool, params: ReconnectParams) -> Reachability:
    """The mount's ``Reachability`` (starting ``offline`` or ``online``), fed by every request on ``client``."""
    reach = Reachability(OFFLINE if offline else ONLINE, failures_to_degrade=params.failures_to_degrade)
    failover_for(client).reach = reach

    def told(old: str, new: str) -> None:
        if new == DEGRADED:
            log.warning("the server is unreachable (%s): DEGRADED mode, cached files are served, other reads "
                        "fail with EIO until it answers again", reach.last_error)
        elif new == ONLINE:
            log.warning("the server answers again: leaving %s mode", old)

    reach.on_change(told)
    return reach


class Gate:
    """Runs calls that need the server: refused at once unless online, cancelled when the mount goes
    offline or degraded while they wait."""

    def __init__(self, reach: Reachability) -> None:
        self.reach = reach
        self._scopes: set[trio.CancelScope] = set()
        reach.on_change(self._changed)

    def _changed(self, old: str, new: str) -> None:
        if new != ONLINE:
            for scope in self._scopes:
                scope.cancel()

    async def run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        if not self.reach.online:
            self.reach.poke()     # someone wants the server: probe soon (``reconnect`` bounds how often)
        self.reach.check(what)
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                return await call()
            finally:
                self._scopes.discard(scope)
        raise ServerOffline(f"{what}: the server became unreachable (mount is {self.reach.state})")


class GatedSource:
    """The CAS as the read path sees it (``xetfs.read.source.ChunkSource``), behind the mount's ``Gate``."""

    def __init__(self, inner: ChunkSource, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    async def reconstruction(self, file_hash: MerkleHash,
                             byte_range: tuple[int, int] | None = None) -> Reconstruction:
        return await self.gate.run(f"reconstruction of {file_hash}",
                                   lambda: self.inner.reconstruction(file_hash, byte_range))

    async def fetch_range_into(self, fr: FetchRange, out: bytearray | memoryview) -> int:
        return await self.gate.run(f"fetch of xorb {fr.xorb_hash}", lambda: self.inner.fetch_range_into(fr, out))

    @asynccontextmanager
    async def open_range(self, fr: FetchRange) -> AsyncIterator[RangeStream | None]:
        """None unless online (``fetch_range_into`` then says why); each receive runs behind the gate."""
        if not self.gate.reach.online:
            yield None
            return
        async with self.inner.open_range(fr) as body:
            yield None if body is None else _GatedStream(body, self.gate, f"fetch of xorb {fr.xorb_hash}")


class _GatedStream:
    """A ``RangeStream`` whose receives are cancelled when the mount goes offline or degraded."""

    def __init__(self, inner: RangeStream, gate: Gate, what: str) -> None:
        self.inner, self.gate, self.what = inner, gate, what

    async def recv_into(self, out: memoryview) -> int:
        return await self.gate.run(self.what, lambda: self.inner.recv_into(out))


async def reconnect(reach: Reachability, probe: Callable[[], Awaitable[Any]], params: ReconnectParams) -> None:
    """While not online: ``probe()`` (bounded by ``timeout_s``), then wait ``first_s`` doubling up to ``max_s``
    before the next one -- cut short, but never below ``first_s``, when a refused read asks for a probe
    (``Reachability.poke``) or something else brings the server back. Runs for the mount's life."""
    while True:
        while reach.online:
            await reach.wait_woken()
        delay = params.first_s
        while not reach.online:
            reach.probes += 1
            with trio.move_on_after(params.timeout_s):
                try:
                    await probe()     # its answer (any, 4xx included) reaches ``reach`` through the Failover
                except XetError as exc:
                    log.debug("reconnect probe failed: %s", exc)
            if reach.online:
                break
            await trio.sleep(params.first_s)
            with trio.move_on_after(delay - params.first_s):
                await reach.wait_woken()
            delay = min(delay * 2, params.max_s)


def probe_of(hub: HubClient, repo: RepoRef) -> Callable[[], Awaitable[Any]]:
    """One unretried ``repo_info`` of the mounted repo: the cheapest Hub call every Hub answers."""
    once = HubClient(hub.endpoint, hub.token, hub.http, retry=RetryPolicy.none())
    return lambda: once.repo_info(repo)
