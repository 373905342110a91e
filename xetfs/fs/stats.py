"""The counters of a running mount, served as JSON through the hidden file ``MOUNTPOINT/.xetfs-stats``.

``MountStats`` is built from typed pieces each stage owns and ``to_json`` turns it into the served object (key
names are the field names). Where to add a counter:

- read path: a field here, filled from the fetcher's ``ReadStats`` or the cache's snapshot in
  ``xetfs.fs.mount.stats_snapshot``; per-open-file stats: a new section field on ``MountStats`` holding a list
  of frozen dataclasses owned by ``xetfs.read``;
- write path: the ``write`` section, which the writeback builds (per-commit stats belong there);
- anything else: a new frozen dataclass section on ``MountStats``.

``read_stats`` is the client side (``xetfs stats``, ``xetfs umount``): it reads the served JSON back.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xetfs.errors import ValidationError
from xetfs.read.source import OpenFileStats
from xetfs.transport.endpoints import NodeHealth
from xetfs.transport.reachability import LinkStats

STATS_NAME = ".xetfs-stats"


@dataclass(frozen=True, slots=True)
class MemoryTierStats:
    hits: int
    misses: int
    bytes: int
    evictions: int = 0
    unread_evictions: int = 0   # evicted before any reader read them: fetched for nothing


@dataclass(frozen=True, slots=True)
class DiskTierStats:
    hits: int
    misses: int
    corrupt_entries: int
    bytes: int
    evictions: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    memory: MemoryTierStats
    disk: DiskTierStats

    @classmethod
    def of(cls, snapshot: Mapping[str, int]) -> CacheStats:
        """From ``ChunkCache.snapshot()`` (the disk keys are absent without a disk tier)."""
        return cls(MemoryTierStats(snapshot["memory_hits"], snapshot["memory_misses"], snapshot["memory_bytes"],
                                   snapshot.get("memory_evictions", 0), snapshot.get("memory_unread_evictions", 0)),
                   DiskTierStats(snapshot["disk_hits"], snapshot["disk_misses"], snapshot["disk_corrupt"],
                                 snapshot.get("disk_bytes", 0), snapshot.get("disk_evictions", 0)))


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """The configured Hub nodes, the health of each node used so far, how many requests moved, and how many
    request attempts the retry schedule repeated (Hub and CAS, one node or several)."""

    urls: list[str]
    nodes: dict[str, NodeHealth]
    failovers: int
    retries: int = 0


@dataclass(frozen=True, slots=True)
class PendingStats:
    fetches: int
    reconstructions: int
    open_handles: int
    streams: int                # whole-file streams running (not parked)
    files: int                  # closed files not yet committed (writable mounts)
    bytes: int


@dataclass(frozen=True, slots=True)
class FollowStats:
    """A mount that follows its branch (``xetfs.fs.follow``): the commit shown and the polls of the head."""

    revision: str
    poll_interval_s: float
    commit: str                     # the commit the mount shows
    last_checked: str | None        # ISO time (UTC) of the last successful check of the head
    checks: int
    failures: int                   # checks or listings that failed (they only log)
    last_error: str | None
    changes: int                    # new heads swapped in
    last_change: str | None
    last_change_check: int          # the check (``checks`` then) that saw the last change
    waiting_head: str | None        # a head not shown yet (a writable mount with pending changes)


@dataclass(frozen=True, slots=True)
class MountStats:
    writable: bool
    write: Mapping[str, object] | None      # the writeback's own section (``Writeback.snapshot()``)
    endpoints: EndpointStats | None
    pid: int
    repo: str
    commit: str
    mountpoint: str
    bytes_read: int                         # returned to applications
    bytes_fetched: int                      # xorb bytes received from the network
    cache: CacheStats
    reconstructions: int
    fetches: int
    retries: int
    integrity_failures: int
    read_errors: int
    pending: PendingStats
    fetches_joined: int = 0                 # fetches served by running ones that held all their chunks
    open_files: list[OpenFileStats] = dataclasses.field(default_factory=list)
    follow: FollowStats | None = None       # None: a tag or commit, or --poll-interval 0
    link: LinkStats | None = None           # online / offline / degraded (xetfs.transport.reachability)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_stats(mountpoint: str | Path) -> dict[str, Any]:
    """The JSON object a mount serves; ``ValidationError`` if ``mountpoint`` is not a running xetfs mount."""
    path = Path(mountpoint) / STATS_NAME
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{mountpoint} is not a running xetfs mount ({exc})") from None
    if not isinstance(obj, dict):
        raise ValidationError(f"{path}: unexpected contents")
    return obj
