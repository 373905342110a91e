"""Upload validation: nothing bad is stored (docs/protocol.md, docs/security.md).

Both functions are CPU-bound and synchronous: the app runs them in a worker thread, never on the event loop.
They raise ``FormatError`` / ``IntegrityError`` / ``ValidationError`` (all HTTP 400) and have no side
effects, so the caller writes only after a complete success.

Xorb: ``core.xorb.validate_xorb`` decodes every chunk record, recomputes every chunk hash and the xorb
hash and compares it with the hash in the URL; the server keeps the chunk hashes, uncompressed sizes and
serialized offsets for planning and indexes the chunks with ``hash % 1024 == 0`` for global dedup.

Shard: the body must be the one canonical encoding of what it parses to (``core.shard.upload_encoding_problem``:
order, no duplicates, zero reserved bytes and padding, defined flag bits only, no trailing bytes). Every xorb it
lists or references must be stored; a listed xorb must give the stored chunk hashes and sizes, chunk offsets
that are the running sum of the sizes, ``num_bytes_in_xorb`` equal to their total, ``num_bytes_on_disk`` 0 (what
clients send) or the stored size, and zero flags. Every term's chunk range must lie inside its xorb, its flags
must be zero, its ``unpacked_bytes`` must equal the chunk sizes, its verification hash must equal the range hash
of the stored chunk hashes; the file hash must equal the file hash of the concatenated chunks. So a shard is
accepted only when each field says what the stored xorbs say (the sha256 claim is checked against the bytes
by ``services.claims``). Registration indexes file -> terms, sha256 -> file, and the first chunk of every file
for global dedup.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from xetfs.core.hashing import MerkleHash, file_hash, verification_hash
from xetfs.core.shard import FileInfo, XorbInfo, parse_shard, upload_encoding_problem
from xetfs.core.xorb import validate_xorb
from xetfs.errors import FormatError, IntegrityError, ValidationError
from xetfs.core.params import DEFAULT_XORB, GLOBAL_DEDUP_MODULUS, MAX_SHARD_BYTES
from xetfs.server.metadata.store import FileRecord, StoredTerm, XorbRecord

# 64 MiB of chunk data, plus 8-byte record headers and room for an optional footer.
MAX_XORB_BODY_BYTES = DEFAULT_XORB.max_xorb_bytes + 8 * DEFAULT_XORB.max_xorb_chunks + 1024 * 1024
MAX_SHARD_BODY_BYTES = MAX_SHARD_BYTES

XorbLookup = Callable[[MerkleHash], XorbRecord | None]


@dataclass(frozen=True, slots=True)
class ValidXorb:
    record: XorbRecord
    data: bytes                       # the serialized chunk records to store (footer stripped)
    dedup_chunks: tuple[MerkleHash, ...]


@dataclass(frozen=True, slots=True)
class ValidShard:
    hash: str                         # sha256 hex of the body: the storage key
    files: tuple[FileRecord, ...]
    dedup_chunks: tuple[tuple[MerkleHash, MerkleHash, MerkleHash], ...]   # (chunk hash, xorb hash, file hash)


def check_xorb(body: bytes, xorb_hex: str) -> ValidXorb:
    if len(body) > MAX_XORB_BODY_BYTES:
        raise ValidationError(f"xorb body of {len(body)} bytes exceeds {MAX_XORB_BODY_BYTES}")
    built = validate_xorb(body, MerkleHash.from_hex(xorb_hex))
    rec = XorbRecord(built.hash, len(built.data), built.chunk_hashes, built.chunk_sizes, built.chunk_offsets)
    dedup = tuple(h for h in built.chunk_hashes if h.modulo(GLOBAL_DEDUP_MODULUS) == 0)
    return ValidXorb(rec, built.data, dedup)


def check_shard(body: bytes, lookup: XorbLookup) -> ValidShard:
    if len(body) > MAX_SHARD_BODY_BYTES:
        raise ValidationError(f"shard of {len(body)} bytes exceeds {MAX_SHARD_BODY_BYTES}")
    shard = parse_shard(body)
    problem = upload_encoding_problem(body, shard)
    if problem is not None:
        raise FormatError(f"shard: {problem}")
    for info in shard.xorbs:
        _check_listed_xorb(info, lookup)
    files, dedup = [], []
    for f in shard.files:
        rec = _check_file(f, lookup)
        files.append(rec)
        if rec.terms:
            first = rec.terms[0]
            xorb = lookup(first.xorb_hash)
            assert xorb is not None
            dedup.append((xorb.chunk_hashes[first.chunk_start], first.xorb_hash, rec.hash))
    return ValidShard(hashlib.sha256(body).hexdigest(), tuple(files), tuple(dedup))


def _stored(lookup: XorbLookup, xorb_hash: MerkleHash) -> XorbRecord:
    rec = lookup(xorb_hash)
    if rec is None:
        raise ValidationError(f"shard references xorb {xorb_hash}, which is not stored: upload it first")
    return rec


def _check_listed_xorb(info: XorbInfo, lookup: XorbLookup) -> None:
    rec = _stored(lookup, info.xorb_hash)
    if len(info.chunks) != len(rec.chunk_hashes):
        raise IntegrityError(f"shard lists {len(info.chunks)} chunks for xorb {info.xorb_hash}, "
                             f"stored: {len(rec.chunk_hashes)}")
    start = 0
    for i, c in enumerate(info.chunks):
        if c.chunk_hash != rec.chunk_hashes[i] or c.unpacked_bytes != rec.chunk_sizes[i] \
                or c.byte_range_start != start or c.flags:
            raise IntegrityError(f"shard chunk {i} of xorb {info.xorb_hash} disagrees with the stored xorb")
        start += c.unpacked_bytes
    if info.num_bytes_in_xorb != start or info.num_bytes_on_disk not in (0, rec.stored_bytes) or info.flags:
        raise IntegrityError(f"shard xorb {info.xorb_hash}: sizes or flags disagree with the stored xorb")


def _check_file(f: FileInfo, lookup: XorbLookup) -> FileRecord:
    if f.terms and (f.verification is None or len(f.verification) != len(f.terms)):
        raise ValidationError(f"file {f.file_hash}: every term needs a verification entry")
    leaves: list[tuple[bytes, int]] = []
    terms = []
    for i, t in enumerate(f.terms):
        rec = _stored(lookup, t.xorb_hash)
        n = len(rec.chunk_hashes)
        if t.flags:
            raise ValidationError(f"file {f.file_hash} term {i}: unknown flags {t.flags:#x}")
        if not 0 <= t.chunk_start < t.chunk_end <= n:
            raise ValidationError(f"file {f.file_hash} term {i}: chunks [{t.chunk_start},{t.chunk_end}) "
                                  f"out of bounds for xorb {t.xorb_hash} ({n} chunks)")
        hashes = rec.chunk_hashes[t.chunk_start:t.chunk_end]
        sizes = rec.chunk_sizes[t.chunk_start:t.chunk_end]
        if sum(sizes) != t.unpacked_bytes:
            raise IntegrityError(f"file {f.file_hash} term {i}: unpacked_bytes {t.unpacked_bytes} "
                                 f"!= {sum(sizes)} (stored chunk sizes)")
        assert f.verification is not None
        if verification_hash(hashes) != f.verification[i]:
            raise IntegrityError(f"file {f.file_hash} term {i}: wrong verification hash")
        leaves += zip(hashes, sizes)
        terms.append(StoredTerm(t.xorb_hash, t.chunk_start, t.chunk_end, t.unpacked_bytes))
    if file_hash(leaves) != f.file_hash:
        raise IntegrityError(f"file hash {f.file_hash} does not match its chunks ({file_hash(leaves)})")
    sha = str(f.sha256) if f.sha256 is not None else None
    return FileRecord(f.file_hash, sum(t.unpacked_bytes for t in terms), tuple(terms), sha)

