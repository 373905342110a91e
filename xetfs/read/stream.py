"""Whole-file streams (docs/architecture.md, "Whole-file streams"): the rest of a file a reader loads whole,
fetched in file order in the background, a bounded lead ahead of that reader.

``FileStream.stream`` asks for one reconstruction window after another and lets up to ``STREAM_DEPTH`` of them
fill at once, so the next window's reconstruction and first GET overlap the last pieces of the one before.
A window starts only if the bytes before its end that no reader asked for yet are at most the lead
(``read.flight.StreamLead``): further ahead, the memory tier would evict streamed chunks before the reader got
to them. (Not the distance from the furthest read: a large ``memcpy`` reads a tensor in several places at once.)
A stream at its lead whose file has no open handle *parks*: it ends, and the next open of the file starts it
again where it stopped. So a loader that stops leaves no stream waiting for it, nor holding a share of the lead.

``FileStream`` is a file's stream (``FileReader.stream``): started once, it counts the file's open handles and
its reads, and it parks and goes on as they come and go.
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
    The mount tells it when a handle of its file opens and closes (``handles``: how many are open now): a
    stream parks while none is open."""

    @property
    def handles(self) -> int: ...

    def stream_rest(self, window_bytes: int = STREAM_WINDOW_BYTES, after: Sequence[Chained] = ()) -> bool: ...

    def opened(self) -> None: ...

    def closed(self) -> None: ...


class Streamed(Protocol):
    """What a stream needs of its file's reader (``FileReader``)."""

    size: int

    def read_below(self, pos: int) -> int: ...

    def next_missing(self, pos: int) -> int: ...

    async def prefetch_query(self, pos: int, stop: int) -> Window | None: ...

    async def prefetch_fill(self, w: Window) -> None: ...


class Background(Protocol):
    """Where streams run (``Fetcher``): its nursery (None: nowhere, no stream starts) and the shared lead."""

    nursery: trio.Nursery | None
    streams: StreamLead


class FileStream:
    """The whole-file stream of one file's reader, and the file's open handles (the mount reports them)."""

    def __init__(self, reader: Streamed, background: Background) -> None:
        self.reader = reader
        self.background = background
        self.started = False
        self.handles = 0
        self._parked: tuple[int, tuple[Chained, ...]] | None = None   # a parked stream's window and queue
        self._moved: trio.Event | None = None   # set at the reader's next read: a stream waiting at its lead goes on

    def start(self, window_bytes: int, after: Sequence[Chained] = ()) -> bool:
        """Stream the file (once), then the first of ``after`` not streamed yet with the rest queued behind it.
        False when it was started before or there is no background."""
        if self.started or self.background.nursery is None:
            return False
        self.started = True
        self.background.nursery.start_soon(self._run, window_bytes, tuple(after))
        return True

    def opened(self) -> None:
        """A handle of the file was opened: a parked stream goes on (with the files queued behind it)."""
        self.handles += 1
        if self._parked is not None and self.background.nursery is not None:
            window_bytes, after = self._parked
            self._parked = None
            self.background.nursery.start_soon(self._run, window_bytes, after)

    def closed(self) -> None:
        """A handle of the file was closed; once none is open, a stream waiting at its lead parks."""
        self.handles -= 1
        if not self.handles:
            self.read()

    def read(self) -> None:
        """The reader read on (or its last handle closed): a stream waiting at its lead looks again."""
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    def _moved_event(self) -> trio.Event:
        if self._moved is None or self._moved.is_set():   # (a stream's end sets it too: ``StreamLead.changed``)
            self._moved = trio.Event()
        return self._moved

    async def _run(self, window_bytes: int, after: tuple[Chained, ...]) -> None:
        def next_file() -> None:   # the next file streams while this one's last windows fill
            for i, r in enumerate(after):
                if r.stream_rest(window_bytes, after[i + 1:]):
                    break
        while not await self.stream(window_bytes, next_file):
            if not self.handles:   # parked: ``opened`` starts it again
                self._parked = (window_bytes, after)
                return
            # (opened again while its last windows filled: it goes on)

    async def stream(self, window_bytes: int, then: Callable[[], None]) -> bool:
        """Stream the file from its first missing byte; call ``then`` once the last window was asked for and
        return True, or return False when the stream parked (at its lead with no handle open)."""
        reader, lead = self.reader, self.background.streams
        ahead = trio.Semaphore(STREAM_DEPTH)
        lead.running += 1
        try:
            async with trio.open_nursery() as nursery:
                pos = 0
                while (pos := reader.next_missing(pos)) < reader.size:
                    stop = min(reader.size, pos + window_bytes)
                    if stop - reader.read_below(stop) > lead.lead_bytes(self, window_bytes):
                        if not self.handles:
                            return False                      # nobody reads it now: park (once the fills end)
                        await lead.wait(self._moved_event())  # far enough ahead: wait for the reader (or for room)
                        continue
                    await ahead.acquire()
                    lead.fetched(self, reader, stop)
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
