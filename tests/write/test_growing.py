"""``GrowingFile``: the bytes of appends are kept (bounded) and read back from the file only where they were
not kept; either way a block holds the file's bytes (docs/architecture.md, "Stream while writing")."""
from __future__ import annotations

import os
from pathlib import Path

from xetfs.write.growing import GrowingFile, read_segments


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
