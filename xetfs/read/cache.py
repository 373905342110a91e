"""Byte-bounded chunk cache: a memory tier over a persistent disk tier (docs/architecture.md, "The read
path").

Keys are ``(xorb hash, chunk index)`` and values the chunk's *uncompressed* bytes, so any read that overlaps
a cached chunk hits, whatever window first brought it in (a cache that only hits when one stored range
contains the whole read refetches endlessly). ``MemoryTier`` (``xetfs.read.memory_tier``) is bounded in
bytes: chunks readers asked for whole (``mark_read``) go first, then chunks they asked for in part, then
chunks no reader has read yet. It also keeps the chunk hash the fetcher computed from each chunk it put
(``verified_hash``). ``DiskTier`` (``xetfs.read.disk_tier``) keeps checksummed entries and file layouts on
disk. A disk hit is promoted to memory (without a hash).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xetfs.read.disk_tier import ChunkKey, DiskTier
from xetfs.read.memory_tier import MemoryTier

__all__ = ["CacheStats", "ChunkCache", "ChunkKey", "DEFAULT_DISK_BYTES", "DEFAULT_MEMORY_BYTES", "default_cache_dir"]

DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024
DEFAULT_DISK_BYTES = 10 * 1024 * 1024 * 1024


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xetfs"


@dataclass(slots=True)
class CacheStats:
    memory_hits: int = 0
    memory_misses: int = 0
    disk_hits: int = 0
    disk_misses: int = 0
    disk_corrupt: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class ChunkCache:
    """A memory tier (``MemoryTier``) over an optional disk tier, keyed by (xorb hash, chunk index)."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, cache_dir: Path | str | None = None,
                 disk_bytes: int = DEFAULT_DISK_BYTES, *, consumed_memory_bytes: int | None = None) -> None:
        """``consumed_memory_bytes``: how much of the memory tier chunks readers asked for whole may keep
        (``MemoryTier``) when a disk tier is behind it; the mount bounds it, as the kernel's page cache holds
        those bytes. Without a disk tier memory is the only copy, and it applies no such bound."""
        self.disk = DiskTier(Path(cache_dir), disk_bytes) if cache_dir is not None and disk_bytes > 0 else None
        self.memory: MemoryTier[ChunkKey] = MemoryTier(
            memory_bytes, consumed_memory_bytes if self.disk is not None else None)
        self.stats = CacheStats()

    @staticmethod
    def key(xorb_hash: bytes, index: int) -> ChunkKey:
        return (bytes(xorb_hash), index)

    def get_memory(self, key: ChunkKey) -> bytes | None:
        data = self.memory.get(key)
        if data is None:
            self.stats.memory_misses += 1
        else:
            self.stats.memory_hits += 1
        return data

    def mark_read(self, partly: Iterable[ChunkKey], consumed: Iterable[ChunkKey] = ()) -> None:
        """Readers asked for some bytes of the ``partly`` chunks and all bytes of the ``consumed`` ones: the
        memory tier evicts consumed chunks first (``MemoryTier.read``)."""
        self.memory.read(partly, consumed)

    def verified_hash(self, key: ChunkKey, data: bytes) -> bytes | None:
        """The chunk hash computed in this process from ``data``, this very object, when the memory tier holds
        it under ``key`` with one (``MemoryTier.hash_of``); None otherwise."""
        return self.memory.hash_of(key, data)

    def in_memory(self, key: ChunkKey) -> bool:
        """Whether the memory tier holds ``key`` (no stats, no LRU bump)."""
        return key in self.memory

    def get(self, xorb_hash: bytes, index: int) -> bytes | None:
        """Memory, then disk (blocking). A disk hit is promoted to memory."""
        key = self.key(xorb_hash, index)
        data = self.get_memory(key)
        if data is None and self.disk is not None:
            data = self.get_many_disk([key]).get(key)
        return data

    def get_many_disk(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, bytes]:
        """Disk lookups for memory misses (blocking: call from a worker thread for many keys)."""
        if self.disk is None or not keys:
            return {}
        found, corrupt = self.disk.get_many(keys)
        self.stats.disk_corrupt += corrupt
        self.stats.disk_hits += len(found)
        self.stats.disk_misses += len(keys) - len(found)
        for key, data in found.items():
            self.memory.put(key, data)
        return found

    def put(self, xorb_hash: bytes, index: int, data: bytes) -> None:
        self.put_many([(self.key(xorb_hash, index), data)])

    def put_many(self, items: Iterable[tuple[ChunkKey, bytes]], *, disk: bool = True,
                 hashes: Sequence[bytes] | None = None) -> None:
        """Store chunks in memory and (blocking) on disk, runs of consecutive chunks as one disk entry.
        ``hashes``: the chunk hashes computed from these very chunk objects, kept with them in memory."""
        items = list(items)
        for i, (key, data) in enumerate(items):
            self.memory.put(key, data, None if hashes is None else hashes[i])
        if disk and self.disk is not None:
            self.put_disk(items)

    def put_disk(self, items: Sequence[tuple[ChunkKey, bytes]], hashes: Sequence[bytes] | None = None) -> None:
        """Disk tier only (blocking): one entry per run of consecutive chunks of one xorb. ``hashes``: the
        verified chunk hashes of ``items``, reused as checksums."""
        assert self.disk is not None
        begin = 0
        for i in range(1, len(items) + 1):
            xorb, start = items[begin][0]
            if i == len(items) or items[i][0][0] != xorb or items[i][0][1] != start + i - begin:
                self.disk.put_range(xorb, start, [d for _, d in items[begin:i]],
                                    None if hashes is None else hashes[begin:i])
                begin = i

    @property
    def memory_bytes(self) -> int:
        return self.memory.size_bytes

    def snapshot(self) -> dict[str, int]:
        out = self.stats.as_dict()
        out["memory_bytes"] = self.memory_bytes
        out["memory_evictions"] = self.memory.evictions
        out["memory_unread_evictions"] = self.memory.unread_evictions
        out["disk_bytes"] = self.disk.size_bytes if self.disk is not None else 0
        out["disk_evictions"] = self.disk.evictions if self.disk is not None else 0
        return out
