"""Whole-file streams (docs/architecture.md, "Whole-file streams"): the rest of a file a reader loads whole,
fetched in file order in the background, a bounded lead ahead of that reader.

``stream_file`` asks for one reconstruction window after another and lets up to ``STREAM_DEPTH`` of them
fill at once, so the next window's reconstruction and first GET overlap the last pieces of the one before.
A window starts only if the bytes before its end that no reader asked for yet are at most the lead
(``read.flight.StreamLead``): further ahead, the memory tier would evict streamed chunks before the reader got
to them. (Not the distance from the furthest read: a large ``memcpy`` reads a tensor in several places at once.)
A stream at its lead whose file has no open handle *parks*: it ends, and ``FileReader.opened`` starts it again
where it stopped. So a loader that stops leaves no stream waiting for it, nor holding a share of the lead.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from xetfs.read.flight import StreamLead
from xetfs.read.windows import Window

MiB = 1024 * 1024
STREAM_WINDOW_BYTES = 32 * MiB
STREAM_DEPTH = 3                 # windows of one stream filling at once


class Chained(Protocol):
    """A file reader that streams the rest of its file, then the first of ``after`` not streamed yet
    (``FileReader.stream_rest``; False when it was started before or there is no background to run it in).
    The mount tells it when a handle of its file opens and closes: a stream parks while none is open."""

    def stream_rest(self, window_bytes: int = STREAM_WINDOW_BYTES, after: Sequence[Chained] = ()) -> bool: ...

    def opened(self) -> None: ...

    def closed(self) -> None: ...


class Streamed(Protocol):
    """What a stream needs of its file's reader (``FileReader``); ``handles``: how many are open."""

    size: int
    handles: int

    def read_below(self, pos: int) -> int: ...

    def moved(self) -> trio.Event: ...

    def next_missing(self, pos: int) -> int: ...

    async def prefetch_query(self, pos: int, stop: int) -> Window | None: ...

    async def prefetch_fill(self, w: Window) -> None: ...


async def stream_file(reader: Streamed, window_bytes: int, lead: StreamLead, then: Callable[[], None]) -> bool:
    """Stream ``reader``'s file from its first missing byte; call ``then`` once the last window was asked for
    and return True, or return False when the stream parked (at its lead with no handle open)."""
    ahead = trio.Semaphore(STREAM_DEPTH)
    lead.running += 1
    try:
        async with trio.open_nursery() as nursery:
            pos = 0
            while (pos := reader.next_missing(pos)) < reader.size:
                stop = min(reader.size, pos + window_bytes)
                if stop - reader.read_below(stop) > lead.lead_bytes(window_bytes):
                    if not reader.handles:
                        return False                  # nobody reads it now: park (once the fills end)
                    await lead.wait(reader.moved())   # far enough ahead: wait for the reader (or for room)
                    continue
                await ahead.acquire()
                w = await reader.prefetch_query(pos, stop)
                if w is None or w.recon is None:
                    ahead.release()
                else:
                    nursery.start_soon(_fill, reader, w, ahead)
                pos = w.cov_end if w is not None and w.cov_end > pos else stop
            then()
        return True
    finally:
        lead.running -= 1
        lead.changed()


async def _fill(reader: Streamed, w: Window, ahead: trio.Semaphore) -> None:
    try:
        await reader.prefetch_fill(w)
    finally:
        ahead.release()
