"""The disk readahead of one file (docs/architecture.md, "The read path"): the known chunks ahead of a read
(``read.known``), loaded from the disk tier into the memory tier in batches of ``DISK_BATCH_BYTES``, one
worker-thread load each, in file order behind a cursor (no rescans). A read of a chunk whose batch is being
loaded waits for that load instead of loading it twice. A chunk the disk tier lacks sends the readahead to the
network from there.

On a first pass over the bytes (not a re-read), the chunks readers already asked for are left out: the kernel
holds their bytes (read out of order, as the tail a large ``memcpy`` copies first), so loading them back from
disk would only evict others from the memory tier.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from xetfs.read.fetcher import Fetcher
from xetfs.read.flight import Pending
from xetfs.read.known import KnownChunks
from xetfs.read.readahead import Runs

__all__ = ["DISK_BATCH_BYTES", "DiskReadahead"]

log = logging.getLogger(__name__)

DISK_BATCH_BYTES = 8 * 1024 * 1024


class DiskReadahead:
    """``known``'s chunks of a byte range -> memory tier. ``asked``: the bytes the file's readers asked for;
    ``to_network(start, stop)``: read ahead from the network instead, from the first chunk the disk lacks."""

    def __init__(self, known: KnownChunks, fetcher: Fetcher, asked: Runs,
                 to_network: Callable[[int, int], None]) -> None:
        self.known = known
        self.fetcher = fetcher
        self.asked = asked
        self.to_network = to_network
        self.batches: dict[int, Pending] = {}   # loads in flight, by batch index
        self._next = 0                          # the next batch to start

    def loading(self, at: int) -> Pending | None:
        """The load in flight of the batch holding file offset ``at``, if any."""
        return self.batches.get(at // DISK_BATCH_BYTES)

    def start(self, start: int, stop: int, first_read: bool) -> None:
        """Start the batch loads of ``[start, stop)`` not started yet (needs the fetcher's nursery)."""
        assert self.fetcher.nursery is not None
        first, last = start // DISK_BATCH_BYTES, (stop - 1) // DISK_BATCH_BYTES
        if not first <= self._next <= last + 1:
            self._next = first
        while self._next <= last:
            b = self._next
            self._next += 1
            if b not in self.batches:
                self.batches[b] = Pending()
                self.fetcher.nursery.start_soon(self._load, b, stop, first_read)

    async def _load(self, b: int, stop: int, first_read: bool) -> None:
        cache = self.fetcher.cache
        pending = self.batches[b]
        try:
            lo, hi = b * DISK_BATCH_BYTES, (b + 1) * DISK_BATCH_BYTES
            found = [(at, c) for at, c in self.known.starting_in(lo, hi)
                     if not (first_read and self.asked.covers(at, at + c.size))]
            keys = [(c.xorb_hash, c.index) for _, c in found]
            want = [k for k in keys if not cache.in_memory(k)]
            hits = await trio.to_thread.run_sync(cache.get_many_disk, want, limiter=self.fetcher.disk) \
                if want else {}
            missing = [at for (at, _), k in zip(found, keys) if k not in hits and k in want]
            if missing:
                self.to_network(missing[0], max(stop, missing[0] + 1))
        except OSError as exc:
            log.debug("disk readahead of batch %d failed: %s", b, exc)
        finally:
            del self.batches[b]
            pending.done.set()
