"""Shards (MDB format), both ways (docs/protocol.md, "Shards", "Deduplication").

Layout: integers little-endian, every section record 48 bytes:
``header(48) | file-info section + bookend | xorb-info section + bookend | [lookup tables] | [footer(200)]``.

- File block: ``FileDataSequenceHeader`` (file hash, flags, num_entries), one ``FileDataSequenceEntry``
  per term ([chunk_start, chunk_end) of a xorb, unpacked bytes), then — flag bit31 — one verification entry per
  term, then — flag bit30 — one ``FileMetadataExt`` (sha256, stored word-swapped).
- Xorb block: header (xorb hash, flags, num chunks, uncompressed bytes, bytes on disk) then one entry per
  chunk (chunk hash, *uncompressed* start offset, size, flags).
- A bookend is a record whose hash is 32 x 0xFF followed by 16 zero bytes.

Forms: the upload body (``serialize_upload_shard``: header ``footer_size = 0``, sections only, files sorted by
file hash and xorbs by xorb hash as hf_xet's BTreeMaps emit them — reproduces the 432-byte test vector exactly); older
uploads (``footer_size = 200`` without a footer, or a full shard); the full shard (``serialize_full_shard``:
file/xorb/chunk lookup tables keyed by the truncated hash, and the footer) which is also the
global-dedup answer — with a nonzero ``hmac_key`` every chunk hash (and the chunk lookup key) is
``blake3(chunk_hash, key=hmac_key)``. ``parse_shard`` reads all of them sequentially and ignores
anything between the xorb bookend and the footer. Malformed bytes raise ``FormatError`` only.
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TypeVar

from xetfs.core.hashing import BOOKEND_HASH, MerkleHash, hmac_hash
from xetfs.core.xorb import BuiltXorb
from xetfs.errors import FormatError
from xetfs.core.params import SHARD_FOOTER_BYTES, SHARD_HEADER_BYTES, SHARD_RECORD_BYTES

log = logging.getLogger(__name__)
T = TypeVar("T")

SHARD_TAG = bytes.fromhex("48465265706f4d6574614461746100556967456a7b815783a5bdd95ccdd14aa9")
SHARD_VERSION = 2
FOOTER_VERSION = 1
FLAG_VERIFICATION = 0x80000000
FLAG_METADATA_EXT = 0x40000000
CHUNK_FLAG_GLOBAL_DEDUP = 0x80000000
_BOOKEND = bytes(BOOKEND_HASH) + bytes(16)
_REC = struct.Struct("<32sIIII")        # hash + four u32 (file entry, xorb header, chunk entry)
_FILE_HEADER = struct.Struct("<32sIIQ")
_FOOTER = struct.Struct("<9Q32sQQ48x4Q")


@dataclass(frozen=True, slots=True)
class FileTerm:
    xorb_hash: MerkleHash
    chunk_start: int
    chunk_end: int
    unpacked_bytes: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class FileInfo:
    file_hash: MerkleHash
    terms: tuple[FileTerm, ...]
    verification: tuple[MerkleHash, ...] | None = None
    sha256: MerkleHash | None = None

    @property
    def size(self) -> int:
        return sum(t.unpacked_bytes for t in self.terms)


@dataclass(frozen=True, slots=True)
class XorbChunkEntry:
    chunk_hash: MerkleHash
    byte_range_start: int
    unpacked_bytes: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class XorbInfo:
    xorb_hash: MerkleHash
    chunks: tuple[XorbChunkEntry, ...]
    num_bytes_in_xorb: int
    num_bytes_on_disk: int = 0
    flags: int = 0


@dataclass(frozen=True, slots=True)
class ShardFooter:
    """The 200-byte footer, in field order."""

    version: int
    file_info_offset: int
    xorb_info_offset: int
    file_lookup_offset: int
    file_lookup_num_entry: int
    xorb_lookup_offset: int
    xorb_lookup_num_entry: int
    chunk_lookup_offset: int
    chunk_lookup_num_entry: int
    hmac_key: MerkleHash
    creation_timestamp: int
    key_expiry: int
    stored_bytes_on_disk: int
    materialized_bytes: int
    stored_bytes: int
    footer_offset: int


@dataclass(frozen=True, slots=True)
class Shard:
    files: tuple[FileInfo, ...]
    xorbs: tuple[XorbInfo, ...]
    footer: ShardFooter | None = None


# ---------------------------------------------------------------- parsing

class _Cursor:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def record(self) -> bytes:
        if self.pos + SHARD_RECORD_BYTES > len(self.data):
            raise FormatError(f"truncated shard record at offset {self.pos}")
        out = self.data[self.pos:self.pos + SHARD_RECORD_BYTES]
        self.pos += SHARD_RECORD_BYTES
        return out

    def need_records(self, n: int) -> None:
        if self.pos + n * SHARD_RECORD_BYTES > len(self.data):
            raise FormatError(f"shard block of {n} records at offset {self.pos} runs past the end")


def _hash_only(rec: bytes, what: str) -> MerkleHash:
    if any(rec[32:]):
        raise FormatError(f"{what} record has nonzero padding")
    return MerkleHash(rec[:32])


def _parse_file(cur: _Cursor, head: bytes) -> FileInfo:
    file_hash, flags, n, _reserved = _FILE_HEADER.unpack(head)
    n_records = n * (1 + bool(flags & FLAG_VERIFICATION)) + bool(flags & FLAG_METADATA_EXT)
    cur.need_records(n_records)
    terms = []
    for _ in range(n):
        xh, tflags, unpacked, start, end = _REC.unpack(cur.record())
        if start >= end:
            raise FormatError(f"file term with empty chunk range [{start}, {end})")
        terms.append(FileTerm(MerkleHash(xh), start, end, unpacked, tflags))
    verification = None
    if flags & FLAG_VERIFICATION:
        verification = tuple(_hash_only(cur.record(), "verification") for _ in range(n))
    sha256 = _hash_only(cur.record(), "metadata ext") if flags & FLAG_METADATA_EXT else None
    return FileInfo(MerkleHash(file_hash), tuple(terms), verification, sha256)


def _parse_xorb(cur: _Cursor, head: bytes) -> XorbInfo:
    xh, flags, n, in_xorb, on_disk = _REC.unpack(head)
    cur.need_records(n)
    chunks = []
    for _ in range(n):
        ch, start, size, cflags, _reserved = _REC.unpack(cur.record())
        chunks.append(XorbChunkEntry(MerkleHash(ch), start, size, cflags))
    return XorbInfo(MerkleHash(xh), tuple(chunks), in_xorb, on_disk, flags)


def _parse_section(cur: _Cursor, parse_block: Callable[[_Cursor, bytes], T]) -> tuple[T, ...]:
    out: list[T] = []
    while True:
        head = cur.record()
        if head[:32] == bytes(BOOKEND_HASH):
            return tuple(out)
        out.append(parse_block(cur, head))


def _parse_footer(data: bytes, xorb_info_offset: int, cas_end: int) -> ShardFooter:
    pos = len(data) - SHARD_FOOTER_BYTES
    values = list(_FOOTER.unpack(data[pos:]))
    values[9] = MerkleHash(values[9])
    footer = ShardFooter(*values)
    if footer.version != FOOTER_VERSION:
        raise FormatError(f"shard footer version {footer.version}, expected {FOOTER_VERSION}")
    if footer.footer_offset != pos:
        raise FormatError(f"shard footer says it is at {footer.footer_offset}, found at {pos}")
    if (footer.file_info_offset, footer.xorb_info_offset, footer.file_lookup_offset) != (
            SHARD_HEADER_BYTES, xorb_info_offset, cas_end):
        raise FormatError("shard footer section offsets do not match the sections")
    tables = [(footer.file_lookup_offset, footer.file_lookup_num_entry, 12),
              (footer.xorb_lookup_offset, footer.xorb_lookup_num_entry, 12),
              (footer.chunk_lookup_offset, footer.chunk_lookup_num_entry, 16)]
    for offset, num, width in tables:
        if num and (offset < cas_end or offset + num * width > pos):
            raise FormatError("shard lookup table outside the shard")
    return footer


def parse_shard(data: bytes | memoryview) -> Shard:
    """Any shard form (upload body, footer_size 200 without footer, full, keyed dedup answer)."""
    raw = bytes(data)
    if len(raw) < SHARD_HEADER_BYTES or raw[:32] != SHARD_TAG:
        raise FormatError("not a shard (bad header tag)")
    version, footer_size = struct.unpack_from("<QQ", raw, 32)
    if version != SHARD_VERSION:
        raise FormatError(f"unsupported shard version {version}")
    if footer_size not in (0, SHARD_FOOTER_BYTES):
        raise FormatError(f"bad shard footer_size {footer_size}")
    cur = _Cursor(raw, SHARD_HEADER_BYTES)
    files = _parse_section(cur, _parse_file)
    xorb_info_offset = cur.pos
    xorbs = _parse_section(cur, _parse_xorb)
    footer = None
    if footer_size and len(raw) - cur.pos >= SHARD_FOOTER_BYTES:
        footer = _parse_footer(raw, xorb_info_offset, cur.pos)
    return Shard(files, xorbs, footer)


# ---------------------------------------------------------------- serializing

def _pack_rec(h: bytes, a: int, b: int, c: int, d: int) -> bytes:
    try:
        return _REC.pack(bytes(h), a, b, c, d)
    except struct.error as exc:
        raise FormatError(f"shard field out of range: {exc}") from None


def _file_block(f: FileInfo) -> list[bytes]:
    flags = (FLAG_VERIFICATION if f.verification is not None else 0) | (
        FLAG_METADATA_EXT if f.sha256 is not None else 0)
    out = [_pack_rec(f.file_hash, flags, len(f.terms), 0, 0)]
    out += [_pack_rec(t.xorb_hash, t.flags, t.unpacked_bytes, t.chunk_start, t.chunk_end) for t in f.terms]
    if f.verification is not None:
        if len(f.verification) != len(f.terms):
            raise FormatError("a file needs one verification hash per term")
        out += [bytes(v) + bytes(16) for v in f.verification]
    if f.sha256 is not None:
        out.append(bytes(f.sha256) + bytes(16))
    return out


def _xorb_block(x: XorbInfo, key: bytes | None) -> list[bytes]:
    out = [_pack_rec(x.xorb_hash, x.flags, len(x.chunks), x.num_bytes_in_xorb, x.num_bytes_on_disk)]
    for c in x.chunks:
        h = hmac_hash(c.chunk_hash, key) if key else c.chunk_hash
        out.append(_pack_rec(h, c.byte_range_start, c.unpacked_bytes, c.flags, 0))
    return out


def _hash_order(h: bytes) -> tuple[int, ...]:
    """xet-core ``Ord``: the four little-endian u64 words in order (= Xet hex order)."""
    return struct.unpack("<4Q", bytes(h))


def canonical(shard: Shard) -> Shard:
    """Files by file hash, xorbs by xorb hash (first of duplicates kept), as hf_xet writes them."""
    files = {f.file_hash: f for f in reversed(shard.files)}
    xorbs = {x.xorb_hash: x for x in reversed(shard.xorbs)}
    return Shard(tuple(sorted(files.values(), key=lambda f: _hash_order(f.file_hash))),
                 tuple(sorted(xorbs.values(), key=lambda x: _hash_order(x.xorb_hash))), shard.footer)


def _header(footer_size: int) -> bytes:
    return SHARD_TAG + struct.pack("<QQ", SHARD_VERSION, footer_size)


def serialize_upload_shard(shard: Shard) -> bytes:
    """The upload body: header with ``footer_size = 0`` and the two sections, byte-exact like hf_xet."""
    s = canonical(shard)
    parts = [_header(0)]
    for f in s.files:
        parts += _file_block(f)
    parts.append(_BOOKEND)
    for x in s.xorbs:
        parts += _xorb_block(x, None)
    parts.append(_BOOKEND)
    return b"".join(parts)


def serialize_full_shard(shard: Shard, *, hmac_key: bytes = bytes(32), creation_timestamp: int,
                         key_expiry: int) -> bytes:
    """Sections, lookup tables and footer; chunk hashes keyed when ``hmac_key`` is nonzero."""
    s = canonical(shard)
    key = bytes(hmac_key) if any(hmac_key) else None
    parts = [_header(SHARD_FOOTER_BYTES)]
    file_keys, xorb_keys, chunk_keys = [], [], []
    for f in s.files:
        file_keys.append((MerkleHash(f.file_hash).truncated(), len(parts) - 1))
        parts += _file_block(f)
    parts.append(_BOOKEND)
    xorb_info_offset = SHARD_HEADER_BYTES + SHARD_RECORD_BYTES * (len(parts) - 1)
    base = len(parts)
    for x in s.xorbs:
        index = len(parts) - base
        xorb_keys.append((MerkleHash(x.xorb_hash).truncated(), index))
        block = _xorb_block(x, key)
        chunk_keys += [(MerkleHash(rec[:32]).truncated(), index, i) for i, rec in enumerate(block[1:])]
        parts += block
    parts.append(_BOOKEND)
    cas_end = SHARD_HEADER_BYTES + SHARD_RECORD_BYTES * (len(parts) - 1)
    file_table = b"".join(struct.pack("<QI", *k) for k in sorted(file_keys))
    xorb_table = b"".join(struct.pack("<QI", *k) for k in sorted(xorb_keys))
    chunk_table = b"".join(struct.pack("<QII", *k) for k in sorted(chunk_keys))
    footer_offset = cas_end + len(file_table) + len(xorb_table) + len(chunk_table)
    footer = ShardFooter(
        version=FOOTER_VERSION, file_info_offset=SHARD_HEADER_BYTES, xorb_info_offset=xorb_info_offset,
        file_lookup_offset=cas_end, file_lookup_num_entry=len(file_keys),
        xorb_lookup_offset=cas_end + len(file_table), xorb_lookup_num_entry=len(xorb_keys),
        chunk_lookup_offset=cas_end + len(file_table) + len(xorb_table), chunk_lookup_num_entry=len(chunk_keys),
        hmac_key=MerkleHash(bytes(hmac_key)), creation_timestamp=creation_timestamp, key_expiry=key_expiry,
        stored_bytes_on_disk=sum(x.num_bytes_on_disk for x in s.xorbs),
        materialized_bytes=sum(f.size for f in s.files), stored_bytes=sum(x.num_bytes_in_xorb for x in s.xorbs),
        footer_offset=footer_offset)
    return b"".join(parts) + file_table + xorb_table + chunk_table + serialize_shard_footer(footer)


def serialize_shard_footer(footer: ShardFooter) -> bytes:
    values = [getattr(footer, f.name) for f in fields(ShardFooter)]
    values[9] = bytes(values[9])
    try:
        return _FOOTER.pack(*values)
    except struct.error as exc:
        raise FormatError(f"shard footer field out of range: {exc}") from None


def upload_encoding_problem(data: bytes | memoryview, shard: Shard) -> str | None:
    """Why ``data`` (which parsed as ``shard``) is not the one encoding of ``shard`` an upload may have, or None.

    Accepted: the upload form (``serialize_upload_shard``), the same with ``footer_size = 200`` and no footer, or
    the full shard with a zero HMAC key (``serialize_full_shard`` with the footer's timestamps). So files come
    sorted by hash and xorbs by hash, once each; reserved fields, padding and bookend tails are zero; file flags
    carry only the two defined bits; nothing follows the sections but that exact footer. The values of the
    remaining fields (term, xorb and chunk flags, sizes, offsets) are the caller's to check against what they
    mean."""
    raw = bytes(data)
    sections = serialize_upload_shard(shard)
    if raw == sections:
        return None
    with_size = _header(SHARD_FOOTER_BYTES) + sections[SHARD_HEADER_BYTES:]
    if raw == with_size:
        return None
    f = shard.footer
    if f is not None and not any(bytes(f.hmac_key)) and raw == serialize_full_shard(
            shard, creation_timestamp=f.creation_timestamp, key_expiry=f.key_expiry):
        return None
    if len(raw) != len(sections) and raw[:len(with_size)] in (sections, with_size):
        return f"{len(raw) - len(sections)} bytes after the sections that are not the shard's footer"
    return "not the canonical encoding of its content (order, duplicates, reserved bits, padding or lengths)"


def xorb_info_from_built(x: BuiltXorb) -> XorbInfo:
    """The xorb block hf_xet uploads for a new xorb: uncompressed offsets, ``num_bytes_on_disk = 0``."""
    entries, start = [], 0
    for h, size in zip(x.chunk_hashes, x.chunk_sizes):
        entries.append(XorbChunkEntry(h, start, size))
        start += size
    return XorbInfo(x.hash, tuple(entries), start, 0)
