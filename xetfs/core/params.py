"""Spec constants (docs/protocol.md) and tunables, as frozen dataclasses.

Tests pass tiny values (1 KiB chunks, 16 KiB xorbs) so small files exercise multi-chunk, multi-xorb and
multi-term paths. Production code takes these objects as parameters instead of reading module globals.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChunkingParams:
    """Chunking. ``mask`` keeps the 16 high bits for a 64 KiB target."""

    target_chunk_size: int = 65536
    min_chunk_size: int = 8192
    max_chunk_size: int = 131072

    @property
    def mask(self) -> int:
        t = self.target_chunk_size - 1
        return (t << (64 - t.bit_length())) & 0xFFFFFFFFFFFFFFFF

    @classmethod
    def tiny(cls) -> "ChunkingParams":
        """1 KiB target chunks for tests."""
        return cls(target_chunk_size=1024, min_chunk_size=128, max_chunk_size=2048)


@dataclass(frozen=True, slots=True)
class XorbParams:
    """A xorb holds at most 64 MiB of uncompressed chunk bytes and 8192 chunks."""

    max_xorb_bytes: int = 64 * 1024 * 1024
    max_xorb_chunks: int = 8192
    max_chunk_uncompressed: int = 131072
    max_chunk_compressed: int = 262144

    @classmethod
    def tiny(cls) -> "XorbParams":
        return cls(max_xorb_bytes=16 * 1024, max_xorb_chunks=64)


DEFAULT_CHUNKING = ChunkingParams()
DEFAULT_XORB = XorbParams()

# A chunk is eligible for a global-dedup query when its hash % 1024 == 0 (or it starts a file).
GLOBAL_DEDUP_MODULUS = 1024
# Shard layout
SHARD_HEADER_BYTES = 48
SHARD_FOOTER_BYTES = 200
SHARD_RECORD_BYTES = 48
MAX_SHARD_BYTES = 64 * 1024 * 1024
