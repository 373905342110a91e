"""Per-handle readahead policy and the safetensors header (docs/architecture.md, "Reading").

``Readahead`` (one per open handle) decides how far past a read to fetch. The answer depends only on the
bytes the handle has consumed and on the file's format, never on timing or on the order in which the kernel's
requests arrive:

- It keeps the *consumed runs*: merged intervals of the bytes asked for so far. The run holding a read is the
  same whatever order its pieces arrived in.
- **Other files:** the sequential window is at most the length of that run (as kernel readahead grows), up
  to ``max_bytes``: ``fetch_end = run end + min(run length, max_bytes)``. A first, isolated read fetches
  itself plus as much again.
- **safetensors** (``boundaries``: header end and tensor ends, from ``safetensors_boundaries`` at open)
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
    tensors, and reads inside a region also fetch to its end (*cross-tensor*).

``decisions`` counts each kind, for ``xetfs stats``.
"""
from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Sequence
from typing import Protocol

MiB = 1024 * 1024
KERNEL_READAHEAD_BYTES = 256 * 1024   # the mount's read_ahead_kb (see fs.mount)


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
        self.max_runs = max_runs
        self._starts: list[int] = []   # consumed runs: sorted, disjoint, not adjacent
        self._ends: list[int] = []
        self.decisions: dict[str, int] = {"sequential": 0, "tensor_aligned": 0, "cross_tensor": 0, "exact": 0}

    def consume(self, offset: int, end: int) -> tuple[int, int]:
        """Record ``[offset, end)`` as read; returns the merged run that holds it."""
        i = bisect.bisect_left(self._ends, offset)          # first run ending at or after offset
        j = bisect.bisect_right(self._starts, end)          # runs starting at or before end
        lo, hi = offset, end
        if i < j:
            lo, hi = min(lo, self._starts[i]), max(hi, self._ends[j - 1])
        self._starts[i:j] = [lo]
        self._ends[i:j] = [hi]
        if len(self._starts) > self.max_runs:   # bounded: forget the shortest run (not this one)
            k = min((k for k in range(len(self._starts)) if self._starts[k] != lo),
                    key=lambda k: self._ends[k] - self._starts[k])
            del self._starts[k], self._ends[k]
        return lo, hi

    def fetch_end(self, offset: int, size: int) -> int:
        end = offset + size
        rs, re = self.consume(offset, end)
        window = min(re - rs, self.max_bytes)
        bounds = self.boundaries
        if not bounds:
            self.decisions["sequential"] += 1
            return max(end, re + window)
        i = bisect.bisect_right(bounds, offset)   # the region the read starts in: [lo, hi)
        lo = bounds[i - 1] if i else 0
        hi = bounds[i] if i < len(bounds) else None
        inside = hi is None or end <= hi
        aligned = end if hi is None else min(hi, end + self.max_bytes)
        k = bisect.bisect_right(bounds, rs + self.slop_bytes)
        if k < len(bounds) and bounds[k] < re - self.slop_bytes:   # the reader crossed a boundary itself
            self.decisions["cross_tensor"] += 1
            return max(end, re + window, aligned if inside else end)
        if inside and 0 <= lo - rs <= self.spill_bytes and re - lo > self.ahead_bytes:   # entered at its start
            self.decisions["tensor_aligned"] += 1
            return max(end, aligned if hi is not None else re + window)
        self.decisions["exact"] += 1
        return end


class _Sized(Protocol):
    size: int

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes: ...


def parse_safetensors_header(prefix: bytes) -> tuple[int, list[int]] | None:
    """(header end, sorted absolute tensor boundaries) from the start of a .safetensors file, or None."""
    if len(prefix) < 8:
        return None
    (n,) = struct.unpack("<Q", prefix[:8])
    if len(prefix) < 8 + n:
        return None
    try:
        header = json.loads(prefix[8:8 + n])
    except ValueError:
        return None
    base = 8 + n
    bounds = {base}
    for name, info in header.items() if isinstance(header, dict) else ():
        if name != "__metadata__" and isinstance(info, dict):
            begin, stop = info.get("data_offsets", (0, 0))
            bounds.update((base + int(begin), base + int(stop)))
    return base, sorted(bounds)


async def safetensors_boundaries(reader: _Sized, max_header_bytes: int = 64 * MiB) -> list[int] | None:
    """Read a .safetensors header through ``reader``: the tensor boundaries, or None if it is not one."""
    if reader.size < 8:
        return None
    (n,) = struct.unpack("<Q", await reader.read(0, 8))
    if n > max_header_bytes or 8 + n > reader.size:
        return None
    parsed = parse_safetensors_header(await reader.read(0, 8 + n))
    return None if parsed is None else parsed[1]
