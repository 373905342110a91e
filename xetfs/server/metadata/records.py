"""The server's metadata records (``store.Metadata`` reads and writes them; the tables are described there)
and the packed form of a file's terms: 44 bytes each, raw xorb hash, chunk start, chunk end, unpacked bytes.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from xetfs.core.hashing import MerkleHash

_TERM = struct.Struct("<32sIII")


@dataclass(frozen=True, slots=True)
class XorbRecord:
    hash: MerkleHash
    stored_bytes: int
    chunk_hashes: tuple[MerkleHash, ...]
    chunk_sizes: tuple[int, ...]
    chunk_offsets: tuple[int, ...]      # n + 1 values; the last is the serialized length


@dataclass(frozen=True, slots=True)
class StoredTerm:                       # fits core.reconstruction.TermLike
    xorb_hash: MerkleHash
    chunk_start: int
    chunk_end: int
    unpacked_bytes: int


@dataclass(frozen=True, slots=True)
class FileRecord:
    hash: MerkleHash
    size: int
    terms: tuple[StoredTerm, ...]
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Repo:
    id: int
    type: str
    repo_id: str
    private: bool
    created: float


@dataclass(frozen=True, slots=True)
class Commit:
    oid: str
    repo: int
    parent: str | None
    tree: str
    title: str
    message: str
    date: float
    author: str | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    scope: str
    repo: str | None


def pack_terms(terms: Iterable[StoredTerm]) -> bytes:
    return b"".join(_TERM.pack(bytes(t.xorb_hash), t.chunk_start, t.chunk_end, t.unpacked_bytes) for t in terms)


def unpack_terms(blob: bytes) -> tuple[StoredTerm, ...]:
    return tuple(StoredTerm(MerkleHash(h), s, e, n) for h, s, e, n in _TERM.iter_unpack(blob))
