"""The download's file writes (read/wholefile.py, osutil/writeback.py): ``pwrite_all`` on a real file, with
the kernel's short writes simulated, and early writeback."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.osutil.writeback import start_writeback
from xetfs.read import wholefile
from xetfs.read.flight import MiB
from xetfs.read.wholefile import IOV_MAX, BufferPool, pwrite_all


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), max_size=40), cap=st.integers(1, 5000), at=st.integers(0, 4096))
def test_pwrite_all_continues_short_writes(tmp_path_factory: pytest.TempPathFactory, sizes: list[int], cap: int,
                                           at: int) -> None:
    """Whatever a call writes (at most ``cap`` bytes here), the parts land back to back at ``at``."""
    parts = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    path = tmp_path_factory.mktemp("w") / "f"
    real = os.pwritev

    def short(fd: int, buffers: list[memoryview], offset: int) -> int:
        out, left = [], cap
        for b in buffers:
            if left == 0:
                break
            out.append(b[:left])
            left -= len(out[-1])
        return real(fd, out, offset)

    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        wholefile.os.pwritev = short            # type: ignore[assignment]
        pwrite_all(fd, parts, at)
    finally:
        wholefile.os.pwritev = real             # type: ignore[assignment]
        os.close(fd)
    data = path.read_bytes()
    assert data[at:] == b"".join(parts)
    assert data[:at] == bytes(min(at, len(data)))


def test_pwrite_all_batches_past_the_iovec_limit(tmp_path: Path) -> None:
    """More parts than one ``pwritev`` takes (UIO_MAXIOV): written in batches, in order."""
    parts = [i.to_bytes(4, "little") for i in range(3 * IOV_MAX + 7)]
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        pwrite_all(fd, parts, 0)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)


def test_pwrite_all_refuses_a_write_of_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``pwritev`` that writes 0 bytes of a non-empty batch is an error, not an endless loop."""
    monkeypatch.setattr(wholefile.os, "pwritev", lambda fd, bufs, offset: 0)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="wrote nothing"):
            pwrite_all(fd, [b"abc"], 0)
    finally:
        os.close(fd)


def test_start_writeback_starts_it_and_leaves_the_bytes(tmp_path: Path) -> None:
    """On Linux the kernel takes the request; the file's bytes are unchanged, and an empty range asks nothing."""
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"x" * 100_000, 0)
        assert start_writeback(fd, 0, 100_000)
        assert not start_writeback(fd, 0, 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 9 * MiB), min_size=1, max_size=30), limit=st.integers(1, 12 * MiB),
       holders=st.integers(1, 6))
def test_buffer_pool_bounds_what_it_holds_and_never_lends_a_buffer_twice(sizes: list[int], limit: int,
                                                                        holders: int) -> None:
    """``holders`` tasks take and give back buffers of ``sizes`` (in turn), yielding while they hold one. Every
    buffer is large enough, held by one task at a time, and the pool never holds more than its limit, except
    one buffer larger than the limit held alone. Nobody waits forever (the time limit would fail it)."""
    pool = BufferPool(limit)
    lent: set[int] = set()

    async def holder(mine: list[int]) -> None:
        for n in mine:
            buf = await pool.take(n)
            assert len(buf) >= n and id(buf) not in lent
            assert pool.held_bytes <= limit or pool.held_bytes == len(buf), (pool.held_bytes, len(buf))
            lent.add(id(buf))
            await trio.sleep(0.001 * (n % 7))
            lent.discard(id(buf))
            pool.give(buf)

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for h in range(holders):
                    nursery.start_soon(holder, sizes[h::holders])

    trio.run(main)


def test_buffer_pool_reuses_buffers_instead_of_allocating() -> None:
    async def main() -> None:
        pool = BufferPool(64 * MiB)
        first = await pool.take(5 * MiB + 3)
        pool.give(first)
        assert await pool.take(5 * MiB) is first, "a fitting idle buffer is reused"
        small = await pool.take(MiB)
        assert small is not first and len(small) == MiB and pool.held_bytes == 7 * MiB, "none idle: a new one"
        pool.give(first)
        pool.give(small)
        assert await pool.take(100) is small, "the smallest idle buffer that fits"
        assert await pool.take(100) is first
        assert pool.held_bytes == 7 * MiB

    trio.run(main)
