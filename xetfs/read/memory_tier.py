"""The memory tier of the chunk cache: an LRU bounded in bytes, safe to use from worker threads
(docs/architecture.md, "The read path").

A value may be put with its chunk hash, computed by the caller from that very bytes object (the fetcher
hashes each chunk it decodes). ``hash_of`` gives it back only while the tier holds that same object, so the
hash always belongs to the bytes the caller has in hand: never to other bytes put under the key since."""
from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)


_Entry = tuple[bytes, bytes | None]   # (the value, its chunk hash when the caller had it)


def _entry_size(entry: _Entry) -> int:
    return len(entry[0])


class _CountingLRU(LRUCache[K, _Entry]):
    """An ``LRUCache`` that counts its evictions (cachetools evicts through ``popitem``)."""

    evictions = 0

    def popitem(self) -> tuple[K, _Entry]:
        item = super().popitem()
        self.evictions += 1
        return item


class MemoryTier(Generic[K]):
    """``key -> bytes``, least recently used first out once ``max_bytes`` is passed; a value larger than
    the whole bound is not kept. ``evictions`` counts the values pushed out."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: _CountingLRU[K] = _CountingLRU(maxsize=max(1, max_bytes), getsizeof=_entry_size)
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
            entry = self._lru.get(key)
        return None if entry is None else entry[0]

    def hash_of(self, key: K, data: bytes) -> bytes | None:
        """The hash put with ``data`` under ``key``, if the tier still holds that very object (``is``)."""
        with self._lock:
            entry = self._lru.get(key)
        return entry[1] if entry is not None and entry[0] is data else None

    def __contains__(self, key: K) -> bool:
        """Held or not, without refreshing its recency."""
        with self._lock:
            return key in self._lru

    def put(self, key: K, data: bytes, data_hash: bytes | None = None) -> None:
        """``data_hash``: the chunk hash the caller computed from this very ``data`` object, if any."""
        if len(data) > self._lru.maxsize:
            return
        with self._lock:
            self._lru[key] = (data, data_hash)
