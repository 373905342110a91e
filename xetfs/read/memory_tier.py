"""The memory tier of the chunk cache: bounded in bytes, safe to use from worker threads (docs/architecture.md,
"The read path").

Three queues, by what readers did with a chunk:
- *ahead*: put (by a stream, a readahead, a disk load) and not read yet, oldest first;
- *partly read*: readers asked for some of its bytes, not all: the rest is likely to be asked for soon (the
  chunk straddles two tensors, or two reads), least recently used first;
- *consumed*: readers asked for every byte of it (``FileReader`` knows which bytes its readers asked for),
  oldest first.
Room is made from the consumed chunks first, then the partly read ones; ahead chunks go first (oldest first)
only past ``AHEAD_SHARE`` of the tier, or when nothing else is left. The chunk just put always stays.

The mount also bounds the consumed chunks alone (``consumed_max_bytes``): the kernel's page cache holds every
byte its readers asked for (``keep_cache``), so a second copy here would only grow the daemon. Past the bound
the oldest consumed chunk goes at once, and the next chunk put reuses its memory: a sequential read keeps the
tier small instead of filling it in fresh pages (about 1 s of the daemon's system time per 256 MiB of tier on
the benchmark machine; docs/architecture.md, "The page cache's copy is enough").

Why not one LRU: the next shard's lead, fetched while the loader read the last tensors of the shard before
it, was older than every chunk the loader read since, and went first. And a loader whose memcpy copies
tensors from their end backwards reads the chunk straddling two tensors at the start of the first tensor's
copy and again at the end of the second's: two tensors of reads apart, it had become the least recently used.
The whole-file streams' lead (``lead_bytes``, which ``Fetcher`` gives ``StreamLead``) is a share of the tier
smaller than the ahead share, so a stream's lead is not what makes room.

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
LEAD_SHARE = 0.25   # of the tier: how far the whole-file streams may run ahead of their readers, together
assert LEAD_SHARE < AHEAD_SHARE, "a stream's lead must fit in the ahead share, or it is evicted before it is read"

_Entry = tuple[bytes, bytes | None]   # (the value, its chunk hash when the caller had it)


class _Queue(Generic[K]):
    """Entries in eviction order (first out first) and their bytes."""

    def __init__(self) -> None:
        self.entries: OrderedDict[K, _Entry] = OrderedDict()
        self.bytes = 0

    def add(self, key: K, entry: _Entry) -> None:
        """At the end (last out)."""
        self.entries[key] = entry
        self.bytes += len(entry[0])

    def pop(self, key: K) -> _Entry | None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.bytes -= len(entry[0])
        return entry

    def first(self) -> K:
        return next(iter(self.entries))


class MemoryTier(Generic[K]):
    """``key -> bytes`` within ``max_bytes``, evicting consumed chunks first, then partly read ones, then
    chunks not read yet, and consumed chunks past ``consumed_max_bytes`` (default: no bound of their own) at
    once (see the module's docstring); a value larger than the whole bound is not kept.
    ``evictions`` counts the values pushed out, ``unread_evictions`` those of them no reader had read."""

    def __init__(self, max_bytes: int, consumed_max_bytes: int | None = None) -> None:
        self._max = max(1, max_bytes)
        self._ahead_max = int(self._max * AHEAD_SHARE)
        self._consumed_max = self._max if consumed_max_bytes is None else max(0, consumed_max_bytes)
        self._ahead: _Queue[K] = _Queue()
        self._partly: _Queue[K] = _Queue()
        self._consumed: _Queue[K] = _Queue()
        self.evictions = 0
        self.unread_evictions = 0   # of chunks no reader had read: wasted fetches
        self._lock = threading.Lock()   # worker threads put too

    @property
    def max_bytes(self) -> int:
        return self._max

    @property
    def lead_bytes(self) -> int:
        """How far the whole-file streams may run ahead of their readers, together (``StreamLead``)."""
        return int(self._max * LEAD_SHARE)

    @property
    def size_bytes(self) -> int:
        return self._ahead.bytes + self._partly.bytes + self._consumed.bytes

    @property
    def ahead_bytes(self) -> int:
        """Bytes of the chunks no reader has read yet."""
        return self._ahead.bytes

    def get(self, key: K) -> bytes | None:
        """The value; a partly read chunk becomes the most recently used one (no other queue moves)."""
        with self._lock:
            entry = self._lookup(key)
        return None if entry is None else entry[0]

    def read(self, partly: Iterable[K], consumed: Iterable[K] = ()) -> None:
        """Readers asked for some of the bytes of the ``partly`` chunks and for all of the ``consumed``
        ones: each goes to the end of its queue."""
        with self._lock:
            for keys, queue in ((partly, self._partly), (consumed, self._consumed)):
                for key in keys:
                    taken = self._take(key)
                    if taken is not None:
                        queue.add(key, taken[1])
            self._bound_consumed(keep=None)

    def hash_of(self, key: K, data: bytes) -> bytes | None:
        """The hash put with ``data`` under ``key``, if the tier still holds that very object (``is``)."""
        with self._lock:
            entry = self._lookup(key)
        return entry[1] if entry is not None and entry[0] is data else None

    def __contains__(self, key: K) -> bool:
        """Held or not, without refreshing its recency."""
        with self._lock:
            return any(key in q.entries for q in (self._ahead, self._partly, self._consumed))

    def put(self, key: K, data: bytes, data_hash: bytes | None = None) -> None:
        """``data_hash``: the chunk hash the caller computed from this very ``data`` object, if any. A chunk
        put again goes to the end of the queue it was in; a new one to the end of the ahead queue."""
        if len(data) > self._max:
            return
        with self._lock:
            taken = self._take(key)
            queue = self._ahead if taken is None else taken[0]
            queue.add(key, (data, data_hash))
            self._make_room(keep=key)
            self._bound_consumed(keep=key)

    def _take(self, key: K) -> tuple[_Queue[K], _Entry] | None:
        """Pop ``key`` from whichever queue holds it: that queue and the entry."""
        for queue in (self._partly, self._consumed, self._ahead):
            entry = queue.pop(key)
            if entry is not None:
                return queue, entry
        return None

    def _lookup(self, key: K) -> _Entry | None:
        entry = self._partly.entries.get(key)
        if entry is not None:
            self._partly.entries.move_to_end(key)
            return entry
        return self._consumed.entries.get(key) or self._ahead.entries.get(key)

    def _bound_consumed(self, keep: K | None) -> None:
        """Evict the oldest consumed chunks past their own bound; never ``keep``, the chunk just put."""
        consumed = self._consumed
        while consumed.bytes > self._consumed_max and consumed.entries and consumed.first() != keep:
            consumed.pop(consumed.first())
            self.evictions += 1

    def _make_room(self, keep: K) -> None:
        """Evict until the bound holds; never ``keep``, the chunk just put (it fits the bound alone)."""
        while self.size_bytes > self._max:
            over_share = self._ahead.bytes > self._ahead_max
            order = ((self._ahead, self._consumed, self._partly) if over_share else
                     (self._consumed, self._partly, self._ahead))
            # ``keep`` is last in its queue: first only when alone in it, and then that queue is passed over
            queue = next(q for q in order if q.entries and q.first() != keep)
            queue.pop(queue.first())
            self.evictions += 1
            self.unread_evictions += queue is self._ahead
