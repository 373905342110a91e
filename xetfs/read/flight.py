"""In-flight bookkeeping of the read path: single-flight results, the fetch byte budget, worker-thread
helpers and the daemon's allocator settings (docs/architecture.md, "The read path")."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from xetfs.errors import TransientError
from xetfs.osutil.malloc import set_malloc

MiB = 1024 * 1024
THREAD_MIN_BYTES = 64 * 1024   # smaller CPU work runs on the trio thread (a thread hop costs more)


class FetchCancelled(TransientError):
    """The task running a fetch was cancelled (its nursery closed): a waiter starts the fetch again."""


class Pending:
    """One in-flight operation: waiters ``await done.wait()`` then read ``value`` or ``error``."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def tune_allocator(mmap_threshold_bytes: int = 64 * MiB, trim_threshold_bytes: int = 128 * MiB) -> bool:
    """glibc malloc settings for the mount daemon (docs/architecture.md, "Performance"): a fixed mmap
    threshold so fetch buffers and 1 MiB reply buffers come from the heap and are reused instead of being mmapped, page-faulted and
    unmapped each time; a trim threshold so freed memory is kept for reuse; one arena, so chunks decoded in
    worker threads reuse the memory the cache evicted. False when the C library is not glibc."""
    return set_malloc(mmap_threshold_bytes, trim_threshold_bytes)


async def concurrently(*fns: Callable[[], Awaitable[Any]] | None) -> None:
    """Run the given async callables concurrently; re-raise the first failure as itself (not a group)."""
    failures: list[Exception] = []

    async def run(fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            await fn()
        except Exception as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for fn in fns:
            if fn is not None:
                nursery.start_soon(run, fn)
    if failures:
        raise failures[0]


async def maybe_thread(fn: Any, size: int, limiter: trio.CapacityLimiter, *args: Any) -> Any:
    if size < THREAD_MIN_BYTES:
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter)


class ByteBudget:
    """At most ``limit_bytes`` of fetch buffers (and their decoded copies) in flight; one oversized fetch may
    run alone. ``release`` is synchronous, so it is safe in a ``finally`` of a cancelled task."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._changed = trio.Event()

    async def acquire(self, n: int) -> None:
        while self.used_bytes and self.used_bytes + n > self.limit_bytes:
            await self._changed.wait()
        self.used_bytes += n

    def release(self, n: int) -> None:
        self.used_bytes -= n
        self._changed.set()
        self._changed = trio.Event()


class Asked(Protocol):
    """A file's reader, as ``StreamLead`` sees it."""

    def read_below(self, pos: int) -> int: ...


MAX_HELD_STREAMS = 64   # streams whose fetched-ahead bytes count (oldest dropped first)


class StreamLead:
    """How far whole-file streams (``FileReader.stream_rest``) may run ahead of the bytes their readers asked
    for: together about ``limit_bytes`` (a share of the memory tier). A stream that ran further ahead would evict
    chunks from the memory tier before its reader got to them, and the reader would load them back from the disk
    tier. Each running stream may take an even share, and never more than what the bytes fetched ahead and not
    yet read by every other stream leave: those of a stream that parked or ended count too, until read, as they
    stay in the memory tier. A waiting stream wakes when its own reader reads on (the event it waits on) or when
    ``changed`` is called (a stream ended); another file's read does not wake it."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.running = 0
        self._waiting: set[trio.Event] = set()
        self._fetched: dict[object, tuple[Asked, int]] = {}   # stream -> (its reader, end of what it asked)

    def fetched(self, stream: object, reader: Asked, end: int) -> None:
        """``stream`` asked for its file's bytes up to ``end``."""
        old = self._fetched.pop(stream, None)
        self._fetched[stream] = (reader, max(end, old[1]) if old else end)
        while len(self._fetched) > MAX_HELD_STREAMS:
            del self._fetched[next(iter(self._fetched))]

    def unread_by_others(self, stream: object) -> int:
        """Bytes the other streams asked for that their readers have not asked for yet."""
        total = 0
        for key, (reader, end) in list(self._fetched.items()):
            unread = end - reader.read_below(end)
            if unread <= 0:
                del self._fetched[key]   # all read: nothing of it is ahead any more
            elif key is not stream:
                total += unread
        return total

    def lead_bytes(self, stream: object, floor: int) -> int:
        """The lead ``stream`` may take now, never below ``floor`` (one stream window)."""
        share = min(self.limit_bytes // max(1, self.running), self.limit_bytes - self.unread_by_others(stream))
        return max(floor, share)

    def changed(self) -> None:
        for moved in self._waiting:
            moved.set()

    async def wait(self, moved: trio.Event) -> None:
        """Until ``moved`` is set (by the stream's reader) or ``changed`` is called."""
        self._waiting.add(moved)
        try:
            await moved.wait()
        finally:
            self._waiting.discard(moved)
