"""File layouts: which chunks make up a file, persisted beside the chunk cache (docs/architecture.md, "The read
path"; docs/protocol.md, "Reconstruction").

A reconstruction maps a file's bytes to terms: ``(xorb hash, [chunk_start, chunk_end))`` with the
term's verification hash. A ``FileReader`` that has learned the uncompressed size of every chunk of a term
knows the file offset of each of them, so a later read of those bytes is a chunk-cache lookup with no
reconstruction query at all. ``FileLayout`` keeps the terms learned so far (file offsets may have gaps: only
what was read is known); a remount loads it from the disk tier (``DiskTier.get_layout``), so a warm disk
cache serves a file with zero network round trips.

Trust: the layout only says *which* chunks to look up. The chunks themselves were verified against their
term's verification hash before they entered the cache, and every disk entry is checksummed; the layout file
is checksummed the same way (a damaged one is dropped and relearned from reconstructions).

Encoding (little endian)::

    MAGIC "XFL1" | file hash (32) | file size u64 | term count u32
    per term: file offset u64 | xorb hash (32) | chunk_start u32 | chunk count u32 |
              has verification u8 | verification hash (32, zero when absent) | chunk sizes u32 x count
    checksum: keyed BLAKE3 (the chunk hash) of everything before it, first 16 bytes
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from xetfs.core.hashing import chunk_hash
from xetfs.errors import FormatError

MAGIC = b"XFL1"
_HEAD = struct.Struct("<4s32sQI")
_TERM = struct.Struct("<Q32sIIB32s")
CHECKSUM_BYTES = 16


@dataclass(frozen=True, slots=True)
class LayoutTerm:
    """One term of a file at a known file offset, with the uncompressed size of each of its chunks."""

    file_offset: int
    xorb_hash: bytes                    # raw 32 bytes
    chunk_start: int
    chunk_sizes: tuple[int, ...]
    verification_hash: bytes | None = None

    @property
    def chunk_end(self) -> int:
        return self.chunk_start + len(self.chunk_sizes)

    @property
    def unpacked_bytes(self) -> int:
        return sum(self.chunk_sizes)


def _checksum(data: bytes | bytearray | memoryview) -> bytes:
    return bytes(chunk_hash(data)[:CHECKSUM_BYTES])


def encode_layout(file_hash: bytes, file_size: int, terms: Iterable[LayoutTerm]) -> bytes:
    terms = sorted(terms, key=lambda t: t.file_offset)
    out = bytearray(_HEAD.pack(MAGIC, bytes(file_hash), file_size, len(terms)))
    for t in terms:
        out += _TERM.pack(t.file_offset, bytes(t.xorb_hash), t.chunk_start, len(t.chunk_sizes),
                          t.verification_hash is not None, bytes(t.verification_hash or bytes(32)))
        out += struct.pack(f"<{len(t.chunk_sizes)}I", *t.chunk_sizes)
    out += _checksum(out)
    return bytes(out)


def peek_layout(data: bytes) -> tuple[bytes, int] | None:
    """(file hash, file size) from a layout's head, unchecked (``decode_layout`` checks it); None if not a layout."""
    if len(data) < _HEAD.size or data[:len(MAGIC)] != MAGIC:
        return None
    _, file_hash, size, _ = _HEAD.unpack_from(data, 0)
    return bytes(file_hash), int(size)


def decode_layout(data: bytes, file_hash: bytes, file_size: int) -> list[LayoutTerm]:
    """The terms of a layout written by ``encode_layout`` for this file; ``FormatError`` when it is damaged
    or belongs to another file (a layout is only a hint: the caller drops it and relearns)."""
    view = memoryview(data)
    if len(view) < _HEAD.size + CHECKSUM_BYTES or _checksum(view[:-CHECKSUM_BYTES]) != view[-CHECKSUM_BYTES:]:
        raise FormatError("file layout fails its checksum")
    magic, stored_hash, stored_size, count = _HEAD.unpack_from(view, 0)
    if magic != MAGIC or stored_hash != bytes(file_hash) or stored_size != file_size:
        raise FormatError("file layout is for another file")
    terms: list[LayoutTerm] = []
    at, body_end = _HEAD.size, len(view) - CHECKSUM_BYTES
    for _ in range(count):
        if at + _TERM.size > body_end:
            raise FormatError("file layout is truncated")
        offset, xorb, start, n, has_verification, verification = _TERM.unpack_from(view, at)
        at += _TERM.size
        if at + 4 * n > body_end:
            raise FormatError("file layout is truncated")
        sizes = struct.unpack_from(f"<{n}I", view, at)
        at += 4 * n
        if offset + sum(sizes) > file_size:
            raise FormatError("file layout term past the end of the file")
        terms.append(LayoutTerm(offset, xorb, start, sizes, verification if has_verification else None))
    if at != body_end:
        raise FormatError("file layout has trailing bytes")
    return terms


def merge_into(stored: bytes | None, file_hash: bytes, file_size: int, terms: Iterable[LayoutTerm]) -> bytes:
    """The layout of ``terms`` plus those of the ``stored`` layout (another process may have stored terms this
    one did not learn; a damaged one is ignored), one term per file offset, ours first."""
    by_offset: dict[int, LayoutTerm] = {}
    if stored is not None:
        try:
            by_offset = {t.file_offset: t for t in decode_layout(stored, file_hash, file_size)}
        except FormatError:
            pass
    by_offset.update((t.file_offset, t) for t in terms)
    return encode_layout(file_hash, file_size, by_offset.values())
