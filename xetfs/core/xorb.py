"""Xorbs: chunk records, the builder and the validator (docs/protocol.md, "Xorbs").

A serialized xorb (the upload body) is a concatenation of *chunk records*: an 8-byte header
``version u8 = 0 | compressed_size u24 LE | scheme u8 | uncompressed_size u24 LE`` followed by
``compressed_size`` payload bytes, compressed as ``xetfs.core.compression`` says. Chunk indices count records
from 0; ranges are ``[start, end)``; every offset here is a byte offset into the serialized bytes handed in
(a whole xorb or a fetched range of consecutive records), sizes are bytes. The writer stores NONE whenever
compression does not shrink the chunk.

Old clients and stored xorbs may end with a ``XETBLOB`` footer (``xetfs.core.xorb_footer``): parsing stops at
it (a record header never starts with ``X`` since its version byte is 0); ``validate_xorb`` checks it against
the records and strips it. Every malformed input raises ``FormatError``; a hash mismatch raises
``IntegrityError``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xetfs.core.chunking import Chunk
from xetfs.core.compression import CompressionScheme, choose_scheme, compress, decompress
from xetfs.core.hashing import MerkleHash, chunk_hash, xorb_hash
from xetfs.core.params import DEFAULT_XORB, XorbParams
from xetfs.core.xorb_footer import FOOTER_MAGIC, XorbFooter, parse_xorb_footer
from xetfs.errors import FormatError, IntegrityError

CHUNK_HEADER_BYTES = 8
CHUNK_FORMAT_VERSION = 0


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One parsed chunk-record header."""

    offset: int
    compressed_size: int
    scheme: CompressionScheme
    uncompressed_size: int

    @property
    def end(self) -> int:
        return self.offset + CHUNK_HEADER_BYTES + self.compressed_size


# ---------------------------------------------------------------- encoding

def _header(compressed_size: int, scheme: CompressionScheme, uncompressed_size: int) -> bytes:
    return (bytes([CHUNK_FORMAT_VERSION]) + compressed_size.to_bytes(3, "little") + bytes([scheme])
            + uncompressed_size.to_bytes(3, "little"))


def encode_chunk(data: bytes | memoryview, scheme: CompressionScheme | None = None,
                 params: XorbParams = DEFAULT_XORB) -> bytes:
    """One full chunk record. ``scheme=None`` chooses automatically; NONE whenever compression doesn't shrink."""
    header, payload = encode_chunk_parts(data, scheme, params)
    return header + payload


def encode_chunk_parts(data: bytes | memoryview, scheme: CompressionScheme | None = None,
                       params: XorbParams = DEFAULT_XORB) -> tuple[bytes, bytes]:
    """``encode_chunk`` as (header, payload): a xorb joins the parts of all its records once (one copy)."""
    raw = bytes(data)
    if len(raw) > params.max_chunk_uncompressed:
        raise ValueError(f"chunk of {len(raw)} bytes exceeds {params.max_chunk_uncompressed}")
    if scheme is None:
        scheme = choose_scheme(raw)
    payload = compress(raw, scheme)
    if len(payload) >= len(raw):
        scheme, payload = CompressionScheme.NONE, raw
    return _header(len(payload), CompressionScheme(scheme), len(raw)), payload


# ---------------------------------------------------------------- parsing and decoding

def _parse_header(data: memoryview, offset: int, params: XorbParams) -> ChunkRecord:
    record = _header_fields(data, offset, params)
    if record.end > len(data):
        raise FormatError(f"truncated chunk payload at offset {offset}")
    return record


def _header_fields(data: memoryview, offset: int, params: XorbParams) -> ChunkRecord:
    """The validated header at ``offset`` (its payload may lie past the end of ``data``)."""
    head = data[offset:offset + CHUNK_HEADER_BYTES]
    if len(head) < CHUNK_HEADER_BYTES:
        raise FormatError(f"truncated chunk header at offset {offset}")
    if head[0] != CHUNK_FORMAT_VERSION:
        raise FormatError(f"unsupported chunk record version {head[0]} at offset {offset}")
    compressed = int.from_bytes(head[1:4], "little")
    uncompressed = int.from_bytes(head[5:8], "little")
    try:
        scheme = CompressionScheme(head[4])
    except ValueError:
        raise FormatError(f"unknown compression scheme {head[4]} at offset {offset}") from None
    if uncompressed > params.max_chunk_uncompressed or compressed > params.max_chunk_compressed:
        raise FormatError(f"chunk sizes {compressed}/{uncompressed} over the limits at offset {offset}")
    if scheme == CompressionScheme.NONE and compressed != uncompressed:
        raise FormatError(f"uncompressed chunk with differing sizes at offset {offset}")
    return ChunkRecord(offset, compressed, scheme, uncompressed)


def _at_footer(data: memoryview, offset: int) -> bool:
    return bytes(data[offset:offset + len(FOOTER_MAGIC)]) == FOOTER_MAGIC


def parse_chunk_records(data: bytes | memoryview, params: XorbParams = DEFAULT_XORB) -> list[ChunkRecord]:
    """Headers of the consecutive records in ``data``, validated; stops at a ``XETBLOB`` footer."""
    view = memoryview(data).cast("B")
    records: list[ChunkRecord] = []
    offset = 0
    while offset < len(view) and not _at_footer(view, offset):
        record = _parse_header(view, offset, params)
        records.append(record)
        offset = record.end
    return records


def split_complete_records(data: bytes | memoryview, params: XorbParams = DEFAULT_XORB
                           ) -> tuple[list[ChunkRecord], int]:
    """The complete records at the start of ``data`` -- a prefix of a stream of records, e.g. one piece of a
    fetched range -- and the offset where the rest (a record cut by the end of ``data``, possibly only part
    of its header) begins; ``len(data)`` when nothing is cut. Stops at a ``XETBLOB`` footer (its offset is
    returned). A header that is present but invalid raises ``FormatError``: only a short tail is "cut"."""
    view = memoryview(data).cast("B")
    records: list[ChunkRecord] = []
    offset = 0
    while offset + CHUNK_HEADER_BYTES <= len(view) and not _at_footer(view, offset):
        record = _header_fields(view, offset, params)
        if record.end > len(view):
            break
        records.append(record)
        offset = record.end
    return records, offset


def record_view(data: bytes | memoryview, record: ChunkRecord) -> bytes | memoryview:
    """The uncompressed bytes of one record without a copy where there is nothing to decode: a view into
    ``data`` for an uncompressed record (valid while ``data`` is), new bytes otherwise."""
    start = record.offset + CHUNK_HEADER_BYTES
    payload = memoryview(data).cast("B")[start:start + record.compressed_size]
    if record.scheme == CompressionScheme.NONE:
        return payload
    return decompress(payload, record.scheme, record.uncompressed_size, f"chunk at offset {record.offset}")


def decode_record(data: bytes | memoryview, record: ChunkRecord) -> bytes:
    """The uncompressed bytes of one record (``record`` from ``parse_chunk_records`` over ``data``)."""
    out = record_view(data, record)
    return out if isinstance(out, bytes) else bytes(out)


def decode_chunks(data: bytes | memoryview, params: XorbParams = DEFAULT_XORB) -> list[bytes]:
    """Decode consecutive records (a whole xorb or a fetched byte range); stops at a ``XETBLOB`` footer."""
    return [decode_record(data, r) for r in parse_chunk_records(data, params)]


def decode_views(data: bytes | memoryview, params: XorbParams = DEFAULT_XORB) -> list[bytes | memoryview]:
    """``decode_chunks`` without copying uncompressed records (``record_view``)."""
    return [record_view(data, r) for r in parse_chunk_records(data, params)]


# ---------------------------------------------------------------- building

@dataclass(frozen=True, slots=True)
class BuiltXorb:
    hash: MerkleHash
    data: bytes                          # serialized chunk records, no footer
    chunk_hashes: tuple[MerkleHash, ...]
    chunk_sizes: tuple[int, ...]         # uncompressed
    chunk_offsets: tuple[int, ...]       # start offset of each record, plus len(data): n+1 items


class XorbBuilder:
    """Packs chunks into one xorb within ``params`` (uncompressed bytes and chunk count)."""

    def __init__(self, params: XorbParams = DEFAULT_XORB, compression: CompressionScheme | None = None) -> None:
        self.params = params
        self.compression = compression
        self._parts: list[bytes] = []          # header, payload, header, payload, ...
        self._hashes: list[MerkleHash] = []
        self._sizes: list[int] = []
        self._offsets: list[int] = [0]
        self.uncompressed_bytes = 0

    def can_add(self, size: int) -> bool:
        return (len(self._hashes) < self.params.max_xorb_chunks
                and self.uncompressed_bytes + size <= self.params.max_xorb_bytes)

    def add(self, chunk: Chunk) -> int:
        """Append ``chunk`` (compressing it now); returns its index within the xorb."""
        if not self.can_add(chunk.size):
            raise ValueError("xorb is full; check can_add() first")
        header, payload = encode_chunk_parts(chunk.data, self.compression, self.params)
        self._parts += (header, payload)
        self._hashes.append(chunk.hash)
        self._sizes.append(chunk.size)
        self._offsets.append(self._offsets[-1] + len(header) + len(payload))
        self.uncompressed_bytes += chunk.size
        return len(self._hashes) - 1

    def __len__(self) -> int:
        return len(self._hashes)

    def finish(self) -> BuiltXorb:
        if not self._hashes:
            raise ValueError("a xorb needs at least one chunk")
        return BuiltXorb(hash=xorb_hash(list(zip(self._hashes, self._sizes))), data=b"".join(self._parts),
                         chunk_hashes=tuple(self._hashes), chunk_sizes=tuple(self._sizes),
                         chunk_offsets=tuple(self._offsets))


# ---------------------------------------------------------------- validation

def validate_xorb(data: bytes | memoryview, expected: MerkleHash | None,
                  params: XorbParams = DEFAULT_XORB) -> BuiltXorb:
    """Decode every chunk, recompute chunk hashes and the xorb hash; a footer is checked and stripped."""
    records = parse_chunk_records(data, params)
    if not records:
        raise FormatError("a xorb has at least one chunk")
    if len(records) > params.max_xorb_chunks:
        raise FormatError(f"xorb has {len(records)} chunks, limit {params.max_xorb_chunks}")
    body_len = records[-1].end
    hashes, sizes = [], []
    for r in records:          # one chunk decoded at a time: an uncompressed one is hashed in place
        chunk = record_view(data, r)
        hashes.append(chunk_hash(chunk))
        sizes.append(len(chunk))
    if sum(sizes) > params.max_xorb_bytes:
        raise FormatError(f"xorb holds {sum(sizes)} bytes, limit {params.max_xorb_bytes}")
    body = data if isinstance(data, bytes) and body_len == len(data) else bytes(memoryview(data)[:body_len])
    built = BuiltXorb(hash=xorb_hash(list(zip(hashes, sizes))), data=body,
                      chunk_hashes=tuple(hashes), chunk_sizes=tuple(sizes),
                      chunk_offsets=tuple(r.offset for r in records) + (body_len,))
    if body_len < len(data):
        _check_footer(parse_xorb_footer(memoryview(data)[body_len:]), built)
    if expected is not None and built.hash != expected:
        raise IntegrityError(f"xorb hash {built.hash} does not match {MerkleHash(expected)}")
    return built


def _check_footer(footer: XorbFooter, built: BuiltXorb) -> None:
    want = XorbFooter.from_built(built)
    if footer.chunk_boundary_offsets != want.chunk_boundary_offsets or (
            footer.unpacked_chunk_offsets not in (None, want.unpacked_chunk_offsets)):
        raise FormatError("xorb footer boundaries do not match the chunk records")
    if footer.chunk_hashes != want.chunk_hashes or footer.xorb_hash != built.hash:
        raise IntegrityError("xorb footer hashes do not match the chunks")


def built_from_chunks(chunks: Sequence[Chunk], params: XorbParams = DEFAULT_XORB,
                      compression: CompressionScheme | None = None) -> BuiltXorb:
    """Convenience: one xorb holding ``chunks`` (ValueError if they don't fit ``params``)."""
    builder = XorbBuilder(params, compression)
    for c in chunks:
        builder.add(c)
    return builder.finish()
