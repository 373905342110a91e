"""Garbage collection of xorbs, shards, file records and regular-file blobs no repo can reach (docs/architecture.md,
Garbage collection).

``collect`` marks, then sweeps (the steps and their races are in ``metadata.gcstore``):

- **mark**: live files = the Xet files of every tree of every stored commit of every existing repo (all refs,
  ``refs/pr/N``, tags, and the whole history; with ``keep_history`` N, the newest N commits of each ref)
  plus every file registered within the grace period; live xorbs = those the live files' terms use plus
  every xorb stored within the grace period (an upload between its xorbs and its shard keeps its xorbs);
- **sweep**: dead files' rows, then dead xorbs (doomed, index row dropped, store object deleted, released),
  then shards older than the grace period whose files are all gone (each shard is read back to list its files),
  then regular-file blobs (``blobs/<oid>``) that some stored tree names but no root tree does (doomed, store
  object deleted, released; a commit adding a doomed blob gets 503 and stores it again on its retry).

Each deleted object is written to the audit log (``gc_delete``). ``dry_run`` marks and reports what would go,
changing nothing. One collector runs at a time per database (a lease); another one gets Conflict.
Synchronous (SQL, storage, CPU): run it in a worker thread or from the CLI.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from xetfs.core.hashing import MerkleHash
from xetfs.core.shard import parse_shard
from xetfs.errors import Conflict, NotFound, XetError
from xetfs.server.context import AuditLog
from xetfs.server.metadata.gcstore import GcStore
from xetfs.server.metadata.store import Metadata
from xetfs.server.stores.base import Storage

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 24 * 3600.0
LEASE_S = 6 * 3600.0
COMMIT_MARGIN_S = 300.0              # a commit stamped this long before the mark may still be landing (capped
                                     # by the grace period: --grace 0 protects nothing in flight)
_TERM_BYTES = 44
DELETE_WORKERS = 8


@dataclass
class GcReport:
    dry_run: bool
    grace_s: float
    live_files: int = 0
    live_xorbs: int = 0
    files: list[str] = field(default_factory=list)          # deleted (or, dry run, would be)
    xorbs: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    bytes: int = 0
    spared: int = 0                                          # doomed, then found in use: kept

    def summary(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "grace_s": self.grace_s, "live_files": self.live_files,
                "live_xorbs": self.live_xorbs, "files": len(self.files), "xorbs": len(self.xorbs),
                "shards": len(self.shards), "blobs": len(self.blobs), "bytes": self.bytes, "spared": self.spared}


def _term_xorbs(terms: bytes) -> set[str]:
    return {str(MerkleHash(terms[i:i + 32])) for i in range(0, len(terms), _TERM_BYTES)}


def _shard_files(storage: Storage, shard: str) -> list[str] | None:
    """The file hashes a stored shard registers; None if it cannot be read (kept, fsck reports it)."""
    try:
        return [str(f.file_hash) for f in parse_shard(storage.get(f"shards/{shard}")).files]
    except (NotFound, XetError, OSError):
        return None


def collect(meta: Metadata, storage: Storage, audit: AuditLog | None, *, grace_s: float = DEFAULT_GRACE_S,
            dry_run: bool = False, now: float, keep_history: int | None = None,
            progress: Callable[[str], None] | None = None) -> GcReport:
    """``keep_history``: None keeps the data of all history; N keeps only that of the newest N commits of
    every ref (older commits stay listed, their Xet files are collected)."""
    gs = GcStore(meta.database)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if not dry_run and not gs.acquire(owner, LEASE_S, now):
        raise Conflict("another xetfs gc holds the collector lock; try later")
    try:
        return _collect(gs, storage, audit, grace_s, dry_run, now, keep_history, progress or (lambda _: None))
    finally:
        if not dry_run:
            gs.release_lock(owner)


def _collect(gs: GcStore, storage: Storage, audit: AuditLog | None, grace_s: float, dry_run: bool, now: float,
             keep_history: int | None, progress: Callable[[str], None]) -> GcReport:
    report = GcReport(dry_run, grace_s)
    cutoff, started = now - grace_s, time.time()
    roots, root_blobs = gs.root_files(keep_history)
    live_xorbs: set[str] = set()
    dead_files: list[str] = []
    for h, terms, created in gs.files():
        if h in roots or created >= cutoff:
            live_xorbs |= _term_xorbs(terms)
            report.live_files += 1
        else:
            dead_files.append(h)
    sizes: dict[str, int] = {}
    for h, size, created in gs.xorbs():
        if h in live_xorbs or created >= cutoff:
            report.live_xorbs += 1
        else:
            sizes[h] = size
    progress(f"mark: {report.live_files} live files, {len(dead_files)} dead; "
             f"{report.live_xorbs} live xorbs, {len(sizes)} dead")

    def gone(kind: str, key: str, size: int) -> None:
        report.bytes += size
        if audit is not None and not dry_run:
            audit.write("gc", None, "gc_delete", f"{kind}/{key}", size)

    if dry_run:
        report.files, report.xorbs = sorted(dead_files), sorted(sizes)
        for x in report.xorbs:
            gone("xorbs", x, sizes[x])
    else:
        report.files = gs.sweep_files(dead_files, max(cutoff, started - COMMIT_MARGIN_S))
        doomed = gs.doom(sorted(sizes), now)
        try:
            dropped = gs.drop_xorbs(doomed)
            with ThreadPoolExecutor(DELETE_WORKERS) as pool:     # store deletes are round trips (S3) or unlinks
                for x, _ in zip(dropped, pool.map(storage.delete, [f"xorbs/{x}" for x in dropped])):
                    gone("xorbs", x, sizes[x])
            report.xorbs = dropped
            report.spared = len(sizes) - len(dropped)
        finally:
            gs.release(doomed)
    progress(f"sweep: {len(report.files)} files, {len(report.xorbs)} xorbs")

    dead_set = set(report.files)
    for shard, size, created in gs.shards():
        if created >= cutoff:
            continue
        files = _shard_files(storage, shard)
        if files is None:
            continue
        remaining = gs.existing_files([f for f in files if f not in dead_set]) if dry_run else gs.existing_files(files)
        if remaining:
            continue
        if not dry_run:
            if not gs.drop_shard(shard):
                continue
            storage.delete(f"shards/{shard}")
        report.shards.append(shard)
        gone("shards", shard, size)
    _collect_blobs(gs, storage, report, root_blobs, now, started, dry_run, gone)
    log.info("gc%s: %s", " (dry run)" if dry_run else "", report.summary())
    return report


def _collect_blobs(gs: GcStore, storage: Storage, report: GcReport, live: set[str], now: float, started: float,
                   dry_run: bool, gone: Callable[[str, str, int], None]) -> None:
    """Regular-file contents: the blobs stored trees name minus those the root trees name. No grace period
    applies: a blob named by no tree (a commit still landing) is never a candidate, and one that a commit made
    since the mark names is spared by ``doom_blobs``. The trees of a deleted repo stay, so a blob already
    collected is still a candidate: only those still stored count."""
    sizes = {b: n for b, n in gs.tree_blobs().items() if b not in live}
    with ThreadPoolExecutor(DELETE_WORKERS) as pool:           # stat calls (local) or HEAD requests (S3)
        stored = [b for b, there in zip(sorted(sizes), pool.map(storage.exists, [f"blobs/{b}" for b in sorted(sizes)]))
                  if there]
        if dry_run:
            report.blobs = stored
        else:
            doomed = gs.doom_blobs(stored, started - COMMIT_MARGIN_S, now)
            try:
                list(pool.map(storage.delete, [f"blobs/{b}" for b in doomed]))
            finally:
                gs.release_blobs(doomed)
            report.blobs = doomed
    for b in report.blobs:
        gone("blobs", b, sizes[b])
