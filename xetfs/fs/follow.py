"""Following a branch: poll its head, swap the new tree in (docs/architecture.md, "Following a branch").

A mount of a branch or of a pull request (``refs/pr/N``) checks the head every ``--poll-interval`` seconds
(default 30; 0: never) with ONE small request (``GET .../refs?include_prs=1``, a fixed timeout, no retries: a
failed check is counted and logged once per streak of failures; the next one comes at the next interval). A commit sha or a tag names one
commit for good: such a mount never polls (``movable`` decides at mount time, without a request for a sha
or a ``refs/pr/N``).

When the head moves, the new commit is listed (and its date read, for the mtime of what changed), ``plan``
compares the two listings in a worker thread (O(files)), then ``swap`` edits the ``Tree`` in O(changed
paths) with no await in between, so every FUSE request sees either the old tree or the new one:

- an unchanged path keeps its inode (and its kernel-cached pages and attributes);
- a removed file's inode leaves the tree; a changed file's too, and a NEW inode takes its path with the new
  size, hash and mtime. The old inode keeps its size and hash (and, for a regular file, ``Vfs.origin``: the
  old commit), so a handle opened before the swap reads the revision it was opened at until its close, and
  never a mix: the kernel's pages and attributes of the old inode are the old revision's, those of the new
  inode start empty. No page of the old content can reach a new open.
- directories emptied by the change go too (directories are implicit in a repo);
- then, in a worker thread (pyfuse3 must not notify the kernel from the request-serving thread), the kernel
  forgets the directory entries of every path that changed (``invalidate``): the next lookup finds the new
  inode, and ``ls`` no longer shows removed files. Only then is the new commit reported (stats), and its
  revision snapshot saved (``xetfs.read.snapshot``: an offline start shows the newest commit seen).

A writable mount (``fs.writable``) moves its view only while nothing is staged or pending: its writeback then
has nothing to rebase, and takes the new head as its base (journaled), so later changes apply to what the
user saw. While changes are pending the view stays; the writeback rebases them when it commits (conflicts as
usual), and the next check after that moves the view.
"""
from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.errors import XetError
from xetfs.fs.staged_vfs import StagedVfs
from xetfs.fs.writable import WritableVfs
from xetfs.fs.stats import FollowStats
from xetfs.fs.tree import ROOT_INODE, Tree
from xetfs.fs.vfs import Vfs
from xetfs.protocol.hub import RepoInfo, TreeEntry
from xetfs.read.snapshot import save_snapshot, snapshot_of
from xetfs.transport.retry import RetryPolicy

if TYPE_CHECKING:
    from xetfs.write.writeback import Writeback

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0       # one check: a small answer, or it counts as failed
PR_PREFIX = "refs/pr/"

Dentry = tuple[int, str, int]   # (parent inode, name, inode it named or 0): a kernel entry to forget


def commit_mtime_ns(info: RepoInfo) -> int:
    """The commit's date (``lastModified``) in ns; 0 when the Hub gives none."""
    text = info.last_modified
    if text is not None:
        try:
            return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            pass
    return 0


async def movable(hub: HubClient, repo: RepoRef, commit: str, is_branch: bool | None) -> bool:
    """Whether ``repo.revision`` can move (a branch or a pull request), asked at mount time. A sha (what the
    revision resolved to) and ``refs/pr/N`` need no request; nor does a mount that already asked whether
    the revision is a branch (``is_branch``: not None)."""
    rev = repo.revision
    if rev == commit or (len(rev) >= 7 and commit.startswith(rev.lower())):
        return False
    if rev.startswith(PR_PREFIX):
        return True
    if is_branch is not None:
        return is_branch
    try:
        with trio.fail_after(HEAD_TIMEOUT_S):
            return rev in await hub.movable_refs(repo)
    except (XetError, trio.TooSlowError) as exc:
        log.warning("cannot tell whether %s is a branch (%s): not following it", repo, exc)
        return False


async def follower_for(hub: HubClient, repo: RepoRef, commit: str, entries: list[TreeEntry], interval_s: float,
                       is_branch: bool | None, **kwargs: Any) -> Follower | None:
    """The mount's ``Follower``, or None: ``--poll-interval 0``, or a revision that never moves."""
    if interval_s <= 0 or not await movable(hub, repo, commit, is_branch):
        return None
    log.info("following %s: checking its head every %gs", repo, interval_s)
    return Follower(hub, repo, commit, entries, interval_s, **kwargs)


def _same(a: TreeEntry, b: TreeEntry) -> bool:
    return a.oid == b.oid and a.size == b.size and a.xet_hash == b.xet_hash


def _dirs_of(entries: Iterable[TreeEntry]) -> set[str]:
    out = {""}
    for e in entries:
        parts = e.path.strip("/").split("/")
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + (not e.is_file)))
    return out


def _shows(tree: Tree, ino: int, e: TreeEntry) -> bool:
    """The inode already holds that entry's content (a commit of this very mount)."""
    return e.xet_hash is not None and tree.xet_hash(ino) == e.xet_hash and tree.size(ino) == e.size


@dataclass(frozen=True, slots=True)
class Plan:
    """What a new listing changes, computed from the two listings alone (a worker thread: O(files))."""

    files: dict[str, TreeEntry]       # the new listing's files
    dirs: frozenset[str]              # every directory of the new listing ("" = the root)
    gone: list[str]                   # files removed or changed
    put: list[TreeEntry]              # files added or changed
    made_dirs: list[str]              # directories the old listing lacked


def plan(old_files: dict[str, TreeEntry], entries: list[TreeEntry]) -> Plan:
    files = {e.path.strip("/"): e for e in entries if e.is_file}
    dirs = _dirs_of(entries)
    return Plan(files, frozenset(dirs),
                gone=sorted(p for p, e in old_files.items() if p not in files or not _same(e, files[p])),
                put=[files[p] for p in sorted(files) if p not in old_files or not _same(old_files[p], files[p])],
                made_dirs=sorted(dirs - _dirs_of(old_files.values())))


def swap(vfs: Vfs, change: Plan, old_commit: str, commit: str, mtime_ns: int) -> list[Dentry]:
    """Apply ``change`` (from the listing of ``old_commit`` to that of ``commit``) to ``vfs.tree`` with no
    await (see the module docstring), in O(changed paths); returns the directory entries the kernel must
    forget."""
    tree = vfs.tree
    stale: list[Dentry] = []

    def drop(ino: int) -> None:
        parent, name = tree.parent(ino), tree.name(ino)
        if not tree.is_dir(ino) and tree.xet_hash(ino) is None:
            vfs.origin.setdefault(ino, (old_commit, tree.path(ino)))   # open handles still read it there
        tree.remove(ino)
        stale.append((parent, name, ino))
        while parent != ROOT_INODE and not tree.children(parent) and tree.path(parent) not in change.dirs:
            ino, parent = parent, tree.parent(parent)
            stale.append((parent, tree.name(ino), ino))
            tree.remove(ino)

    for path in change.gone:
        ino = tree.resolve(path)
        if ino is not None and not tree.is_dir(ino):
            new = change.files.get(path)
            if new is None or not _shows(tree, ino, new):
                drop(ino)
    for e in change.put:
        path = e.path.strip("/")
        ino = tree.resolve(path)
        if ino is not None and not tree.is_dir(ino) and _shows(tree, ino, e):
            continue
        if ino is not None:
            if tree.is_dir(ino) and tree.children(ino):
                log.warning("%s: a file on the branch, a directory with contents here; left as it is", path)
                continue
            drop(ino)
        parts = path.split("/")
        blocker = next((a for a in ("/".join(parts[:i]) for i in range(1, len(parts)))
                        if (b := tree.resolve(a)) is not None and not tree.is_dir(b)), None)
        if blocker is not None:
            log.warning("%s: the branch needs a directory where this mount has the file %s; not shown", path, blocker)
            continue
        parent = tree.mkdirs(parts[:-1])
        ino = tree.add_file(parent, parts[-1], e.size)
        tree.set_file(ino, e.size, e.xet_hash, e.sha256)
        vfs.mtimes[ino] = mtime_ns
        if e.xet_hash is None:
            vfs.origin[ino] = (commit, path)
        stale.append((parent, parts[-1], 0))
    for d in change.made_dirs:
        if d and tree.resolve(d) is None:
            tree.mkdirs(d.split("/"))      # empty directories the listing names
    keep = vfs.open_inodes()
    for table in (vfs.origin, vfs.mtimes):
        for ino in [i for i in table if not tree.alive(i) and i not in keep and not vfs.known(i)]:
            del table[ino]
    return stale


@dataclass(slots=True)
class _Counters:
    checks: int = 0
    failures: int = 0
    changes: int = 0
    last_checked: float | None = None
    last_change: float | None = None
    last_change_check: int = 0
    last_error: str | None = None
    waiting_head: str | None = None     # a head seen but not shown yet (a writable mount with pending changes)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


class Follower:
    """Polls the head of ``repo.revision`` and swaps new commits into the mount's ``Vfs``."""

    def __init__(self, hub: HubClient, repo: RepoRef, commit: str, entries: list[TreeEntry], interval_s: float,
                 *, list_timeout_s: float = 120.0, invalidate: Callable[[list[Dentry]], None] | None = None,
                 cache_dir: Path | None = None) -> None:
        self.hub = HubClient(hub.endpoint, hub.token, hub.http, retry=RetryPolicy.none())   # a check is one request
        self.list_hub = hub
        self.repo = repo
        self.commit = commit
        self.files = {e.path.strip("/"): e for e in entries if e.is_file}
        self.interval_s = interval_s
        self.list_timeout_s = list_timeout_s
        self.invalidate = invalidate or (lambda dentries: None)
        self.counters = _Counters()
        self.cache_dir = cache_dir      # where the revision snapshot of each new head goes (offline starts)
        self.vfs: Vfs | None = None
        self.writeback: Writeback | None = None

    def stats(self) -> FollowStats:
        c = self.counters
        return FollowStats(revision=self.repo.revision, poll_interval_s=self.interval_s, commit=self.commit,
                           last_checked=_iso(c.last_checked), checks=c.checks, failures=c.failures,
                           last_error=c.last_error, changes=c.changes, last_change=_iso(c.last_change),
                           last_change_check=c.last_change_check, waiting_head=c.waiting_head)

    async def run(self, vfs: Vfs, writeback: Writeback | None = None) -> None:
        self.vfs, self.writeback = vfs, writeback
        while True:
            await trio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> bool:
        """One poll; True when the view moved to a new head."""
        c = self.counters
        try:
            with trio.fail_after(HEAD_TIMEOUT_S):
                heads = await self.hub.movable_refs(self.repo)
        except (XetError, trio.TooSlowError) as exc:
            return self._failed(f"checking the head: {type(exc).__name__}: {exc}")
        c.checks += 1
        c.last_checked = time.time()
        head = heads.get(self.repo.revision)
        if head is None:
            return self._failed(f"{self.repo.revision} is no longer on the Hub; showing {self.commit}")
        if c.last_error is not None:
            log.info("following %s: its head is checked again", self.repo)
            c.last_error = None
        if head == self.commit or self._busy(head):
            return False
        try:
            with trio.fail_after(self.list_timeout_s):
                pinned = self.repo.at(head)
                entries = await self.list_hub.list_tree(pinned)
                info = await self.list_hub.repo_info(pinned)
        except (XetError, trio.TooSlowError) as exc:
            return self._failed(f"listing {head}: {type(exc).__name__}: {exc}")
        if self._busy(head):    # (a change was staged while the listing came)
            return False
        if not await self._apply(head, entries, commit_mtime_ns(info)):
            return False
        if self.cache_dir is not None:   # an offline start later shows the newest commit this mount saw
            snapshot = snapshot_of(self.repo, head, entries, last_modified=info.last_modified,
                                   is_branch=not self.repo.revision.startswith(PR_PREFIX))
            try:
                await trio.to_thread.run_sync(save_snapshot, self.cache_dir, snapshot)
            except OSError as exc:
                log.warning("cannot save the revision snapshot of %s at %s: %s", self.repo, head, exc)
        return True

    def _failed(self, message: str) -> bool:
        c = self.counters
        c.failures += 1
        if c.last_error is None:   # once per streak of failures (the next success logs the end)
            log.warning("following %s: %s (retrying every %gs)", self.repo, message, self.interval_s)
        c.last_error = message
        return False

    def _busy(self, head: str) -> bool:
        """A writable mount with staged or pending changes keeps its view (see the module docstring)."""
        vfs = self.vfs
        busy = isinstance(vfs, StagedVfs) and bool(vfs.staged or vfs.staging.pending)
        if busy and self.counters.waiting_head != head:
            log.info("%s moved to %s; this mount shows it once its own changes are committed", self.repo, head)
        self.counters.waiting_head = head if busy else None
        return busy

    async def _apply(self, head: str, entries: list[TreeEntry], mtime_ns: int) -> bool:
        assert self.vfs is not None
        vfs, old = self.vfs, self.commit
        change = await trio.to_thread.run_sync(plan, self.files, entries)   # (no CPU work on the trio thread)
        if self._busy(head):   # (a change was staged meanwhile)
            return False
        stale = swap(vfs, change, old, head, mtime_ns)
        self.files = change.files
        if isinstance(vfs, WritableVfs):   # its writeback's base moves with the view (journaled)
            vfs.repo_paths = set(self.files)
            vfs.commit = head
        if self.writeback is not None:
            line = self.writeback.staging.set_base(head)
            self.writeback.base = head
            await self.writeback.staging.persist([line])
        if stale:
            await trio.to_thread.run_sync(self.invalidate, stale)
        # reported once the kernel forgot the old entries: a path opened from now on is the new commit's
        self.commit = head
        c = self.counters
        c.changes += 1
        c.last_change = time.time()
        c.last_change_check = c.checks
        c.last_error = None
        log.info("%s moved from %s to %s: %d paths changed", self.repo, old, head, len(stale))
        return True
