"""Snapshot download: the files of one commit of a repo into a local directory (docs/architecture.md,
"Downloads").

The revision is resolved to a commit first, so all files come from one commit. Xet files are written by
``read.wholefile`` (one reconstruction, one GET per fetch range, ranges of all files in parallel within one
``Budget``) and checked against the Xet file hash the listing names; other files come from the resolve
route and are checked against their git blob id (docs/protocol.md, "Tree entries"). Each file is written
to a temporary name in its directory and renamed into place when complete; a failed or cancelled file
leaves nothing behind.

A listing can only carry paths the server refused at commit if the server is hostile or broken: such an
entry (an unsafe path by the rules of ``protocol.paths``, or a file whose path another entry uses as a
directory) is skipped, never written, and counted in ``DownloadPlan.skipped`` (docs/security.md, "Names").
"""
from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.core.gitblob import git_blob_hasher
from xetfs.errors import IntegrityError, NotFound, ValidationError
from xetfs.osutil.atomic import publish, temp_path_for
from xetfs.protocol.hub import TreeEntry
from xetfs.protocol.paths import path_problem
from xetfs.read.wholefile import Budget, download_xet_file

FILES_IN_PARALLEL = 4

Progress = Callable[[int], object]
Write = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DownloadResult:
    commit: str
    files: int
    bytes: int
    skipped: int = 0             # entries with unsafe names, not downloaded


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    at: RepoRef                  # the revision pinned to its commit
    files: list[TreeEntry]       # what to download
    skipped: list[Skipped]       # listed files whose names are unsafe to write locally


def select(entries: Sequence[TreeEntry], paths: Sequence[str]) -> list[TreeEntry]:
    """The file entries named by ``paths`` (a file, or everything under a directory); all when empty."""
    files = [e for e in entries if e.is_file]
    if not paths:
        return files
    chosen: dict[str, TreeEntry] = {}
    for p in paths:
        want = p.strip("/")
        hits = [e for e in files if not want or e.path == want or e.path.startswith(want + "/")]
        if not hits:
            raise NotFound(f"{p}: not in the repo")
        chosen.update((e.path, e) for e in hits)
    return [chosen[k] for k in sorted(chosen)]


def split_unsafe(files: Sequence[TreeEntry]) -> tuple[list[TreeEntry], list[Skipped]]:
    """``files`` -> (the entries safe to write under a local directory, the others with the reason)."""
    safe: list[TreeEntry] = []
    skipped: list[Skipped] = []
    for e in files:
        problem = path_problem(e.path)
        if problem is None:
            safe.append(e)
        else:
            skipped.append(Skipped(e.path, problem))
    dirs = {p[:i] for p in (e.path for e in safe) for i in range(len(p)) if p[i] == "/"}
    clash = [e for e in safe if e.path in dirs]
    skipped += [Skipped(e.path, "the listing also has files under this path") for e in clash]
    return [e for e in safe if e.path not in dirs], skipped


def local_path(root: Path, repo_path: str) -> Path:
    """``root / repo_path``, refusing paths that would escape ``root`` or that the server should have refused."""
    problem = path_problem(repo_path)
    if problem is not None:
        raise ValidationError(f"refusing unsafe path from the server: {problem}")
    return root.joinpath(*repo_path.split("/"))


async def plan_download(hub: HubClient, repo: RepoRef, paths: Sequence[str]) -> DownloadPlan:
    """The revision pinned to its commit, the files to download from it, and the files skipped."""
    at = repo.at(await hub.revision_sha(repo))
    files, skipped = split_unsafe(select(await hub.list_tree(at, recursive=True), paths))
    return DownloadPlan(at, files, skipped)


async def download_files(hub: HubClient, plan: DownloadPlan, root: Path,
                         progress: Progress = lambda n: None, *, fsync: bool = False) -> DownloadResult:
    """Download the files of ``plan`` under ``root``; with ``fsync``, each file reaches the disk before its
    rename (otherwise, as the official clients do, the kernel writes it out in its own time)."""
    at, files = plan.at, plan.files
    cas = CasClient(TokenProvider(lambda: hub.xet_token(at, "read")), hub.http, retry=hub.retry)
    budget = Budget(durable=fsync)         # GETs and buffer bytes, shared by every file
    limiter = trio.CapacityLimiter(FILES_IN_PARALLEL)
    async with trio.open_nursery() as nursery:
        for entry in files:
            nursery.start_soon(_one_file, hub, at, cas, budget, entry, root, limiter, progress)
    return DownloadResult(commit=at.revision, files=len(files), bytes=sum(e.size for e in files),
                          skipped=len(plan.skipped))


async def _one_file(hub: HubClient, at: RepoRef, cas: CasClient, budget: Budget, entry: TreeEntry, root: Path,
                    limiter: trio.CapacityLimiter, progress: Progress) -> None:
    async with limiter:
        dest = local_path(root, entry.path)
        await trio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(dest)
        try:
            if entry.xet_hash is not None:     # checked against its Xet file hash
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                fd = await trio.to_thread.run_sync(os.open, tmp, flags, 0o644)
                try:
                    await download_xet_file(cas, entry.path, entry.xet_hash, entry.size, fd, budget, progress)
                finally:
                    with trio.CancelScope(shield=True):   # closed even when cancelled
                        await trio.to_thread.run_sync(os.close, fd)
            else:
                async with await trio.open_file(tmp, "wb") as f:
                    async def write(data: bytes) -> None:
                        await f.write(data)
                        progress(len(data))

                    await _read_regular(hub, at, entry, write)
            await trio.to_thread.run_sync(functools.partial(publish, tmp, dest, sync_file=budget.durable,
                                                            sync_dir=budget.durable))
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.Path(tmp).unlink(missing_ok=True)
            raise


async def _read_regular(hub: HubClient, at: RepoRef, entry: TreeEntry, write: Write) -> None:
    digest = git_blob_hasher(entry.size)

    async def checked(data: bytes) -> None:
        await trio.to_thread.run_sync(digest.update, data)
        await write(data)

    size = await hub.resolve_into(at, entry.path, checked)
    if size != entry.size or (entry.oid and digest.hexdigest() != entry.oid):
        raise IntegrityError(f"{entry.path}: downloaded {size} bytes that do not match the listing "
                             f"({entry.size} bytes, git blob {entry.oid})")
