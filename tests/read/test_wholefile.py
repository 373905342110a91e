"""The download's file writes (read/wholefile.py, osutil/writeback.py): ``pwrite_all`` on a real file, with
the kernel's short writes simulated, and early writeback."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.osutil.writeback import start_writeback
from xetfs.read import wholefile
from xetfs.read.wholefile import IOV_MAX, pwrite_all


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
