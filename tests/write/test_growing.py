"""``GrowingFile``: the bytes of appends are kept (bounded) and read back from the file only where they were
not kept, around the page cache when given an ``O_DIRECT`` descriptor; either way a block holds the file's bytes
(docs/architecture.md, "Stream while writing")."""
from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest

from xetfs.osutil.directio import open_direct_reader, pread_direct
from xetfs.testing.pagecache import cached_pages, file_not_cached, on_a_disk
from xetfs.write import growing
from xetfs.write.growing import DIRECT_SLACK_BYTES, GrowingFile, read_segments

MiB = 1 << 20


def _read(g: GrowingFile, pos: int, n: int) -> tuple[bytes, int]:
    """(the bytes of [pos, pos + n), how many of them came from the file)."""
    segments = g.take(pos, n)
    assert [s[0] for s in segments] == sorted(s[0] for s in segments)
    assert sum(s[1] for s in segments) == n and (not segments or segments[0][0] == pos)
    buf = memoryview(bytearray(n))
    from_file = sum(length for _, length, data in segments if data is None)
    return b"".join(read_segments(g.fd, segments, buf)), from_file


def test_blocks_hold_the_files_bytes_whichever_way_they_came(tmp_path: Path) -> None:
    data = os.urandom(1000)
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    try:
        g = GrowingFile(fd, max_buffered_bytes=300)
        os.pwrite(fd, data[:100], 0)
        g.grew(100)                                   # no bytes given: read from the file

        def append(a: int, b: int) -> None:
            os.pwrite(fd, data[a:b], a)
            g.grew(b, data[a:b])

        append(100, 250)
        append(250, 400)
        append(400, 700)                              # does not fit the 300-byte bound: not kept
        append(700, 800)                              # not contiguous with what is kept: not kept
        got, from_file = _read(g, 0, 180)
        assert got == data[:180] and from_file == 100
        got, from_file = _read(g, 180, 520)           # kept 180-400, then the file for 400-700
        assert got == data[180:700] and from_file == 300
        append(800, 1000)                             # nothing kept any more: kept from here on
        got, from_file = _read(g, 700, 300)
        assert got == data[700:] and from_file == 100
        assert g.take(1000, 0) == []
    finally:
        os.close(fd)


def test_bytes_not_kept_are_read_around_the_page_cache(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 1234)
    path = tmp_path / "f"
    fd = file_not_cached(path, data, os.O_RDWR)
    direct = open_direct_reader(fd)
    try:
        assert direct is not None, "ext4 and tmpfs take O_DIRECT"
        g = GrowingFile(fd, max_buffered_bytes=MiB, direct_fd=direct)
        g.grew(MiB + 100)                                  # not kept: read back
        g.grew(2 * MiB + 7, data[MiB + 100:2 * MiB + 7])   # kept
        g.grew(len(data))                                  # not kept: read back, to an unaligned end
        block = mmap.mmap(-1, len(data) + DIRECT_SLACK_BYTES)
        view = memoryview(block)
        segments = g.take(5, len(data) - 5)                # from an unaligned start
        assert [s[2] is None for s in segments] == [True, False, True]
        got = b"".join(read_segments(fd, segments, view, direct))
        assert got == data[5:]
        if on_a_disk(path):
            assert not any(cached_pages(path)), "read back from the device, not through the page cache"
    finally:
        if direct is not None:
            os.close(direct)
        os.close(fd)


def test_reads_around_the_page_cache_fall_back_or_fail_as_reads_through_it(tmp_path: Path, monkeypatch) -> None:
    data = os.urandom(MiB + 3)
    fd = file_not_cached(tmp_path / "f", data, os.O_RDWR)
    direct = open_direct_reader(fd)
    assert direct is not None
    try:
        buf = memoryview(mmap.mmap(-1, 2 * MiB + DIRECT_SLACK_BYTES))
        segments = [(1, 1000, None), (4096 * 3 + 5, MiB - 20_000, None)]
        refused = []

        def pread_refused(*args: object) -> None:   # a device wanting a larger alignment
            refused.append(args)
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(growing, "pread_direct", pread_refused)
        got = read_segments(fd, segments, buf, direct)
        assert [bytes(g) for g in got] == [data[1:1001], data[4096 * 3 + 5:4096 * 3 + 5 + MiB - 20_000]]
        assert len(refused) == 1, "refused once, then the page cache reads the rest"
        monkeypatch.undo()
        with pytest.raises(OSError, match="shrank"):
            read_segments(fd, [(MiB - 10, 100, None)], buf, direct)   # past the end of the file
        with pytest.raises(OSError) as exc:
            pread_direct(direct, buf, 0, MiB, 100)
        assert exc.value.errno == errno.EIO
    finally:
        os.close(direct)
        os.close(fd)
