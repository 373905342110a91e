"""Byte-bounded chunk cache: a memory LRU over a persistent disk tier (design.md §2.9; xet-protocol §4, §7.3).

Keys are ``(xorb hash, chunk index)`` and values the chunk's *uncompressed* bytes, so any read that overlaps
a cached chunk hits, whatever window first brought it in (the hf-mount #133 lesson: a cache that only hits
when one stored range contains the whole read refetches endlessly).

Memory tier: ``cachetools.LRUCache`` bounded in bytes (``getsizeof=len``).

Disk tier, under ``<cache_dir>/chunks/<2 hex>/<xorb hex>.<index>``:
- an entry is ``MAGIC | blake3(data)[:16] | data``; a damaged entry (bad magic, bad checksum, short file) is
  deleted and reported as a miss, so the caller refetches it;
- writes are atomic (unique temp file in the same directory, then ``rename``), so two mounts sharing the
  directory never see a partial entry and may race to write the same key harmlessly (same content);
- "last access" is the file mtime, bumped on a hit (at most once per ``touch_interval_s``);
- the size bound is kept by a running byte count (seeded by one scan at start-up); when it passes the bound,
  a rescan of the directory (the truth, including the other mount's writes) deletes the oldest entries until
  the tier is at ``low_water`` of its bound. Deleting an entry another process just read is harmless.

Disk methods do blocking file I/O; the read path calls the ``*_many`` methods from a worker thread.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from cachetools import LRUCache

log = logging.getLogger(__name__)

ChunkKey = tuple[bytes, int]          # (raw 32-byte xorb hash, chunk index)

MAGIC = b"XFC1"
CHECKSUM_BYTES = 16
HEADER_BYTES = len(MAGIC) + CHECKSUM_BYTES
DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024
DEFAULT_DISK_BYTES = 10 * 1024 * 1024 * 1024


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xetfs"


def _checksum(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest(CHECKSUM_BYTES)


@dataclass(slots=True)
class CacheStats:
    memory_hits: int = 0
    memory_misses: int = 0
    disk_hits: int = 0
    disk_misses: int = 0
    disk_corrupt: int = 0
    disk_evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


class DiskTier:
    """The persistent tier. Thread-safe: every method may run in a worker thread."""

    def __init__(self, root: Path, max_bytes: int, *, low_water: float = 0.9,
                 touch_interval_s: float = 60.0) -> None:
        self.root = Path(root) / "chunks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.low_water = low_water
        self.touch_interval_s = touch_interval_s
        self._lock = threading.Lock()
        self._dirs: set[str] = set()
        self._root = str(self.root)
        self._bytes = sum(size for _, _, size in self._scan())
        self.evictions = 0

    def path_for(self, key: ChunkKey) -> Path:
        hexed = key[0].hex()
        return self.root / hexed[:2] / f"{hexed}.{key[1]}"

    def get(self, key: ChunkKey) -> bytes | None:
        """The chunk, or None when absent or damaged (a damaged entry is deleted)."""
        path = self.path_for(key)
        try:
            with open(path, "rb") as f:
                raw = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        data = raw[HEADER_BYTES:]
        if raw[:len(MAGIC)] != MAGIC or raw[len(MAGIC):HEADER_BYTES] != _checksum(data):
            log.warning("disk cache entry %s is damaged; dropping it", path.name)
            self._remove(path, len(raw))
            raise DamagedEntry(path.name)
        if time.time() - mtime > self.touch_interval_s:
            try:
                os.utime(path)
            except FileNotFoundError:
                pass
        return data

    def put(self, key: ChunkKey, data: bytes) -> None:
        hexed = key[0].hex()
        sub = os.path.join(self._root, hexed[:2])
        if hexed[:2] not in self._dirs:
            os.makedirs(sub, exist_ok=True)
            self._dirs.add(hexed[:2])
        path = os.path.join(sub, f"{hexed}.{key[1]}")
        tmp = os.path.join(sub, f".{hexed}.{key[1]}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.writev(fd, [MAGIC + _checksum(data), data])
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:   # a full disk must not fail a read: the cache is best effort
            log.warning("disk cache write failed: %s", exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        with self._lock:
            self._bytes += HEADER_BYTES + len(data)
            over = self._bytes > self.max_bytes
        if over:
            self.evict()

    def evict(self) -> None:
        """Delete least recently used entries until the tier is at its low-water mark."""
        entries = sorted(self._scan())
        total = sum(size for _, _, size in entries)
        target = int(self.max_bytes * self.low_water)
        for _, path, size in entries:
            if total <= target:
                break
            self._remove(path, 0)
            total -= size
            self.evictions += 1
        with self._lock:
            self._bytes = total

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _remove(self, path: Path, size: int) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._bytes -= size

    def _scan(self) -> Iterable[tuple[float, Path, int]]:
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            with os.scandir(sub) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    yield st.st_mtime, Path(entry.path), st.st_size


class DamagedEntry(Exception):
    """Internal: a disk entry failed its checksum (counted, then treated as a miss)."""


class ChunkCache:
    """Memory LRU + optional disk tier, keyed by (xorb hash, chunk index)."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, cache_dir: Path | str | None = None,
                 disk_bytes: int = DEFAULT_DISK_BYTES) -> None:
        self._memory: LRUCache[ChunkKey, bytes] = LRUCache(maxsize=max(1, memory_bytes), getsizeof=len)
        self.disk = DiskTier(Path(cache_dir), disk_bytes) if cache_dir is not None and disk_bytes > 0 else None
        self.stats = CacheStats()
        self._lock = threading.Lock()   # cachetools is not thread-safe; worker threads put too

    @staticmethod
    def key(xorb_hash: bytes, index: int) -> ChunkKey:
        return (bytes(xorb_hash), index)

    def get_memory(self, key: ChunkKey) -> bytes | None:
        with self._lock:
            data = self._memory.get(key)
        if data is None:
            self.stats.memory_misses += 1
        else:
            self.stats.memory_hits += 1
        return data

    def get(self, xorb_hash: bytes, index: int) -> bytes | None:
        """Memory, then disk (blocking). A disk hit is promoted to memory."""
        key = self.key(xorb_hash, index)
        data = self.get_memory(key)
        if data is None and self.disk is not None:
            data = self.get_many_disk([key]).get(key)
        return data

    def get_many_disk(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, bytes]:
        """Disk lookups for memory misses (blocking: call from a worker thread for many keys)."""
        found: dict[ChunkKey, bytes] = {}
        if self.disk is None:
            return found
        for key in keys:
            try:
                data = self.disk.get(key)
            except DamagedEntry:
                self.stats.disk_corrupt += 1
                data = None
            if data is None:
                self.stats.disk_misses += 1
                continue
            self.stats.disk_hits += 1
            found[key] = data
            self._put_memory(key, data)
        return found

    def put(self, xorb_hash: bytes, index: int, data: bytes) -> None:
        self.put_many([(self.key(xorb_hash, index), data)])

    def put_many(self, items: Iterable[tuple[ChunkKey, bytes]], *, disk: bool = True) -> None:
        """Store chunks in memory and (blocking) on disk."""
        for key, data in items:
            self._put_memory(key, data)
            if disk and self.disk is not None:
                self.disk.put(key, data)

    def _put_memory(self, key: ChunkKey, data: bytes) -> None:
        if len(data) > self._memory.maxsize:
            return
        with self._lock:
            self._memory[key] = data

    @property
    def memory_bytes(self) -> int:
        return int(self._memory.currsize)

    def snapshot(self) -> dict[str, int]:
        out = self.stats.as_dict()
        out["memory_bytes"] = self.memory_bytes
        if self.disk is not None:
            out["disk_bytes"] = self.disk.size_bytes
            out["disk_evictions"] = self.disk.evictions
        return out
