"""Per-handle readahead policy and the safetensors header (docs/architecture.md, "Performance").

``Readahead`` (one per open handle) grows a sequential window from ``min_bytes``, doubling per sequential read
up to ``max_bytes``; random reads fetch what is asked (the server aligns to chunks), extended to the end of
the safetensors tensor they start in (``boundaries``, from ``safetensors_boundaries`` at open).
"""
from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Sequence
from typing import Any

MiB = 1024 * 1024


class Readahead:
    """Per open handle: how far past a read to fetch (sequential growth, tensor alignment when random)."""

    def __init__(self, min_bytes: int = 1 * MiB, max_bytes: int = 64 * MiB,
                 boundaries: Sequence[int] | None = None) -> None:
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.boundaries = boundaries
        self.window = 0
        self.next_offset = 0

    def fetch_end(self, offset: int, size: int) -> int:
        end = offset + size
        slack = self.window   # growing windows tolerate kernel reads arriving slightly out of order
        if self.next_offset - slack <= offset <= self.next_offset + slack:
            self.window = min(max(self.window * 2, self.min_bytes), self.max_bytes)
            self.next_offset = max(self.next_offset, end)
            return end + self.window
        self.window = 0
        self.next_offset = end
        if self.boundaries:
            i = bisect.bisect_right(self.boundaries, offset)
            if i < len(self.boundaries):
                return max(end, min(self.boundaries[i], offset + self.max_bytes))
        return end


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


async def safetensors_boundaries(reader: Any, max_header_bytes: int = 64 * MiB) -> list[int] | None:
    """Read a .safetensors header through ``reader``: the tensor boundaries, or None if it is not one."""
    if reader.size < 8:
        return None
    (n,) = struct.unpack("<Q", await reader.read(0, 8))
    if n > max_header_bytes or 8 + n > reader.size:
        return None
    parsed = parse_safetensors_header(await reader.read(0, 8 + n))
    return None if parsed is None else parsed[1]
