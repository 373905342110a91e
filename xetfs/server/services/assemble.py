"""Server-side reconstruction of a Xet file's bytes for plain HTTP readers of ``/resolve`` (docs/protocol.md).

Plan the range from the metadata, then per term read the serialized chunk records of the needed chunks from
the stored xorb in batches of ~8 MiB, decode them in a worker thread, check every chunk against its indexed
hash (a damaged stored copy is an ``IntegrityError``, never wrong bytes) and yield them, skipping
``offset_into_first_range`` and cutting the tail. Memory stays bounded by the batch size whatever the file
size. ``file_sha256`` walks a whole file the same way, synchronously (for a worker thread), to recompute the
sha256 a shard claims for it (``services.claims``): the next batch is read while one is hashed, and the chunks
are checked against their hashes only when asked.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from xetfs.core.hashing import MerkleHash, chunk_hash
from xetfs.core.xorb import decode_views
from xetfs.errors import FormatError, IntegrityError
from xetfs.server.context import State
from xetfs.server.metadata.store import FileRecord
from xetfs.server.services.cas import indexed_xorb, plan, xorb_key

DECODE_BATCH_BYTES = 8 * 1024 * 1024
T = TypeVar("T")


def checked_chunks(st: State, xorb: str, start: int, end: int, want: Sequence[MerkleHash]) -> list[bytes | memoryview]:
    """The chunks of the records in serialized bytes ``[start, end)`` of a stored xorb, each checked against
    its indexed hash (IntegrityError for a damaged stored copy); uncompressed ones are views, not copies."""
    chunks = _chunks(st, xorb, start, end, want)
    if any(chunk_hash(c) != h for c, h in zip(chunks, want)):
        raise IntegrityError(f"stored xorb {xorb} is damaged: a chunk does not match its hash")
    return chunks


def decode_span(st: State, xorb: str, start: int, end: int, want: Sequence[MerkleHash]) -> bytes:
    """``checked_chunks`` joined: the file bytes those records hold."""
    return b"".join(checked_chunks(st, xorb, start, end, want))


def _batches(offsets: Sequence[int], start: int, end: int) -> Iterator[tuple[int, int]]:
    """Chunk index spans ``[s, e)`` covering ``[start, end)``, each ~``DECODE_BATCH_BYTES`` serialized (or one chunk)."""
    s = start
    while s < end:
        e = s + 1
        while e < end and offsets[e + 1] - offsets[s] <= DECODE_BATCH_BYTES:
            e += 1
        yield s, e
        s = e


def file_sha256(st: State, rec: FileRecord, *, check_chunks: bool = True) -> str:
    """sha256 hex of the whole file ``rec`` from the stored xorbs (blocking; memory bounded by two batches). Each
    batch is read and decoded in a second thread while the one before it is hashed. ``check_chunks``: every
    chunk checked against its indexed hash first (a damaged stored copy is an ``IntegrityError``); without it, a
    damaged copy only gives another sha256."""
    jobs = ((str(term.xorb_hash), xrec.chunk_offsets[s], xrec.chunk_offsets[e], xrec.chunk_hashes[s:e])
            for term in rec.terms
            for xrec in (indexed_xorb(st, term.xorb_hash),)
            for s, e in _batches(xrec.chunk_offsets, term.chunk_start, term.chunk_end))
    load = functools.partial(checked_chunks if check_chunks else _chunks, st)
    digest = hashlib.sha256()
    with ThreadPoolExecutor(1, thread_name_prefix="sha256-read") as pool:
        for chunks in _one_ahead(pool, load, jobs):
            for chunk in chunks:
                digest.update(chunk)
    return digest.hexdigest()


def _one_ahead(pool: ThreadPoolExecutor, load: Callable[..., T], jobs: Iterable[tuple[Any, ...]]) -> Iterator[T]:
    """``load(*job)`` of each job in order, the next one started in ``pool`` before this one is yielded."""
    ahead: Future[T] | None = None
    for job in itertools.chain(jobs, [None]):
        loading = None if job is None else pool.submit(load, *job)
        if ahead is not None:
            yield ahead.result()
        ahead = loading


def _chunks(st: State, xorb: str, start: int, end: int, want: Sequence[MerkleHash]) -> list[bytes | memoryview]:
    """The chunks of the records in serialized bytes ``[start, end)`` of a stored xorb, unchecked."""
    try:
        chunks = decode_views(st.storage.get_range(xorb_key(xorb), start, end - 1))
    except FormatError as exc:
        raise IntegrityError(f"stored xorb {xorb} is damaged: {exc}") from None
    if len(chunks) != len(want):
        raise IntegrityError(f"stored xorb {xorb} is damaged: {len(chunks)} chunks where {len(want)} were indexed")
    return chunks


async def xet_range(st: State, rec: FileRecord, start: int, end: int) -> AsyncIterator[memoryview]:
    """File bytes ``[start, end)`` of ``rec``, in pieces of at most ~``DECODE_BATCH_BYTES``."""
    r = await st.run(plan, st, rec, (start, end), False)
    skip, remaining = r.offset_into_first_range, end - start
    for term in r.terms:
        xrec = await st.run(indexed_xorb, st, term.xorb_hash)
        offsets = xrec.chunk_offsets
        for s, e in _batches(offsets, term.chunk_start, term.chunk_end):
            if remaining <= 0:
                break
            data = await st.run(decode_span, st, str(term.xorb_hash), offsets[s], offsets[e],
                                xrec.chunk_hashes[s:e])
            if skip >= len(data):
                skip -= len(data)
                continue
            piece = memoryview(data)[skip:skip + remaining]
            skip = 0
            remaining -= len(piece)
            yield piece
