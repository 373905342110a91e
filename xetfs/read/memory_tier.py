"""The memory tier of the chunk cache: an LRU bounded in bytes, safe to use from worker threads
(docs/architecture.md, "The read path")."""
from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)


class _CountingLRU(LRUCache[K, bytes]):
    """An ``LRUCache`` that counts its evictions (cachetools evicts through ``popitem``)."""

    evictions = 0

    def popitem(self) -> tuple[K, bytes]:
        item = super().popitem()
        self.evictions += 1
        return item


class MemoryTier(Generic[K]):
    """``key -> bytes``, least recently used first out once ``max_bytes`` is passed; a value larger than
    the whole bound is not kept. ``evictions`` counts the values pushed out."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: _CountingLRU[K] = _CountingLRU(maxsize=max(1, max_bytes), getsizeof=len)
        self._lock = threading.Lock()   # cachetools is not thread-safe; worker threads put too

    @property
    def max_bytes(self) -> int:
        return int(self._lru.maxsize)

    @property
    def size_bytes(self) -> int:
        return int(self._lru.currsize)

    @property
    def evictions(self) -> int:
        return self._lru.evictions

    def get(self, key: K) -> bytes | None:
        with self._lock:
            return self._lru.get(key)

    def __contains__(self, key: K) -> bool:
        """Held or not, without refreshing its recency."""
        with self._lock:
            return key in self._lru

    def put(self, key: K, data: bytes) -> None:
        if len(data) > self._lru.maxsize:
            return
        with self._lock:
            self._lru[key] = data
