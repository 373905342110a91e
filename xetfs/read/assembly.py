"""A read's bytes cut out of whole chunks, and which chunks lie whole in them (docs/architecture.md, "A read").

``FileReader`` lays a run of chunks end to end from a file offset and returns a slice of them
(``slice_chunks``). ``whole_chunks`` says which of those chunk objects appear whole, unsliced, in the slice,
and where: snapshot download (``read.download``) takes the chunk hash the fetcher computed from that very
object (``ChunkCache.verified_hash``) instead of hashing the bytes again.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from xetfs.read.cache import ChunkKey

Placed = tuple[int, ChunkKey, bytes]   # (file offset, cache key, the chunk object whose bytes lie there)


def slice_chunks(chunks: Iterable[bytes], skip: int, size: int) -> bytes:
    """Bytes ``[skip, skip + size)`` of the concatenated ``chunks`` (short if they end first), copying only those."""
    parts: list[bytes | memoryview] = []
    at = 0
    for c in chunks:
        n = len(c)
        if at + n > skip:
            lo, hi = max(skip - at, 0), min(skip + size - at, n)
            parts.append(c if lo == 0 and hi == n else memoryview(c)[lo:hi])
        at += n
        if at >= skip + size:
            break
    if len(parts) == 1:
        return bytes(parts[0]) if isinstance(parts[0], memoryview) else parts[0]
    return b"".join(parts)


def whole_chunks(base: int, keys: Sequence[ChunkKey], chunks: Sequence[bytes], pos: int, end: int) -> Iterator[Placed]:
    """The ``chunks`` (under ``keys``), laid end to end from file offset ``base`` as ``slice_chunks`` lays them,
    that lie whole in the file's bytes ``[pos, end)``."""
    at = base
    for key, c in zip(keys, chunks):
        if at >= end:
            break
        if at >= pos and at + len(c) <= end:
            yield at, key, c
        at += len(c)
