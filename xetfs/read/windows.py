"""The reconstruction windows of one file (docs/architecture.md, "The read path").

A ``Window`` is one reconstruction query ``[start, stop)`` of a file and, once answered, its result re-based on
the whole chunks the server returned: ``[cov_start, cov_end)``, a superset of the query. ``Windows`` keeps them
for ``ttl_s`` (below the data URLs' expiry), at most ``max_windows`` of them once filled (all their chunks
fetched and learned, see ``FileReader._fill``; an unfilled window stays while its fetches run, up to four
times that bound). They never overlap: a new query stops
where the next window's chunks begin (``free_until``), and waits first for in-flight queries whose chunk-aligned
coverage could reach it (``pending_near``), so no chunk is planned, or fetched, through two windows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from xetfs.core.params import DEFAULT_XORB
from xetfs.core.reconstruction import Reconstruction
from xetfs.read.flight import Pending

MAX_CHUNK_BYTES = DEFAULT_XORB.max_chunk_uncompressed


@dataclass(slots=True)
class Window:
    """A reconstruction query ``[start, stop)`` and (once answered) its result. ``[cov_start, cov_end)`` is
    what it covers: the query while in flight, then the whole chunks the server returned (a superset)."""

    start: int
    stop: int
    pending: Pending
    born_s: float
    recon: Reconstruction | None = None
    cov_start: int = 0
    cov_end: int = 0
    filled: bool = False      # all its chunks were fetched and their offsets learned

    def covers(self, pos: int) -> bool:
        return self.cov_start <= pos < self.cov_end

    def answered(self, r: Reconstruction) -> None:
        """Keep ``r`` re-based on its whole chunks: byte 0 of ``recon`` is file offset ``cov_start``."""
        self.cov_start = self.start - r.offset_into_first_range
        self.recon = dataclasses.replace(r, offset_into_first_range=0)
        self.cov_end = self.cov_start + self.recon.size_bytes


class Windows:
    """The windows of one file, in no particular order (there are few)."""

    def __init__(self, ttl_s: float = 300.0, max_windows: int = 64) -> None:
        self.ttl_s = ttl_s
        self.max_windows = max_windows
        self._all: list[Window] = []

    def clear(self) -> None:
        self._all.clear()

    def expire(self, now: float) -> None:
        self._all = [w for w in self._all if w.pending.error is None and now - w.born_s < self.ttl_s]

    def covering(self, pos: int) -> Window | None:
        for w in self._all:
            if w.covers(pos):
                return w
        return None

    def covered_until(self, pos: int) -> int:
        """The first offset at or after ``pos`` that no window covers."""
        for w in sorted(self._all, key=lambda w: w.cov_start):
            if w.covers(pos):
                pos = w.cov_end
        return pos

    def free_until(self, pos: int, stop: int) -> int:
        """``stop``, or the start of the first window's coverage in ``(pos, stop)``."""
        for w in self._all:
            if pos < w.cov_start < stop:
                stop = w.cov_start
        return stop

    def pending_near(self, pos: int, stop: int) -> Window | None:
        """An unanswered window whose coverage, once known, could overlap ``[pos, stop)``."""
        for w in self._all:
            if w.recon is None and w.start - MAX_CHUNK_BYTES < stop and pos < w.stop + MAX_CHUNK_BYTES:
                return w
        return None

    def add(self, pos: int, stop: int, now: float) -> Window:
        w = Window(pos, stop, Pending(), now, cov_start=pos, cov_end=stop)
        self._all.append(w)
        if len(self._all) > self.max_windows:   # the oldest filled one: its chunks are known, a query of them
            old = next((v for v in self._all if v.filled), None)   # would stop at them; an unfilled one
            if old is None and len(self._all) > 4 * self.max_windows:   # may still be fetching
                old = self._all[0]
            if old is not None:
                self._all.remove(old)
        return w
