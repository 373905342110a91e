"""The optional ``XETBLOB`` xorb footer (``XorbObjectInfo``): V1 written, V0 and V1 parsed (docs/protocol.md,
"Xorbs").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from xetfs.core.hashing import MerkleHash
from xetfs.errors import FormatError

FOOTER_MAGIC = b"XETBLOB"
_HASHES_MAGIC = b"XBLBHSH"
_BOUNDS_MAGIC = b"XBLBBND"
_FOOTER_BUFFER_BYTES = 16


class XorbLayout(Protocol):
    """What a footer is made from (``xetfs.core.xorb.BuiltXorb`` fits)."""

    @property
    def hash(self) -> MerkleHash: ...
    @property
    def chunk_hashes(self) -> tuple[MerkleHash, ...]: ...
    @property
    def chunk_sizes(self) -> tuple[int, ...]: ...
    @property
    def chunk_offsets(self) -> tuple[int, ...]: ...


@dataclass(frozen=True, slots=True)
class XorbFooter:
    """``XorbObjectInfo``. Offsets are END offsets of each chunk (serialized, and uncompressed for V1)."""

    xorb_hash: MerkleHash
    chunk_hashes: tuple[MerkleHash, ...]
    chunk_boundary_offsets: tuple[int, ...]
    unpacked_chunk_offsets: tuple[int, ...] | None   # None in a V0 footer
    buffer: bytes = bytes(_FOOTER_BUFFER_BYTES)
    version: int = 1

    @classmethod
    def from_built(cls, x: XorbLayout) -> XorbFooter:
        ends: list[int] = []
        total = 0
        for size in x.chunk_sizes:
            total += size
            ends.append(total)
        return cls(x.hash, x.chunk_hashes, x.chunk_offsets[1:], tuple(ends))


def serialize_xorb_footer(footer: XorbFooter) -> bytes:
    """V1 footer bytes, including the trailing ``info_length`` u32."""
    n = len(footer.chunk_hashes)
    if footer.unpacked_chunk_offsets is None or not (
            n == len(footer.chunk_boundary_offsets) == len(footer.unpacked_chunk_offsets)):
        raise ValueError("a V1 footer needs boundaries and unpacked offsets for every chunk")
    head = FOOTER_MAGIC + b"\x01" + bytes(footer.xorb_hash)
    hashes = _HASHES_MAGIC + b"\x00" + struct.pack("<I", n) + b"".join(bytes(h) for h in footer.chunk_hashes)
    bounds = (_BOUNDS_MAGIC + b"\x01" + struct.pack(f"<I{n}I{n}I", n, *footer.chunk_boundary_offsets,
                                                    *footer.unpacked_chunk_offsets))
    tail_len = 12 + _FOOTER_BUFFER_BYTES
    tail = struct.pack("<III", n, len(hashes) + len(bounds) + tail_len, len(bounds) + tail_len)
    body = head + hashes + bounds + tail + bytes(footer.buffer)[:_FOOTER_BUFFER_BYTES].ljust(_FOOTER_BUFFER_BYTES, b"\0")
    return body + struct.pack("<I", len(body))


class _Reader:
    """Bounds-checked little-endian reads; any overrun is a FormatError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"truncated {self.what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32s(self, n: int) -> tuple[int, ...]:
        return struct.unpack(f"<{n}I", self.take(4 * n))

    def expect(self, magic: bytes) -> None:
        if self.take(len(magic)) != magic:
            raise FormatError(f"bad {self.what}: missing {magic.decode()}")


def parse_xorb_footer(data: bytes | memoryview) -> XorbFooter:
    """Parse footer bytes (from ``XETBLOB`` through the trailing ``info_length``), V1 or V0."""
    raw = bytes(data)
    if len(raw) < 4 or int.from_bytes(raw[-4:], "little") != len(raw) - 4:
        raise FormatError("xorb footer length does not match its info_length")
    r = _Reader(raw[:-4], "xorb footer")
    r.expect(FOOTER_MAGIC)
    version = r.u8()
    xhash = MerkleHash(r.take(32))
    if version == 0:
        (n,) = r.u32s(1)
        bounds = r.u32s(n)
        hashes = tuple(MerkleHash(r.take(32)) for _ in range(n))
        unpacked = None
    elif version == 1:
        r.expect(_HASHES_MAGIC)
        r.u8()
        (n,) = r.u32s(1)
        hashes = tuple(MerkleHash(r.take(32)) for _ in range(min(n, len(raw) // 32)))
        if len(hashes) != n:
            raise FormatError("truncated xorb footer")
        r.expect(_BOUNDS_MAGIC)
        r.u8()
        if r.u32s(1) != (n,):
            raise FormatError("xorb footer chunk counts disagree")
        bounds, unpacked = r.u32s(n), r.u32s(n)
        if r.u32s(1) != (n,):
            raise FormatError("xorb footer chunk counts disagree")
        r.u32s(2)  # section offsets from the end: implied by the layout
    else:
        raise FormatError(f"unsupported xorb footer version {version}")
    buffer = r.take(_FOOTER_BUFFER_BYTES)
    if r.pos != len(r.data):
        raise FormatError("trailing bytes in xorb footer")
    return XorbFooter(xhash, hashes, bounds, unpacked, buffer, version)
