"""Local file digesting: stream a file through the chunker; its chunk list, Xet file hash and sha256.

Files are read in ``READ_BLOCK_BYTES`` blocks, so memory use does not grow with the file size (beyond the
chunk list). The file hash is the one hf_xet and the Hub use as the file's Xet id (docs/protocol.md,
"Chunks" and "Hashes").
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from xetfs.core.chunking import Chunker
from xetfs.core.hashing import file_hash
from xetfs.core.params import DEFAULT_CHUNKING, ChunkingParams

READ_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileDigest:
    path: str
    hash: str            # Xet hex
    size: int
    sha256: str | None   # normal hex; None unless asked for
    chunks: int


def stream_file_chunks(path: str, on_block: Callable[[memoryview], None] | None = None,
                       params: ChunkingParams | None = None) -> list[tuple[bytes, int]]:
    """Chunk a file block by block; returns ``(chunk hash, size)`` in order, calls ``on_block`` per block read."""
    chunker = Chunker(params or DEFAULT_CHUNKING)
    out: list[tuple[bytes, int]] = []
    buf = bytearray(READ_BLOCK_BYTES)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            block = view[:n]
            if on_block is not None:
                on_block(block)
            out.extend((c.hash, c.size) for c in chunker.feed(block))
    out.extend((c.hash, c.size) for c in chunker.finish())
    return out


def digest_file(path: str, with_sha256: bool = False) -> FileDigest:
    """The Xet file hash (and optionally the sha256) of one file."""
    sha = hashlib.sha256() if with_sha256 else None
    chunks = stream_file_chunks(path, sha.update if sha is not None else None)
    return FileDigest(path=path, hash=str(file_hash(chunks)), size=sum(n for _, n in chunks),
                      sha256=sha.hexdigest() if sha is not None else None, chunks=len(chunks))
