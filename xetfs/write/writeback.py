"""Background commits of a writable mount: debounce, batch, upload, commit, retry, rebase (docs/architecture.md,
"The write path").

One task (``Writeback.run``, in the mount's nursery) turns the journaled pending changes of ``Staging`` into
commits on the branch:

1. wait for a ``kick`` (a seal, an unlink, a rename, a release), then keep waiting while kicks keep coming
   within ``commit_delay_s`` (at most ``max_delay_s``): closes that happen close together share one commit;
2. take every pending change that is not conflicted and whose staged file is not open for writing; mark
   those staged files in flight (a new writer then gets a copy);
3. read the branch head. If it moved since ``base`` (the commit our view and changes apply to), compare the
   two trees: a change whose path also changed remotely is a conflict — journaled, kept staged, logged,
   counted in stats, never uploaded automatically again (a new save of the file clears it); the others are
   rebased onto the head (``xetfs.write.rebase`` decides which);
4. files a stream already stored while they were written (``xetfs.write.stream``) are taken as they are;
   for the others fetch the base ranges they still lack, then ``upload.prepare_commit_ops``: chunking and
   hashing in worker threads, dedup against the base revision's file at each path (``BaseCandidates``,
   ``xetfs.write.basecands``), the local shard cache (``ShardCache``, per endpoint: shards this machine
   uploaded or learned) and the server's global dedup, new xorbs and the shard uploaded; then ONE commit
   with ``parentCommit = base``: Xet files by sha256 + size, small files inline, renamed unmodified files by their sha256 (no data), deletes of paths the base has.
   Right before the commit call an ``intent`` line per path (what the path will hold: sha256 + size, git blob
   oid + size, or deleted) is journaled;
5. journal ``done`` lines and the new base, and tell the VFS (``committed``) so it shows the new file hashes.

Idempotent resume. A crash (or a lost answer) between a commit that landed and its ``done`` lines leaves
changes pending on an old base. Step 3 first compares every change that has an intent with the head's
entry of its path: identical means the change is already committed — marked done, no second commit and no
false conflict. A change whose intent does not match is handled as usual (rebased or a conflict).

Failures. A transient one (server down, 5xx, timeouts, 429) leaves everything journaled: the task
retries with exponential backoff (``retry_min_s`` .. ``retry_max_s``), so a server that is down only delays
commits. A 412 (the branch moved between 3 and 4) retries at once. A permanent refusal (another 4xx: a bad
path, 403, 404, 413, ...) of a batch is isolated by bisection (a 401 refuses the mount's token, not a change:
every change of the batch fails at once): the batch is split in halves, each half
committed on its own, until the refused change is alone; that one is marked ``failed`` (journaled, kept
staged, logged once, listed in stats with the Hub's message) and the others are committed. A new save,
rename or delete of that path replaces the failed change and is tried again. Nothing is ever dropped.
"""
from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.protocol.hub import AddRegular, AddXet, CommitOp, Delete, TreeEntry
from xetfs.errors import Conflict, NotFound, XetError
from xetfs.transport.http import http_status_of
from xetfs.transport.retry import RetryPolicy, backoff_delay
from xetfs.core.shard import Shard
from xetfs.write.journal import Deleted, Record, Remote, XetRef, intent_of
from xetfs.write.basecands import BaseCandidates
from xetfs.write.rebase import already_committed, conflicts, xet_file_of
from xetfs.write.shardcache import ShardCache
from xetfs.write.stream import Streamed, Streams, StreamUpload
from xetfs.write.stats import PENDING_PATHS_SHOWN, RECENT_COMMITS, CommitStats, WritebackStats
from xetfs.write.staged import StagedFile
from xetfs.write.staged import Change
from xetfs.write.staging import Staging
from xetfs.write.upload import (Answers, PreparedCommit, UploadParams, UploadStats, XetFile,
                                prepare_commit_ops)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WritebackParams:
    commit_delay_s: float = 0.5
    max_delay_s: float = 5.0
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    upload: UploadParams = field(default_factory=UploadParams)


class Target(Protocol):
    """What the writeback needs from the VFS (``fs.writable.WritableVfs``)."""

    def busy(self, change: Change) -> bool: ...
    async def materialize(self, sf: StagedFile) -> None: ...
    def committed(self, path: str, change: Change, commit: str, xet_file: XetFile | None) -> None: ...


def permanent(exc: BaseException) -> bool:
    """A refusal that retrying cannot change: a 4xx answer other than 408/429 (slow down) and 412 (the branch
    moved: retried at once). A 401 counts: the CAS client has already fetched a new xet token once, so the
    mount's Hub token itself is refused (revoked); the next mount, with a token that can write, retries.
    Errors without an HTTP answer are never permanent."""
    status = http_status_of(exc)
    return (isinstance(exc, XetError) and not exc.retryable and status is not None and 400 <= status < 500
            and status not in (408, 412, 429))


class Writeback:
    def __init__(self, hub: HubClient, branch: RepoRef, staging: Staging, target: Target, base_commit: str,
                 shard_cache: ShardCache, params: WritebackParams = WritebackParams(),
                 candidates: BaseCandidates | None = None) -> None:
        self.hub, self.branch, self.staging, self.target = hub, branch, staging, target
        self.base = base_commit
        self.shard_cache = shard_cache
        self.params = params
        self.stats = WritebackStats()
        self._kicked = trio.Event()
        self._trees: OrderedDict[str, dict[str, TreeEntry]] = OrderedDict()   # commit -> {path: file entry}
        self.answers = Answers()   # global-dedup answers, shared by this mount's upload sessions
        self.streams = Streams(hub, branch, params.upload, shard_cache, self.answers)
        self.candidates = candidates   # layouts of base-revision files: dedup candidates (write.basecands)

    def start_stream(self, sf: StagedFile) -> StreamUpload | None:
        """Upload ``sf`` while it is written (``xetfs.write.stream``); None when no stream can start now."""
        if self.candidates is None:
            return self.streams.start(sf.fd)
        return self.streams.start(sf.fd, functools.partial(self.candidates.for_stream, sf.base_file))

    async def _base_shards(self, paths: list[str]) -> list[Shard]:
        """Dedup candidates for changes of ``paths``: the Xet files the base revision holds there."""
        if self.candidates is None or not paths:
            return []
        try:
            tree = await self._tree(self.base)
        except XetError as exc:
            log.warning("no base-revision dedup candidates (listing %s: %s)", self.base, exc)
            return []
        return await self.candidates.shards((e.xet_hash, e.size) for p in paths
                                            if (e := tree.get(p)) is not None and e.xet_hash is not None)

    def kick(self) -> None:
        self._kicked.set()

    def ready(self) -> dict[str, Change]:
        return {p: c for p, c in self.staging.pending.items() if not c.held and not self.target.busy(c)}

    def pending_files(self) -> int:
        return len(self.pending_paths())

    def pending_paths(self) -> list[str]:
        """Paths whose change is still to be committed (a delete of a path the repo never had, like the temp
        file of a save-then-rename, is not counted: committing it changes nothing)."""
        return sorted(p for p, c in self.staging.pending.items() if not c.held and c.counts)

    async def journal_base(self) -> None:
        """Make the base the pending changes apply to durable before any change is journaled: a resumed
        change must be checked against the commit it was made on, not whatever the head is by then."""
        if self.staging.base_commit != self.base:
            await self.staging.persist([self.staging.set_base(self.base)])

    def retry_failed(self) -> list[str]:
        """Make the changes the Hub refused before pending again (a new mount may hold a token that can
        write); a refusal that persists marks them failed again. Returns their paths."""
        paths = sorted(p for p, c in self.staging.pending.items() if c.failed is not None)
        for p in paths:
            self.staging.pending[p].failed = None
        if paths:
            log.warning("retrying %d changes the Hub refused before: %s", len(paths), ", ".join(paths[:10]))
        return paths

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.retry_failed()
        await self.journal_base()
        async with trio.open_nursery() as streams:
            self.streams.nursery = streams
            if self.candidates is not None:
                self.candidates.nursery = streams
            task_status.started()
            # the shared pure schedule (xetfs.transport.retry), without jitter: retry_min_s doubling up to retry_max_s
            policy = RetryPolicy(base_delay_s=self.params.retry_min_s, max_delay_s=self.params.retry_max_s)
            failures = 0
            while True:
                if not self.ready():
                    await self._kicked.wait()
                await self._debounce()
                try:
                    await self.commit_once()
                    failures = 0
                except Conflict as exc:
                    log.info("the branch moved during the commit (%s); retrying", exc)
                except Exception as exc:   # a bug must not take the mount (and every read) down: log, retry later
                    if http_status_of(exc) == 401 and isinstance(exc, XetError):
                        await self._token_refused(self.ready(), exc)
                        continue
                    failures += 1
                    backoff = backoff_delay(failures, policy, jitter=1.0)
                    self.stats.upload_errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, (XetError, OSError)):
                        log.warning("upload/commit failed (%s); %d pending, retrying in %.1fs",
                                    self.stats.last_error, self.pending_files(), backoff)
                    else:
                        log.exception("upload/commit failed unexpectedly; %d pending, retrying in %.1fs",
                                      self.pending_files(), backoff)
                    await trio.sleep(backoff)

    async def _debounce(self) -> None:
        deadline = trio.current_time() + self.params.max_delay_s
        while True:
            self._kicked = trio.Event()
            wait = min(self.params.commit_delay_s, deadline - trio.current_time())
            if wait <= 0:
                return
            with trio.move_on_after(wait):
                await self._kicked.wait()
                continue
            return

    async def commit_once(self) -> None:
        batch = self.ready()
        if not batch:
            return
        head = await self.hub.revision_sha(self.branch)
        if any(c.intent is not None for c in batch.values()):
            await self.staging.persist(self._already_committed(head, await self._tree(head), batch))
        if head != self.base:
            await self._rebase(head, batch)
        await self._commit_isolating(batch)

    async def _commit_isolating(self, batch: dict[str, Change]) -> None:
        """Commit ``batch``; a permanent refusal is narrowed down by bisection to the change it is about."""
        batch = {p: c for p, c in batch.items() if self.staging.pending.get(p) is c and not c.held}
        if not batch:
            return
        try:
            await self._commit_batch(batch)
        except XetError as exc:
            if not permanent(exc):
                raise
            if http_status_of(exc) == 401:
                await self._token_refused(batch, exc)
                return
            if len(batch) == 1:
                ((path, change),) = batch.items()
                await self._refused(path, change, exc)
                return
            items = sorted(batch.items(), key=lambda kv: kv[1].kind != "del")   # a put may need a delete first
            log.warning("the Hub refused a batch of %d changes (%s); committing it in halves to isolate the "
                        "refused change", len(items), exc)
            for part in (items[:len(items) // 2], items[len(items) // 2:]):
                await self._commit_isolating(dict(part))

    async def _token_refused(self, batch: dict[str, Change], exc: XetError) -> None:
        """The Hub refuses the mount's token itself (revoked): every change of ``batch`` fails at once, no
        bisection; they stay journaled and the next mount retries them (``retry_failed``)."""
        for path, change in batch.items():
            await self._refused(path, change, exc)

    async def _refused(self, path: str, change: Change, exc: XetError) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.error("REFUSED: the Hub refused the change of %s for good (%s); the local version stays staged and is "
                  "not retried (save, rename or delete the file to try again)", path, message)
        self.stats.upload_errors += 1
        self.stats.last_error = message
        await self.staging.persist([self.staging.fail(path, change.gen, message)])

    async def _commit_batch(self, batch: dict[str, Change]) -> None:
        staged = [c.staged for c in batch.values() if c.kind == "put" and c.staged is not None]
        for sf in staged:
            sf.in_flight = True
        self.stats.uploading = True
        try:
            for sf in staged:
                await self.target.materialize(sf)
            prepared, ops, upload = await self._ops(batch)
            new = self.base
            await self.staging.persist(self._intents(batch, ops))
            if ops:
                summary = f"xetfs mount: {len(ops)} change{'s' if len(ops) > 1 else ''}"
                new = (await self.hub.commit(self.branch, ops, summary, parent_commit=self.base)).oid
        finally:
            self.stats.uploading = False
            for sf in staged:
                sf.in_flight = False
                self.staging.release_if_unused(sf)
        await self._finish(batch, prepared, new, len(ops), upload)

    async def _finish(self, batch: dict[str, Change], prepared: PreparedCommit, new: str, n_ops: int,
                      upload: UploadStats) -> None:
        for shard in prepared.keep():
            await trio.to_thread.run_sync(self.shard_cache.save, shard)
        if self.candidates is not None:   # UploadParams.keep_layouts: a rewrite of these reads nothing back
            for file, layout in prepared.layouts.items():
                self.candidates.learn(file, layout)
        lines: list[Record | None] = []
        for path, change in batch.items():
            line = self.staging.done(path, change.gen)
            if line is not None:   # still the latest change of that path: the VFS may show the repo's copy
                lines.append(line)
                self.target.committed(path, change, new, prepared.files.get(path))
        lines.append(self.staging.set_base(new))
        self.base = new
        if n_ops:
            self.stats.commits += 1
            self.stats.last_commit = new
            self.stats.files_committed += n_ops
            done = CommitStats(new, n_ops, upload.xorb_bytes_uploaded, upload.new_bytes, upload.deduped_bytes,
                               dict(sorted(upload.deduped_by_source.items())))
            self.stats.recent_commits.append(done)
            del self.stats.recent_commits[:-RECENT_COMMITS]
            log.info("committed %d changes as %s: %s", n_ops, new, done)
        await self.staging.persist(lines)

    async def _ops(self, batch: dict[str, Change]) -> tuple[PreparedCommit, list[CommitOp], UploadStats]:
        dels = [p for p, c in batch.items() if c.kind == "del"]
        base_tree = await self._tree(self.base) if dels else {}
        stats = UploadStats()
        streamed = await self._streamed(batch, stats)
        puts = [(p, c.staged) for p, c in batch.items()
                if c.kind == "put" and c.staged is not None and p not in streamed]
        files = [(str(self.staging.data / sf.id), p) for p, sf in puts]
        try:
            prepared = await prepare_commit_ops(self.hub, self.branch, files, stats=stats, params=self.params.upload,
                                                shard_cache=self.shard_cache, answers=self.answers,
                                                base_shards=await self._base_shards([p for p, _ in puts]))
        finally:
            self.stats.add_upload(stats)
        ops: list[CommitOp] = [Delete(p) for p in dels if p in base_tree]
        ops.extend(prepared.ops)
        for p, res in streamed.items():
            ops.append(AddXet(p, res.file.sha256, res.file.size))
            prepared.files[p] = res.file
            if res.layout is not None:
                prepared.layouts[res.file.file_hash] = res.layout
        for p, c in batch.items():
            if c.kind == "put" and c.remote is not None:
                ops.append(await self._remote_op(p, c.remote))
        return prepared, ops, stats

    async def _streamed(self, batch: dict[str, Change], stats: UploadStats) -> dict[str, Streamed]:
        """The files of ``batch`` a stream already stored while they were written (their shards kept)."""
        out: dict[str, Streamed] = {}
        for p, c in batch.items():
            sf = c.staged
            if c.kind != "put" or sf is None or sf.stream is None:
                continue
            res = await sf.stream.wait()
            if res is None or res.file.size != sf.size:
                continue
            out[p] = res
            stats.add(res.stats)
            for shard in res.keep():
                await trio.to_thread.run_sync(self.shard_cache.save, shard)
        return out

    def _intents(self, batch: dict[str, Change], ops: list[CommitOp]) -> list[Record | None]:
        by_path = {op.path: op for op in ops}
        return [self.staging.intend(p, c.gen, intent_of(by_path[p]) if p in by_path else Deleted())
                for p, c in batch.items() if p in by_path or c.kind == "del"]

    async def _remote_op(self, path: str, remote: Remote) -> CommitOp:
        if isinstance(remote, XetRef):
            return AddXet(path, remote.sha256, remote.size)
        content = await self.hub.resolve(self.branch.at(remote.commit), remote.path)
        return AddRegular(path, content)

    async def _tree(self, commit: str) -> dict[str, TreeEntry]:
        tree = self._trees.get(commit)
        if tree is None:
            entries = await self.hub.list_tree(self.branch.at(commit))
            tree = {e.path: e for e in entries if e.is_file}
            self._trees[commit] = tree
            while len(self._trees) > 2:
                self._trees.popitem(last=False)
        return tree

    async def _rebase(self, head: str, batch: dict[str, Change]) -> None:
        """The branch moved: conflicts for paths changed on both sides, the rest applies to ``head``."""
        try:
            old = await self._tree(self.base)
        except NotFound:
            log.warning("base commit %s is gone; rebasing onto %s without conflict checks", self.base, head)
            old = await self._tree(head)
        new = await self._tree(head)
        lines: list[Record | None] = []
        for path in conflicts(old, new, batch):
            log.error("CONFLICT: %s changed on the branch (now %s) and in this mount; the local version stays "
                      "staged and is not uploaded (save the file again to overwrite the branch's version)",
                      path, head)
            lines.append(self.staging.conflict(path, batch.pop(path).gen, head))
        lines.append(self.staging.set_base(head))
        self.base = head
        await self.staging.persist(lines)

    def _already_committed(self, head: str, tree: dict[str, TreeEntry],
                           batch: dict[str, Change]) -> list[Record | None]:
        """Changes whose intent the head already holds (committed before a crash or a lost answer): done."""
        lines: list[Record | None] = []
        for path in already_committed(tree, batch):
            log.info("%s is already committed on the branch (head %s); not committing it again", path, head)
            change = batch.pop(path)
            line = self.staging.done(path, change.gen)
            if line is not None:
                lines.append(line)
                self.target.committed(path, change, head, xet_file_of(tree.get(path)))
                self.stats.already_committed += 1
        return lines

    def snapshot(self) -> dict[str, Any]:
        pending = self.pending_paths()
        return {"pending_files": len(pending), "pending_paths": pending[:PENDING_PATHS_SHOWN],
                "pending_bytes": self.staging.pending_bytes(),
                "staging_bytes": self.staging.used_bytes, "staging_limit_bytes": self.staging.limit_bytes,
                **self.stats.to_json(), "base_commit": self.base,
                "uploading": self.stats.uploading or self.streams.active > 0,
                "conflicts": sorted(p for p, c in self.staging.pending.items() if c.conflict),
                "failed": {p: c.failed for p, c in sorted(self.staging.pending.items()) if c.failed}}
