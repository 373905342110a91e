"""Hashes of the Xet protocol (docs/protocol.md, "Hashes").

Every hash is 32 raw bytes (what BLAKE3 outputs). Its text form, the *Xet hex*, prints the four 8-byte
groups as little-endian u64s: reverse each group, then hex-encode. ``MerkleHash`` is ``bytes``
holding the raw form; ``str(h)`` and ``h.xet_hex()`` give the Xet hex, ``MerkleHash.from_hex`` parses it.

Definitions:
- chunk hash      = blake3(chunk, key=DATA_KEY)
- merkle node     = blake3("<hex> : <size>\\n" per child, key=INTERNAL_NODE_KEY)
- aggregated hash = content-defined merkle tree over (hash, size) leaves, mean branching 4
- xorb hash       = aggregated hash of the xorb's chunks
- file hash       = blake3(aggregated hash of the file's chunks, key=32 zero bytes); empty file -> zero hash
- verification    = blake3(raw chunk hashes of a term concatenated, key=VERIFICATION_KEY)
- keyed (HMAC)    = blake3(raw hash, key=hmac_key) for global-dedup shards
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import blake3

DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
                  157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41])
INTERNAL_NODE_KEY = bytes([1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
                           93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63])
VERIFICATION_KEY = bytes([127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
                          164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195])
FILE_HASH_SALT = bytes(32)

HASH_BYTES = 32
# Merkle groups take at most 9 nodes and end early at a node whose hash % 4 == 0.
_MAX_GROUP = 9
_GROUP_MODULUS = 4


_LE_WORDS = struct.Struct("<4Q")   # a hash's four 8-byte groups as little-endian u64s (how the Xet hex reads them)
_BE_WORDS = struct.Struct(">4Q")


def _swap_words(raw: bytes) -> bytes:
    """Reverse the byte order inside each 8-byte group of a 32-byte hash (its own inverse)."""
    return _BE_WORDS.pack(*_LE_WORDS.unpack(raw))


def _xet_hex(raw: bytes) -> str:
    """The Xet hex of 32 raw bytes: each group as a little-endian u64, in 16 hex digits."""
    try:
        return _BE_WORDS.pack(*_LE_WORDS.unpack(raw)).hex()
    except struct.error:
        from xetfs.errors import FormatError

        raise FormatError(f"a hash is {HASH_BYTES} bytes, got {len(raw)}") from None


class MerkleHash(bytes):
    """A 32-byte hash in raw form. ``str()`` is the Xet hex."""

    __slots__ = ()

    def __new__(cls, raw: bytes = bytes(32)) -> "MerkleHash":
        if len(raw) != HASH_BYTES:
            from xetfs.errors import FormatError

            raise FormatError(f"a hash is {HASH_BYTES} bytes, got {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def from_hex(cls, text: str) -> "MerkleHash":
        """Parse the Xet hex form (64 hex digits, either case)."""
        from xetfs.errors import FormatError

        if len(text) != 2 * HASH_BYTES:
            raise FormatError(f"a hash is {2 * HASH_BYTES} hex digits, got {len(text)}")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise FormatError(f"not a hex hash: {text[:80]!r}") from None
        return cls(_swap_words(raw))

    def xet_hex(self) -> str:
        return _xet_hex(self)

    def __str__(self) -> str:
        return self.xet_hex()

    def __repr__(self) -> str:
        return f"MerkleHash({self.xet_hex()})"

    def modulo(self, m: int) -> int:
        """The numeric view of a hash: the last 8 raw bytes as a little-endian u64, modulo ``m``."""
        return int.from_bytes(self[24:32], "little") % m

    def truncated(self) -> int:
        """The key of shard lookup tables: the first 8 raw bytes as a little-endian u64."""
        return int.from_bytes(self[0:8], "little")

    def is_zero(self) -> bool:
        return not any(self)


ZERO_HASH = MerkleHash(bytes(32))
BOOKEND_HASH = MerkleHash(b"\xff" * 32)


def keyed_hash(data: bytes | bytearray | memoryview, key: bytes) -> MerkleHash:
    return MerkleHash(blake3.blake3(data, key=key).digest())


def chunk_hash(data: bytes | bytearray | memoryview) -> MerkleHash:
    """The chunk hash of the uncompressed chunk bytes."""
    return keyed_hash(data, DATA_KEY)


def merkle_node_hash(children: Sequence[tuple[bytes, int]]) -> MerkleHash:
    """An internal node: one ``<xet hex> : <size>\\n`` line per child."""
    text = "".join(f"{_xet_hex(h)} : {n}\n" for h, n in children)
    return keyed_hash(text.encode("ascii"), INTERNAL_NODE_KEY)


def _next_group_size(rest: Sequence[tuple[bytes, int]]) -> int:
    if len(rest) <= 2:
        return len(rest)
    limit = min(_MAX_GROUP, len(rest))
    for j in range(2, limit):
        if int.from_bytes(rest[j][0][24:32], "little") % _GROUP_MODULUS == 0:
            return j + 1
    return limit


def aggregated_hash(leaves: Sequence[tuple[bytes, int]]) -> MerkleHash:
    """The aggregated hash of ``(hash, size)`` leaves; a single leaf is its own aggregate."""
    level = [(bytes(h), n) for h, n in leaves]
    if not level:
        return ZERO_HASH
    while len(level) > 1:
        out: list[tuple[bytes, int]] = []
        i = 0
        while i < len(level):
            cut = _next_group_size(level[i:i + _MAX_GROUP])
            group = level[i:i + cut]
            out.append((merkle_node_hash(group), sum(n for _, n in group)))
            i += cut
        level = out
    return MerkleHash(level[0][0])


def xorb_hash(chunks: Sequence[tuple[bytes, int]]) -> MerkleHash:
    """The xorb hash: aggregated hash of the xorb's ``(chunk hash, uncompressed size)`` in order."""
    return aggregated_hash(chunks)


def file_hash(chunks: Sequence[tuple[bytes, int]], salt: bytes = FILE_HASH_SALT) -> MerkleHash:
    """The file hash; a file with no chunks (empty) has the zero hash."""
    if not chunks:
        return ZERO_HASH
    return keyed_hash(aggregated_hash(chunks), salt)


def verification_hash(chunk_hashes: Iterable[bytes]) -> MerkleHash:
    """The term verification (range) hash over the raw chunk hashes of the term."""
    return keyed_hash(b"".join(bytes(h) for h in chunk_hashes), VERIFICATION_KEY)


def hmac_hash(h: bytes, key: bytes) -> MerkleHash:
    """The keyed chunk hash used in global-dedup shards (a keyed BLAKE3, not RFC 2104)."""
    return keyed_hash(bytes(h), key)


def sha256_to_shard(digest: bytes) -> MerkleHash:
    """The sha256 stored in a FileMetadataExt is word-swapped so its Xet hex is the normal hex."""
    return MerkleHash(_swap_words(digest))
