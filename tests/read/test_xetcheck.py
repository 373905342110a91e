"""XetFileCheck: the Xet file hash of a download from its bytes and the chunk sizes the reader learned."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xetfs.core.chunking import chunk_data
from xetfs.core.hashing import file_hash
from xetfs.errors import IntegrityError
from xetfs.read import xetcheck
from xetfs.read.xetcheck import HashAt, XetFileCheck
from xetfs.testing.server import make_bytes

DATA = make_bytes("random", 700_000, 11)
CHUNKS = chunk_data(DATA)
SIZES = [len(c.data) for c in CHUNKS]
HASH = file_hash([(c.hash, len(c.data)) for c in CHUNKS])
OFFSETS = [sum(SIZES[:i]) for i in range(len(SIZES))]


def _sizes_from(offset: int, end: int) -> list[int]:
    """What download gives feed: the chunks from ``offset`` (a chunk start) that overlap ``[offset, end)``."""
    out, at = [], 0
    for n in SIZES:
        if at + n > offset and at < end:
            out.append(n)
        at += n
    return out


def _feed(check: XetFileCheck, data: bytes, cuts: list[int], hash_at: HashAt | None = None) -> None:
    bounds = [0, *sorted(set(cuts)), len(data)]
    for lo, hi in zip(bounds, bounds[1:]):
        check.feed(data[lo:hi], _sizes_from(check.hashed, hi), hash_at)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(DATA) - 1), max_size=12))
def test_any_split_of_the_bytes_gives_the_file_hash(cuts: list[int]) -> None:
    check = XetFileCheck("f.bin", len(DATA), HASH)
    _feed(check, DATA, cuts)
    check.verify()
    assert check.hashed == len(DATA)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=len(DATA) - 1), st.lists(st.integers(1, len(DATA) - 1), max_size=6))
def test_one_flipped_byte_fails(at: int, cuts: list[int]) -> None:
    bad = bytearray(DATA)
    bad[at] ^= 0x40
    check = XetFileCheck("f.bin", len(DATA), HASH)
    _feed(check, bytes(bad), cuts)
    with pytest.raises(IntegrityError, match="not the listed file"):
        check.verify()


def test_short_bytes_and_other_boundaries_fail() -> None:
    short = XetFileCheck("f.bin", len(DATA), HASH)
    short.feed(DATA[:-1], SIZES)
    with pytest.raises(IntegrityError):
        short.verify()
    moved = XetFileCheck("f.bin", len(DATA), HASH)   # the same bytes cut elsewhere are another hash
    moved.feed(DATA, [SIZES[0] - 1, SIZES[1] + 1, *SIZES[2:]])
    with pytest.raises(IntegrityError):
        moved.verify()


def test_bytes_without_a_layout_are_refused_not_buffered() -> None:
    check = XetFileCheck("f.bin", len(DATA), HASH)
    with pytest.raises(IntegrityError, match="no chunk layout"):
        check.feed(DATA, [])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(DATA) - 1), max_size=12))
def test_a_chunk_whole_in_a_piece_takes_the_hash_given_for_its_offset(cuts: list[int]) -> None:
    """``hash_at`` is asked for exactly the chunks no piece boundary cuts, at their file offsets; only the cut
    ones are hashed by the check."""
    asked: list[tuple[int, int]] = []
    hashed = [0]
    real = xetcheck.chunk_hash

    def counted(chunk: bytes | bytearray | memoryview) -> bytes:
        hashed[0] += 1
        return real(chunk)

    def hash_at(at: int, size: int) -> bytes | None:
        asked.append((at, size))
        i = OFFSETS.index(at)
        return CHUNKS[i].hash if SIZES[i] == size else None

    check = XetFileCheck("f.bin", len(DATA), HASH)
    xetcheck.chunk_hash = counted   # type: ignore[assignment]
    try:
        _feed(check, DATA, cuts, hash_at)
    finally:
        xetcheck.chunk_hash = real   # type: ignore[assignment]
    check.verify()
    whole = [(at, n) for at, n in zip(OFFSETS, SIZES) if not any(at < c < at + n for c in cuts)]
    assert asked == whole
    assert hashed[0] == len(CHUNKS) - len(whole)


def test_a_hash_given_for_a_chunk_is_its_leaf() -> None:
    """The check trusts ``hash_at`` (the caller vouches it was computed from those very bytes): a wrong one
    fails the file hash even though every byte is right."""
    check = XetFileCheck("f.bin", len(DATA), HASH)
    check.feed(DATA, SIZES, lambda at, size: CHUNKS[1].hash if at == 0 else None)
    with pytest.raises(IntegrityError, match="not the listed file"):
        check.verify()
