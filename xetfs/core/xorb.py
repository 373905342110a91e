"""Xorbs: chunk records, their compression, the builder and the validator (shared/xet-protocol.md §4).

A serialized xorb (the upload body) is a concatenation of *chunk records* (§4.2): an 8-byte header
``version u8 = 0 | compressed_size u24 LE | scheme u8 | uncompressed_size u24 LE`` followed by
``compressed_size`` payload bytes. Chunk indices count records from 0; ranges are ``[start, end)``; every
offset here is a byte offset into the serialized bytes handed in (a whole xorb or a fetched range of
consecutive records), sizes are bytes.

Schemes (§4.3): NONE = raw; LZ4 = one LZ4 *frame* (independent blocks, no checksums, no content size, like
xet-core's ``lz4_flex`` encoder); BG4_LZ4 = byte grouping (bytes 0,4,8.. then 1,5,9.. then 2.. then 3..)
followed by an LZ4 frame. The writer stores NONE whenever compression does not shrink the chunk. The automatic
choice samples a few slices of the chunk and compresses them with raw LZ4 blocks, plain and byte-grouped: if
neither shrinks the sample the chunk is stored raw without compressing it at all (random data costs ~2 sample
compressions), otherwise the better scheme wins (LZ4 on a tie: it decodes faster); text-like samples
(printable ASCII) only try LZ4.

Old clients and stored xorbs may end with a ``XETBLOB`` footer (§4.4): parsing stops at it (a record header
never starts with ``X`` since its version byte is 0); ``parse_xorb_footer`` / ``serialize_xorb_footer``
handle the V1 layout (V0 is parsed too). Every malformed input raises ``FormatError``; a hash mismatch raises
``IntegrityError``.
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import lz4.block
import lz4.frame
import numpy as np

from xetfs.core.chunking import Chunk
from xetfs.core.hashing import MerkleHash, chunk_hash, xorb_hash
from xetfs.errors import FormatError, IntegrityError
from xetfs.core.params import DEFAULT_XORB, XorbParams

log = logging.getLogger(__name__)

CHUNK_HEADER_BYTES = 8
CHUNK_FORMAT_VERSION = 0
FOOTER_MAGIC = b"XETBLOB"
_HASHES_MAGIC = b"XBLBHSH"
_BOUNDS_MAGIC = b"XBLBBND"
_FOOTER_BUFFER_BYTES = 16

# Auto choice (§4.3): sample SAMPLE_SLICES slices of SAMPLE_SLICE_BYTES (4-aligned so byte groups keep
# their phase); a sample must shrink below MIN_SAMPLE_RATIO to be worth compressing the whole chunk.
_SAMPLE_SLICE_BYTES = 4096
_SAMPLE_SLICES = 4
# Small samples underestimate what LZ4 achieves on the whole chunk, hence a ratio close to 1.
_MIN_SAMPLE_RATIO = 0.995
_BG4_MARGIN = 0.01  # BG4 must save 1% of the sample more than plain LZ4 to be chosen
# Text (printable ASCII + whitespace) is never byte-grouped: LZ4 alone suits it and decodes faster.
_TEXT_BYTES = bytes([9, 10, 11, 12, 13, *range(32, 127)])
_MAX_NON_TEXT_FRACTION = 0.02


class CompressionScheme(IntEnum):
    NONE = 0
    LZ4 = 1
    BG4_LZ4 = 2


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One parsed chunk-record header (§4.2)."""

    offset: int
    compressed_size: int
    scheme: CompressionScheme
    uncompressed_size: int

    @property
    def end(self) -> int:
        return self.offset + CHUNK_HEADER_BYTES + self.compressed_size


# ---------------------------------------------------------------- byte grouping (§4.3)

def bg4_split(data: bytes | memoryview) -> bytes:
    """Regroup ``data``: bytes at positions 0,4,8,.. then 1,5,9,.. then 2,.. then 3,.."""
    d = bytes(data)
    return d[0::4] + d[1::4] + d[2::4] + d[3::4]


def bg4_join(grouped: bytes | memoryview) -> bytes:
    """Inverse of ``bg4_split``: group ``i`` holds ``n//4 + (i < n%4)`` bytes, interleaved back."""
    src = np.frombuffer(grouped, dtype=np.uint8)
    n = len(src)
    q, r = divmod(n, 4)
    out = np.empty(n, dtype=np.uint8)
    start = 0
    for i in range(4):
        size = q + (i < r)
        out[i::4] = src[start:start + size]
        start += size
    return out.tobytes()


# ---------------------------------------------------------------- encoding

def _lz4_frame(data: bytes) -> bytes:
    # xet-core: lz4_flex FrameEncoder defaults; block size from the (single) write (§4.3).
    block = lz4.frame.BLOCKSIZE_MAX64KB if len(data) <= 65536 else lz4.frame.BLOCKSIZE_MAX256KB
    out: bytes = lz4.frame.compress(data, block_size=block, block_linked=False, content_checksum=False,
                                    block_checksum=False, store_size=False)
    return out


def _sample(data: bytes) -> bytes:
    n = len(data)
    if n <= _SAMPLE_SLICE_BYTES * _SAMPLE_SLICES:
        return data
    step = (n - _SAMPLE_SLICE_BYTES) // (_SAMPLE_SLICES - 1)
    return b"".join(data[(i * step) & ~3:((i * step) & ~3) + _SAMPLE_SLICE_BYTES] for i in range(_SAMPLE_SLICES))


def _looks_like_text(sample: bytes) -> bool:
    return len(sample.translate(None, _TEXT_BYTES)) <= len(sample) * _MAX_NON_TEXT_FRACTION


def choose_scheme(data: bytes) -> CompressionScheme:
    """The automatic per-chunk choice (cheap estimate from a sample; see the module docstring)."""
    sample = _sample(data)
    if len(sample) < 16:
        return CompressionScheme.NONE
    lz4_size = len(lz4.block.compress(sample, store_size=False))
    if _looks_like_text(sample):
        return CompressionScheme.LZ4 if lz4_size < len(sample) * _MIN_SAMPLE_RATIO else CompressionScheme.NONE
    bg4_size = len(lz4.block.compress(bg4_split(sample), store_size=False))
    best = min(lz4_size, bg4_size)
    if best >= len(sample) * _MIN_SAMPLE_RATIO:
        return CompressionScheme.NONE
    if bg4_size + len(sample) * _BG4_MARGIN < lz4_size:
        return CompressionScheme.BG4_LZ4
    return CompressionScheme.LZ4


def _header(compressed_size: int, scheme: CompressionScheme, uncompressed_size: int) -> bytes:
    return (bytes([CHUNK_FORMAT_VERSION]) + compressed_size.to_bytes(3, "little") + bytes([scheme])
            + uncompressed_size.to_bytes(3, "little"))


def encode_chunk(data: bytes | memoryview, scheme: CompressionScheme | None = None,
                 params: XorbParams = DEFAULT_XORB) -> bytes:
    """One full chunk record. ``scheme=None`` chooses automatically; NONE whenever compression doesn't shrink."""
    raw = bytes(data)
    if len(raw) > params.max_chunk_uncompressed:
        raise ValueError(f"chunk of {len(raw)} bytes exceeds {params.max_chunk_uncompressed}")
    if scheme is None:
        scheme = choose_scheme(raw)
    payload = raw
    if scheme == CompressionScheme.LZ4:
        payload = _lz4_frame(raw)
    elif scheme == CompressionScheme.BG4_LZ4:
        payload = _lz4_frame(bg4_split(raw))
    if len(payload) >= len(raw):
        scheme, payload = CompressionScheme.NONE, raw
    return _header(len(payload), CompressionScheme(scheme), len(raw)) + payload


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


def _lz4_decompress(payload: memoryview, expected: int, offset: int) -> bytes:
    try:
        decoder = lz4.frame.LZ4FrameDecompressor()
        out: bytes = decoder.decompress(payload, max_length=expected + 1)
        complete, unused = decoder.eof, decoder.unused_data
    except Exception as exc:  # lz4 raises RuntimeError/ValueError/... on bad frames
        raise FormatError(f"bad LZ4 frame in chunk at offset {offset}: {exc}") from None
    if not complete or unused:
        raise FormatError(f"LZ4 frame of chunk at offset {offset} is truncated or has trailing bytes")
    if len(out) != expected:
        raise FormatError(f"chunk at offset {offset} decodes to {len(out)} bytes, header says {expected}")
    return out


def decode_record(data: bytes | memoryview, record: ChunkRecord) -> bytes:
    """The uncompressed bytes of one record (``record`` from ``parse_chunk_records`` over ``data``)."""
    start = record.offset + CHUNK_HEADER_BYTES
    payload = memoryview(data).cast("B")[start:start + record.compressed_size]
    if record.scheme == CompressionScheme.NONE:
        return bytes(payload)
    out = _lz4_decompress(payload, record.uncompressed_size, record.offset)
    return bg4_join(out) if record.scheme == CompressionScheme.BG4_LZ4 else out


def decode_chunks(data: bytes | memoryview, params: XorbParams = DEFAULT_XORB) -> list[bytes]:
    """Decode consecutive records (a whole xorb or a fetched byte range); stops at a ``XETBLOB`` footer."""
    return [decode_record(data, r) for r in parse_chunk_records(data, params)]


# ---------------------------------------------------------------- building

@dataclass(frozen=True, slots=True)
class BuiltXorb:
    hash: MerkleHash
    data: bytes                          # serialized chunk records, no footer
    chunk_hashes: tuple[MerkleHash, ...]
    chunk_sizes: tuple[int, ...]         # uncompressed
    chunk_offsets: tuple[int, ...]       # start offset of each record, plus len(data): n+1 items


class XorbBuilder:
    """Packs chunks into one xorb within ``params`` (§4.1: uncompressed bytes and chunk count)."""

    def __init__(self, params: XorbParams = DEFAULT_XORB, compression: CompressionScheme | None = None) -> None:
        self.params = params
        self.compression = compression
        self._records: list[bytes] = []
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
        record = encode_chunk(chunk.data, self.compression, self.params)
        self._records.append(record)
        self._hashes.append(chunk.hash)
        self._sizes.append(chunk.size)
        self._offsets.append(self._offsets[-1] + len(record))
        self.uncompressed_bytes += chunk.size
        return len(self._hashes) - 1

    def __len__(self) -> int:
        return len(self._hashes)

    def finish(self) -> BuiltXorb:
        if not self._hashes:
            raise ValueError("a xorb needs at least one chunk")
        return BuiltXorb(hash=xorb_hash(list(zip(self._hashes, self._sizes))), data=b"".join(self._records),
                         chunk_hashes=tuple(self._hashes), chunk_sizes=tuple(self._sizes),
                         chunk_offsets=tuple(self._offsets))


# ---------------------------------------------------------------- footer (§4.4)

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
    def from_built(cls, x: BuiltXorb) -> "XorbFooter":
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
    chunks = [decode_record(data, r) for r in records]
    hashes = tuple(chunk_hash(c) for c in chunks)
    sizes = tuple(len(c) for c in chunks)
    if sum(sizes) > params.max_xorb_bytes:
        raise FormatError(f"xorb holds {sum(sizes)} bytes, limit {params.max_xorb_bytes}")
    built = BuiltXorb(hash=xorb_hash(list(zip(hashes, sizes))), data=bytes(memoryview(data)[:body_len]),
                      chunk_hashes=hashes, chunk_sizes=sizes,
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
