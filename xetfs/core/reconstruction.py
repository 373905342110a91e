"""File reconstruction: the server's plan and the client's assembly (docs/protocol.md, "Reconstruction").

A file is the concatenation of its terms; a term is the uncompressed chunks ``[chunk_start, chunk_end)`` of
one xorb. Offsets are bytes; chunk ranges are ``[start, end)``; fetch byte ranges are INCLUSIVE at the
end, like the wire's ``url_range`` / ``bytes``.

Server side:
1. ``parse_range_header`` turns ``Range: bytes=a-b | a- | -n`` into ``[start, end)``; a start at or past the
   end of the file is 416 (``RangeNotSatisfiable``) except ``start == 0`` on an empty file.
2. ``plan_reconstruction`` skips whole terms that end at or before ``start``, drops the leading chunks of the
   first kept term that end at or before ``start`` and the trailing chunks of the last kept term that begin at
   or after ``end`` (needs the xorbs' chunk sizes), and sets ``offset_into_first_range`` to the bytes still to
   skip. Fetch ranges are per xorb, sorted and merged when ``next.start <= cur.end``, so every term's chunk
   range lies inside ONE fetch range of its xorb (hf_xet fails with "No xorb fetch entry found" otherwise).
   Byte ranges come from the xorb's serialized chunk offsets (n + 1 values; the last is the xorb length).
3. ``xetfs.protocol.reconstruction`` writes the two response shapes and reads either back.

Client side: ``plan_read`` picks, for a byte window of a reconstruction, the terms it needs and the fetch
range holding each; the caller downloads each fetch range and decodes it (``decode_fetched``) into the chunks
``[chunk_start, chunk_end)`` of that range; ``term_chunks`` slices out each term's chunks and verifies them
(unpacked size and, when present, the verification hash -> ``IntegrityError``); ``assemble`` joins them,
skips ``offset_into_first_range`` plus the window offset, and truncates to the window size.
``locate_terms`` / ``locate`` map a file window onto terms / (xorb hash, chunk index) keys for a chunk cache.
Everything here is pure: no I/O.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from xetfs.core.hashing import MerkleHash, chunk_hash, verification_hash
from xetfs.errors import FormatError, IntegrityError, RangeNotSatisfiable, ValidationError
from xetfs.core.params import DEFAULT_XORB, XorbParams

log = logging.getLogger(__name__)

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class TermLike(Protocol):
    """What the planners read from a term: ``FileTerm`` and ``ReconstructionTerm`` both fit."""

    @property
    def xorb_hash(self) -> MerkleHash: ...
    @property
    def chunk_start(self) -> int: ...
    @property
    def chunk_end(self) -> int: ...
    @property
    def unpacked_bytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ReconstructionTerm:
    xorb_hash: MerkleHash
    chunk_start: int
    chunk_end: int
    unpacked_bytes: int
    verification_hash: MerkleHash | None = None   # xetfs extra JSON field "verification_hash" (Xet hex)


@dataclass(frozen=True, slots=True)
class FetchRange:
    xorb_hash: MerkleHash
    chunk_start: int
    chunk_end: int
    byte_start: int
    byte_end: int            # INCLUSIVE, in the serialized xorb (like url_range)
    url: str = ""

    @property
    def size_bytes(self) -> int:
        return self.byte_end - self.byte_start + 1

    def contains(self, term: TermLike) -> bool:
        return (self.xorb_hash == term.xorb_hash and self.chunk_start <= term.chunk_start
                and term.chunk_end <= self.chunk_end)


@dataclass(frozen=True, slots=True)
class Reconstruction:
    offset_into_first_range: int
    terms: tuple[ReconstructionTerm, ...]
    fetch: dict[MerkleHash, tuple[FetchRange, ...]]   # per xorb, merged
    file_size: int   # server side: size of the whole file; parsed JSON: bytes the terms cover (not on the wire)

    @property
    def size_bytes(self) -> int:
        """Bytes this reconstruction yields: the terms minus ``offset_into_first_range``."""
        return max(0, sum(t.unpacked_bytes for t in self.terms) - self.offset_into_first_range)


# ---------------------------------------------------------------------------------------------- server side

def parse_range_header(value: str | None, total: int) -> tuple[int, int] | None:
    """``Range`` header -> ``[start, end)`` clamped to ``total``; None when absent."""
    if value is None:
        return None
    m = _RANGE_RE.match(value)
    if m is None or (not m.group(1) and not m.group(2)):
        raise ValidationError(f"unsupported Range header: {value[:100]!r}")
    first, last = m.group(1), m.group(2)
    if not first:                       # "-n": the last n bytes
        n = int(last)
        if n == 0 and total > 0:
            raise RangeNotSatisfiable(f"empty suffix range {value!r}")
        return max(0, total - n), total
    start = int(first)
    end = total if not last else int(last) + 1
    if last and end <= start:
        raise ValidationError(f"Range end before start: {value[:100]!r}")
    if start >= total:
        if total == 0 and start == 0:
            return 0, 0
        raise RangeNotSatisfiable(f"range {value!r} starts at or past the end of a {total}-byte file")
    return start, min(end, total)


def _trim_term(term: TermLike, term_offset: int, start: int, end: int,
               sizes: Sequence[int] | None) -> tuple[int, int, int, int]:
    """Drop chunks outside ``[start, end)`` -> (chunk_start, chunk_end, unpacked_bytes, file offset of first)."""
    s, e = term.chunk_start, term.chunk_end
    if sizes is None:
        return s, e, term.unpacked_bytes, term_offset
    if len(sizes) < e or sum(sizes[s:e]) != term.unpacked_bytes:
        raise IntegrityError(f"term {term.xorb_hash}[{s},{e}) disagrees with the xorb's chunk sizes")
    first_offset = term_offset
    while e - s > 1 and first_offset + sizes[s] <= start:
        first_offset += sizes[s]
        s += 1
    last_offset = term_offset + term.unpacked_bytes   # end offset of chunk e-1
    while e - s > 1 and last_offset - sizes[e - 1] >= end:
        last_offset -= sizes[e - 1]
        e -= 1
    return s, e, last_offset - first_offset, first_offset


def _merge_chunk_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _fetch_ranges(wanted: dict[MerkleHash, list[tuple[int, int]]],
                  chunk_offsets: Callable[[MerkleHash], Sequence[int]]) -> dict[MerkleHash, tuple[FetchRange, ...]]:
    fetch: dict[MerkleHash, tuple[FetchRange, ...]] = {}
    for xorb, ranges in wanted.items():
        offsets = chunk_offsets(xorb)
        out = []
        for s, e in _merge_chunk_ranges(ranges):
            if e >= len(offsets):
                raise IntegrityError(f"term chunks [{s},{e}) past the end of xorb {xorb} ({len(offsets) - 1} chunks)")
            out.append(FetchRange(xorb, s, e, offsets[s], offsets[e] - 1))
        fetch[xorb] = tuple(out)
    return fetch


def _once_per_xorb(fn: Callable[[MerkleHash], Sequence[Any]] | None) -> Callable[[MerkleHash], Sequence[Any]] | None:
    """Files often return to the same xorb: look each xorb up once per plan."""
    if fn is None:
        return None
    seen: dict[MerkleHash, Sequence[Any]] = {}
    return lambda h: seen[h] if h in seen else seen.setdefault(h, fn(h))


def plan_reconstruction(terms: Sequence[TermLike], byte_range: tuple[int, int] | None,
                        chunk_offsets: Callable[[MerkleHash], Sequence[int]],
                        chunk_hashes: Callable[[MerkleHash], Sequence[MerkleHash]] | None = None,
                        *, chunk_sizes: Callable[[MerkleHash], Sequence[int]] | None = None) -> Reconstruction:
    """The server's plan. ``chunk_offsets(xorb)`` = serialized start of every chunk record + the xorb
    length; ``chunk_sizes(xorb)`` = uncompressed chunk sizes (without it, edge terms are not trimmed and
    ``offset_into_first_range`` grows accordingly); ``chunk_hashes(xorb)`` adds verification hashes."""
    total = sum(t.unpacked_bytes for t in terms)
    start, end = (0, total) if byte_range is None else byte_range
    spans = locate_terms(terms, start, end - start)
    chunk_hashes = _once_per_xorb(chunk_hashes)
    chunk_sizes = _once_per_xorb(chunk_sizes)
    out: list[ReconstructionTerm] = []
    wanted: dict[MerkleHash, list[tuple[int, int]]] = {}
    first_offset = start
    for i, span in enumerate(spans):
        term = terms[span.term_index]
        edge = i == 0 or i == len(spans) - 1
        sizes = chunk_sizes(term.xorb_hash) if chunk_sizes is not None and edge else None
        s, e, size, kept_offset = _trim_term(term, span.term_offset, start, end, sizes)
        if i == 0:
            first_offset = kept_offset
        vh = verification_hash(chunk_hashes(term.xorb_hash)[s:e]) if chunk_hashes is not None else None
        out.append(ReconstructionTerm(term.xorb_hash, s, e, size, vh))
        wanted.setdefault(term.xorb_hash, []).append((s, e))
    return Reconstruction(start - first_offset, tuple(out), _fetch_ranges(wanted, chunk_offsets), total)


# ---------------------------------------------------------------------------------------------- client side

@dataclass(frozen=True, slots=True)
class ReadPlan:
    terms: tuple[ReconstructionTerm, ...]   # the terms the window needs, in file order
    term_fetch: tuple[FetchRange, ...]      # the fetch range holding each term
    fetches: tuple[FetchRange, ...]         # distinct fetch ranges, in first-use order: download these
    skip_bytes: int                         # bytes to drop from the start of the first term's chunks
    size_bytes: int                         # bytes the window yields


def find_fetch(r: Reconstruction, term: TermLike) -> FetchRange:
    for f in r.fetch.get(term.xorb_hash, ()):
        if f.contains(term):
            return f
    raise FormatError(f"no xorb fetch entry found for term {term.xorb_hash}[{term.chunk_start},{term.chunk_end})")


def plan_read(r: Reconstruction, offset: int = 0, size: int | None = None) -> ReadPlan:
    """The fetches for bytes ``[offset, offset + size)`` of what ``r`` yields (default: all of it)."""
    avail = r.size_bytes
    offset = min(offset, avail)
    size = avail - offset if size is None else max(0, min(size, avail - offset))
    spans = locate_terms(r.terms, r.offset_into_first_range + offset, size)
    terms = tuple(r.terms[sp.term_index] for sp in spans)
    term_fetch = tuple(find_fetch(r, t) for t in terms)
    return ReadPlan(terms, term_fetch, tuple(dict.fromkeys(term_fetch)),
                    spans[0].skip_bytes if spans else 0, size)


def decode_fetched(fetch: FetchRange, data: bytes | memoryview, params: XorbParams = DEFAULT_XORB) -> list[bytes]:
    """Decode the downloaded bytes of one fetch range into its chunks ``[chunk_start, chunk_end)``."""
    from xetfs.core.xorb import decode_chunks

    if len(data) != fetch.size_bytes:
        raise FormatError(f"fetch range {fetch.byte_start}-{fetch.byte_end} returned {len(data)} bytes")
    chunks = decode_chunks(data, params)
    if len(chunks) != fetch.chunk_end - fetch.chunk_start:
        raise FormatError(f"fetch range of {fetch.chunk_end - fetch.chunk_start} chunks decoded to {len(chunks)}")
    return chunks


def verify_term(term: ReconstructionTerm, chunks: Sequence[bytes | memoryview],
                hashes: Sequence[MerkleHash] | None = None, *, with_hash: bool = True) -> None:
    """IntegrityError unless ``chunks`` are exactly the term's: their count and unpacked size, and (when
    ``with_hash`` and the term has one) its verification hash (§3.2) over ``hashes``, the chunks' hashes
    (computed here when not given). ``with_hash=False`` is for chunks verified when they entered a cache."""
    name = f"term {term.xorb_hash}[{term.chunk_start},{term.chunk_end})"
    if len(chunks) != term.chunk_end - term.chunk_start or sum(map(len, chunks)) != term.unpacked_bytes:
        raise IntegrityError(f"{name} has the wrong size")
    if with_hash and term.verification_hash is not None:
        if hashes is None:
            hashes = [chunk_hash(c) for c in chunks]
        if verification_hash(hashes) != term.verification_hash:
            raise IntegrityError(f"{name} fails verification")


def term_chunks(plan: ReadPlan, decoded: Mapping[FetchRange, Sequence[bytes]]) -> list[Sequence[bytes]]:
    """Each planned term's verified chunks, sliced from the decoded chunks of its fetch range."""
    out = []
    for term, fetch in zip(plan.terms, plan.term_fetch):
        chunks = decoded[fetch][term.chunk_start - fetch.chunk_start:term.chunk_end - fetch.chunk_start]
        verify_term(term, chunks)
        out.append(chunks)
    return out


def assemble(plan: ReadPlan, decoded: Mapping[FetchRange, Sequence[bytes]]) -> bytes:
    """The window's bytes from the decoded fetch ranges (``decode_fetched`` of each of ``plan.fetches``)."""
    data = b"".join(c for chunks in term_chunks(plan, decoded) for c in chunks)
    return data[plan.skip_bytes:plan.skip_bytes + plan.size_bytes]


# ---------------------------------------------------------------------------------------------- cache keys

@dataclass(frozen=True, slots=True)
class TermSpan:
    term_index: int
    term_offset: int   # offset of the term's first byte (in the terms' concatenation)
    skip_bytes: int    # bytes of the term before the window
    take_bytes: int    # bytes of the term inside the window


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    xorb_hash: MerkleHash
    chunk_index: int
    file_offset: int   # offset of the chunk's first byte
    size_bytes: int    # uncompressed chunk size (the whole chunk, not only the part inside the window)


def locate_terms(terms: Sequence[TermLike], offset: int, size: int) -> list[TermSpan]:
    """The terms overlapping ``[offset, offset + size)`` of the terms' concatenation."""
    out: list[TermSpan] = []
    end = offset + size
    term_offset = 0
    for i, t in enumerate(terms):
        term_end = term_offset + t.unpacked_bytes
        if size > 0 and term_end > offset and term_offset < end:
            skip = max(0, offset - term_offset)
            out.append(TermSpan(i, term_offset, skip, min(term_end, end) - term_offset - skip))
        term_offset = term_end
        if term_offset >= end:
            break
    return out


def locate(terms: Sequence[TermLike], offset: int, size: int,
           chunk_sizes: Callable[[MerkleHash, int, int], Sequence[int]]) -> list[ChunkSpan]:
    """(xorb hash, chunk index) keys of the chunks overlapping ``[offset, offset + size)`` of a file.
    ``chunk_sizes(xorb, start, end)`` gives the uncompressed sizes of chunks ``[start, end)``."""
    out: list[ChunkSpan] = []
    for span in locate_terms(terms, offset, size):
        t = terms[span.term_index]
        sizes = chunk_sizes(t.xorb_hash, t.chunk_start, t.chunk_end)
        if len(sizes) != t.chunk_end - t.chunk_start or sum(sizes) != t.unpacked_bytes:
            raise IntegrityError(f"chunk sizes disagree with term {t.xorb_hash}[{t.chunk_start},{t.chunk_end})")
        pos = span.term_offset
        lo, hi = span.term_offset + span.skip_bytes, span.term_offset + span.skip_bytes + span.take_bytes
        for k, n in enumerate(sizes):
            if pos + n > lo and pos < hi:
                out.append(ChunkSpan(t.xorb_hash, t.chunk_start + k, pos, n))
            pos += n
    return out
