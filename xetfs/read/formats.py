"""File formats the readahead knows: the regions of safetensors and parquet files (docs/architecture.md,
"The read path").

``file_regions(reader, name)`` reads, at open, what a format says about its own layout and returns the
region boundaries (sorted absolute offsets) that ``Readahead`` aligns fetches to:

- **safetensors**: ``u64 header length | JSON header | tensor data``; the boundaries are the header's end
  and every tensor's start and end (``data_offsets`` in the header, relative to the data).
- **parquet**: ``PAR1 | column chunks... | footer (Thrift compact FileMetaData) | u32 footer length | PAR1``;
  the boundaries are each column chunk's start (its dictionary page, else its first data page) and end
  (start + total compressed size), and the footer's start. Pages inside a column chunk are not regions:
  readers fetch column chunks whole.

Only what is needed is parsed; anything unexpected means "no regions" (the file is read like any other).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Protocol

MiB = 1024 * 1024
MAX_HEADER_BYTES = 64 * MiB


class SizedReader(Protocol):
    size: int

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Regions:
    kind: str                 # "tensor" (safetensors) or "column" (parquet)
    bounds: list[int]


async def file_regions(reader: SizedReader, name: str) -> Regions | None:
    if name.endswith(".safetensors"):
        bounds = await safetensors_boundaries(reader)
        return None if bounds is None else Regions("tensor", bounds)
    if name.endswith(".parquet"):
        bounds = await parquet_boundaries(reader)
        return None if bounds is None else Regions("column", bounds)
    return None


# -- safetensors -------------------------------------------------------------------------------------------

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


async def safetensors_boundaries(reader: SizedReader, max_header_bytes: int = MAX_HEADER_BYTES) -> list[int] | None:
    """Read a .safetensors header through ``reader``: the tensor boundaries, or None if it is not one."""
    if reader.size < 8:
        return None
    (n,) = struct.unpack("<Q", await reader.read(0, 8))
    if n > max_header_bytes or 8 + n > reader.size:
        return None
    parsed = parse_safetensors_header(await reader.read(0, 8 + n))
    return None if parsed is None else parsed[1]


# -- parquet -----------------------------------------------------------------------------------------------

class _Compact:
    """Just enough of the Thrift compact protocol to walk a struct into ``{field id: value}``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        b = self.data[self.at]
        self.at += 1
        return b

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind in (1, 2):
            return kind == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.at += 8
            return None
        if kind == 8:
            n = self.varint()
            self.at += n
            return None
        if kind in (9, 10):
            head = self.byte()
            n, elem = head >> 4, head & 0x0F
            if n == 15:
                n = self.varint()
            return [self.byte() == 1 if elem in (1, 2) else self.value(elem) for _ in range(n)]
        if kind == 11:
            n = self.varint()
            if n:
                types = self.byte()
                for _ in range(n):
                    self.value(types >> 4)
                    self.value(types & 0x0F)
            return None
        if kind == 12:
            return self.struct()
        raise ValueError(f"thrift type {kind}")

    def struct(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        field = 0
        while True:
            head = self.byte()
            if head == 0:
                return out
            delta, kind = head >> 4, head & 0x0F
            field = field + delta if delta else self.zigzag()
            out[field] = self.value(kind)


def parse_parquet_footer(footer: bytes, footer_start: int) -> list[int]:
    """The column chunk boundaries (and ``footer_start``) from a parquet FileMetaData."""
    meta = _Compact(footer).struct()
    bounds = {4, footer_start}
    for row_group in meta.get(4) or []:
        for column in row_group.get(1) or []:
            md = column.get(3)
            if not isinstance(md, dict):
                continue
            start = md.get(11) or md.get(9)          # dictionary page, else the first data page
            size = md.get(7)                         # total compressed size
            if isinstance(start, int) and isinstance(size, int) and 0 < start and start + size <= footer_start:
                bounds.update((start, start + size))
    return sorted(bounds)


async def parquet_boundaries(reader: SizedReader) -> list[int] | None:
    """Read a parquet footer through ``reader``: the column chunk boundaries, or None if it is not one."""
    if reader.size < 12:
        return None
    tail = await reader.read(reader.size - 8, 8)
    (n,) = struct.unpack("<I", tail[:4])
    if tail[4:] != b"PAR1" or n > MAX_HEADER_BYTES or n + 12 > reader.size:
        return None
    start = reader.size - 8 - n
    try:
        return parse_parquet_footer(await reader.read(start, n), start)
    except (ValueError, IndexError, AttributeError):
        return None
