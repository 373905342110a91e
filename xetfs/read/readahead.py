"""Per-handle readahead policy and the safetensors header (docs/architecture.md, "The read path").

``Readahead`` (one per open handle) decides how far past a read to fetch. The answer depends only on the
bytes the handle has consumed and on the file's format, never on timing or on the order in which the kernel's
requests arrive:

- It keeps the *consumed runs* (``Runs``): merged intervals of the bytes asked for so far. The run holding a
  read is the same whatever order its pieces arrived in.
- **Other files:** the sequential window is at most the length of that run (as kernel readahead grows), up
  to ``max_bytes``: ``fetch_end = run end + min(run length, max_bytes)``. A first, isolated read fetches
  itself plus as much again.
- **safetensors** (``boundaries``: header end and tensor ends, read at open by ``xetfs.read.formats``)
  split the file into regions (the header, each tensor). The kernel spills its requests a little over
  region boundaries on its own: a page fault reads up to half of ``read_ahead_kb`` before it, and a reader
  at a tensor's end has the kernel read ahead into the next one. So:

  * a read inside one region whose run holds the region's start, began at most ``spill_bytes`` before it
    and reaches more than ``ahead_bytes`` into it (the reader entered the region at its start and goes on
    reading it, as a load of that tensor does; the kernel alone reads ahead less than that past a reader
    at the end of the previous tensor) fetches to the region's end, at most ``max_bytes`` past the read
    (*tensor-aligned*);
  * any other read fetches only itself (*exact*): one that straddles a boundary, one in the middle of a
    region (random access), one that continues a run coming from an earlier region (the kernel reading
    ahead past the tensor a reader loads). So one tensor's load never reads ahead into its neighbours,
    whatever order its requests arrive in (the bytes fetched are the same either way: the tensor's);
  * once the run holds a boundary with more than ``slop_bytes`` consumed on both sides, the reader has
    crossed it itself (it walks the file): the window grows with the run as for other files, across
    tensors, and reads inside a region also fetch to its end (*sequential*).

Parquet files get the same policy with column chunks as regions (*column-aligned*). ``decisions`` counts
each kind, for ``xetfs stats``.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence

MiB = 1024 * 1024
KERNEL_READAHEAD_BYTES = 256 * 1024   # the mount's read_ahead_kb (see fs.mount)


class Runs:
    """Merged intervals of the bytes asked for so far: sorted, disjoint, not adjacent; at most ``max_runs``
    (beyond that the shortest other run is forgotten)."""

    def __init__(self, max_runs: int = 256) -> None:
        self.max_runs = max_runs
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.total = 0                  # bytes in the runs

    def add(self, offset: int, end: int) -> tuple[int, int]:
        """Record ``[offset, end)``; returns the merged run that holds it."""
        i = bisect.bisect_left(self._ends, offset)          # first run ending at or after offset
        j = bisect.bisect_right(self._starts, end)          # runs starting at or before end
        lo, hi = offset, end
        if i < j:
            lo, hi = min(lo, self._starts[i]), max(hi, self._ends[j - 1])
        self.total += (hi - lo) - sum(self._ends[k] - self._starts[k] for k in range(i, j))
        self._starts[i:j] = [lo]
        self._ends[i:j] = [hi]
        if len(self._starts) > self.max_runs:
            k = min((k for k in range(len(self._starts)) if self._starts[k] != lo),
                    key=lambda k: self._ends[k] - self._starts[k])
            self.total -= self._ends[k] - self._starts[k]
            del self._starts[k], self._ends[k]
        return lo, hi

    def covers(self, start: int, end: int) -> bool:
        """Whether one run holds all of ``[start, end)``."""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def below(self, pos: int) -> int:
        """Bytes of the runs before ``pos``."""
        total = 0
        for a, b in zip(self._starts, self._ends):
            if a >= pos:
                break
            total += min(b, pos) - a
        return total


class Readahead:
    """Per open handle: how far past a read to fetch (see the module docstring)."""

    def __init__(self, max_bytes: int = 64 * MiB, boundaries: Sequence[int] | None = None, *,
                 slop_bytes: int = 4 * KERNEL_READAHEAD_BYTES, spill_bytes: int = KERNEL_READAHEAD_BYTES,
                 ahead_bytes: int = 3 * KERNEL_READAHEAD_BYTES, max_runs: int = 256) -> None:
        self.max_bytes = max_bytes
        self.boundaries = boundaries
        self.slop_bytes = slop_bytes
        self.spill_bytes = spill_bytes
        self.ahead_bytes = ahead_bytes
        self._runs = Runs(max_runs)     # the consumed runs
        self._touched: set[int] = set()   # indexes of the regions holding consumed bytes
        self.aligned = "tensor_aligned"
        self.decisions: dict[str, int] = {}   # how many reads got each kind of fetch (``xetfs stats``)

    @property
    def consumed_bytes(self) -> int:
        return self._runs.total

    def regions_touched(self) -> int:
        """How many regions (tensors) hold consumed bytes."""
        return len(self._touched)

    def wants_whole_file(self, size: int, *, share: float = 0.5, tensors: int = 16) -> bool:
        """Whether the reader looks like it loads the whole file: it consumed ``share`` of it, or (a
        safetensors file) touched ``tensors`` of its tensors."""
        if self.consumed_bytes >= share * size:
            return True
        return self.aligned == "tensor_aligned" and bool(self.boundaries) and self.regions_touched() >= tensors

    def set_regions(self, bounds: Sequence[int], kind: str = "tensor") -> None:
        """Align to these region boundaries (``xetfs.read.formats``: tensors, or parquet column chunks)."""
        self.boundaries = bounds
        self.aligned = f"{kind}_aligned"

    def _decide(self, kind: str, fetch_end: int) -> int:
        self.decisions[kind] = self.decisions.get(kind, 0) + 1
        return fetch_end

    def consume(self, offset: int, end: int) -> tuple[int, int]:
        """Record ``[offset, end)`` as read; returns the merged run that holds it."""
        lo, hi = self._runs.add(offset, end)
        if self.boundaries and len(self._touched) <= len(self.boundaries):
            first = bisect.bisect_right(self.boundaries, offset)
            self._touched.update(range(first, max(first, bisect.bisect_left(self.boundaries, end)) + 1))
        return lo, hi

    def fetch_end(self, offset: int, size: int) -> int:
        end = offset + size
        rs, re = self.consume(offset, end)
        window = min(re - rs, self.max_bytes)
        bounds = self.boundaries
        if not bounds:
            return self._decide("sequential", max(end, re + window))
        i = bisect.bisect_right(bounds, offset)   # the region the read starts in: [lo, hi)
        lo = bounds[i - 1] if i else 0
        hi = bounds[i] if i < len(bounds) else None
        inside = hi is None or end <= hi
        aligned = end if hi is None else min(hi, end + self.max_bytes)
        k = bisect.bisect_right(bounds, rs + self.slop_bytes)
        if k < len(bounds) and bounds[k] < re - self.slop_bytes:   # the reader crossed a boundary itself
            return self._decide("sequential", max(end, re + window, aligned if inside else end))
        if inside and 0 <= lo - rs <= self.spill_bytes and re - lo > self.ahead_bytes:   # entered at its start
            return self._decide(self.aligned, max(end, aligned if hi is not None else re + window))
        return self._decide("exact", end)
