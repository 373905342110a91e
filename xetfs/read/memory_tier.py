"""The memory tier of the chunk cache: bounded in bytes, safe to use from worker threads (docs/architecture.md,
"The read path").

It keeps two queues. A chunk put there sits in *ahead* (fetched, no reader has read it yet: the stream's lead,
a readahead, a disk load) until a reader reads it (``read``); it then moves to *read*, an LRU. Room is made
from the least recently used read chunk first; ahead chunks go first (oldest first) only past ``AHEAD_SHARE``
of the tier, or when no read chunk is left. A plain LRU evicted the next shard's lead before the loader got
there: those chunks were put before the loader read the rest of the current shard, and every chunk it read
became more recent than them. The whole-file streams' lead is a quarter of the tier (``Fetcher``), so the
ahead queue holds it, and a readahead nobody reads can take no more than its share.

A value may be put with its chunk hash, computed by the caller from that very bytes object (the fetcher
hashes each chunk it decodes). ``hash_of`` gives it back only while the tier holds that same object, so the
hash always belongs to the bytes the caller has in hand: never to other bytes put under the key since."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

AHEAD_SHARE = 0.5   # of the tier: past it, the oldest chunk no reader has read yet goes first

_Entry = tuple[bytes, bytes | None]   # (the value, its chunk hash when the caller had it)


class MemoryTier(Generic[K]):
    """``key -> bytes`` within ``max_bytes``: read chunks go first, least recently used first, and chunks not
    read yet last (see the module's docstring); a value larger than the whole bound is not kept.
    ``evictions`` counts the values pushed out, ``unread_evictions`` those of them no reader had read."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max(1, max_bytes)
        self._ahead_max = int(self._max * AHEAD_SHARE)
        self._ahead: OrderedDict[K, _Entry] = OrderedDict()   # put, not read yet: oldest first
        self._read: OrderedDict[K, _Entry] = OrderedDict()    # read: least recently used first
        self._ahead_bytes = 0
        self._read_bytes = 0
        self.evictions = 0
        self.unread_evictions = 0   # of chunks no reader had read: wasted fetches
        self._lock = threading.Lock()   # worker threads put too

    @property
    def max_bytes(self) -> int:
        return self._max

    @property
    def size_bytes(self) -> int:
        return self._ahead_bytes + self._read_bytes

    @property
    def ahead_bytes(self) -> int:
        """Bytes of the chunks no reader has read yet."""
        return self._ahead_bytes

    def get(self, key: K) -> bytes | None:
        """The value; a read chunk becomes the most recently used (an ahead one stays where it is)."""
        with self._lock:
            entry = self._lookup(key)
        return None if entry is None else entry[0]

    def read(self, keys: Iterable[K]) -> None:
        """A reader read these chunks (or part of them): each becomes the most recently used read chunk."""
        with self._lock:
            for key in keys:
                entry = self._ahead.pop(key, None)
                if entry is not None:
                    self._ahead_bytes -= len(entry[0])
                    self._read[key] = entry
                    self._read_bytes += len(entry[0])
                elif key in self._read:
                    self._read.move_to_end(key)

    def hash_of(self, key: K, data: bytes) -> bytes | None:
        """The hash put with ``data`` under ``key``, if the tier still holds that very object (``is``)."""
        with self._lock:
            entry = self._lookup(key)
        return entry[1] if entry is not None and entry[0] is data else None

    def __contains__(self, key: K) -> bool:
        """Held or not, without refreshing its recency."""
        with self._lock:
            return key in self._ahead or key in self._read

    def put(self, key: K, data: bytes, data_hash: bytes | None = None) -> None:
        """``data_hash``: the chunk hash the caller computed from this very ``data`` object, if any. A chunk
        already read stays a read chunk; any other goes to the end of the ahead queue."""
        if len(data) > self._max:
            return
        with self._lock:
            old = self._read.pop(key, None)
            if old is not None:
                self._read_bytes += len(data) - len(old[0])
                self._read[key] = (data, data_hash)
            else:
                old = self._ahead.pop(key, None)
                self._ahead_bytes += len(data) - (0 if old is None else len(old[0]))
                self._ahead[key] = (data, data_hash)
            self._make_room(keep=key)

    def _lookup(self, key: K) -> _Entry | None:
        entry = self._read.get(key)
        if entry is not None:
            self._read.move_to_end(key)
            return entry
        return self._ahead.get(key)

    def _make_room(self, keep: K) -> None:
        """Evict until the bound holds; never ``keep``, the chunk just put (it fits the bound alone)."""
        while self._ahead_bytes + self._read_bytes > self._max:
            read_first = bool(self._read) and (self._ahead_bytes <= self._ahead_max or not self._ahead)
            if read_first and next(iter(self._read)) != keep:
                _, entry = self._read.popitem(last=False)
                self._read_bytes -= len(entry[0])
            elif next(iter(self._ahead)) != keep:
                _, entry = self._ahead.popitem(last=False)
                self._ahead_bytes -= len(entry[0])
                self.unread_evictions += 1
            else:   # ``keep`` is the oldest ahead chunk, the cap passed: the oldest read chunk goes instead
                _, entry = self._read.popitem(last=False)
                self._read_bytes -= len(entry[0])
            self.evictions += 1
