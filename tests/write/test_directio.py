"""Staged writes through ``O_DIRECT`` (osutil/directio.py): aligned writes skip the page cache, every other write
goes through it, and the staged file holds exactly the bytes written whatever the mix."""
from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.osutil.directio import ALIGN, DirectWriter, open_direct
from xetfs.osutil.libc import libc_function
from xetfs.write.staging import Staging

PAGE = mmap.PAGESIZE
MiB = 1 << 20


def cached_pages(path: Path) -> list[bool]:
    """Which pages of ``path`` are in the page cache: ``mincore`` over a fresh mapping, which loads nothing."""
    c_mmap = libc_function("mmap", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                    ctypes.c_long], ctypes.c_void_p)
    c_mincore = libc_function("mincore", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p])
    c_munmap = libc_function("munmap", [ctypes.c_void_p, ctypes.c_size_t])
    assert c_mmap and c_mincore and c_munmap, "glibc has all three"
    size = path.stat().st_size
    vec = (ctypes.c_ubyte * ((size + PAGE - 1) // PAGE))()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = c_mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            assert c_mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            c_munmap(addr, size)
    finally:
        os.close(fd)
    return [bool(b & 1) for b in vec]


def on_a_disk(path: Path) -> bool:
    """tmpfs keeps every page in memory, so 'skips the page cache' means nothing there."""
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True)
    return kind.stdout.strip() not in ("tmpfs", "ramfs")


def test_aligned_staged_writes_skip_the_page_cache_and_others_do_not(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "s", 1 << 30)
    sf = stage.new_file(0)
    body = os.urandom(4 * MiB)
    for off in range(0, len(body), MiB):                      # 1 MiB writes, as FUSE hands them over
        assert stage.write(sf, off, body[off:off + MiB]) == MiB
    tail = b"tail: not a multiple of the block size"
    assert stage.write(sf, len(body), tail) == len(tail)
    data = stage.data / sf.id
    assert sf.dfd is not None and sf.dfd >= 0, "ext4 and tmpfs take O_DIRECT"
    pages = cached_pages(data)
    if on_a_disk(data):
        assert not any(pages[:len(body) // PAGE]), "aligned writes went around the page cache"
    assert pages[len(body) // PAGE], "the unaligned tail went through it"
    with open(data, "rb") as f:
        assert f.read() == body + tail
    stage.close()
    assert sf.dfd is None


def test_a_file_given_only_unaligned_writes_never_opens_a_direct_descriptor(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "s", 1 << 30)
    sf = stage.new_file(0)
    for off in range(0, 10 * 100, 100):                       # a small config file, written in lines
        assert stage.write(sf, off, b"x" * 100) == 100
    assert sf.dfd is None, "no O_DIRECT open for writes that cannot use it"
    assert stage.write(sf, 0, b"y" * ALIGN) == ALIGN
    assert sf.dfd is not None
    stage.close()


def test_direct_writer_takes_only_aligned_writes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = open_direct(path)
    assert fd is not None
    w = DirectWriter(max_bytes=2 * ALIGN)
    try:
        assert w.pwrite(fd, b"a" * ALIGN, ALIGN) == ALIGN
        assert w.pwrite(fd, b"b" * ALIGN, 1) is None, "unaligned offset"
        assert w.pwrite(fd, b"b" * (ALIGN - 1), 0) is None, "unaligned length"
        assert w.pwrite(fd, b"b" * 3 * ALIGN, 0) is None, "larger than its buffer"
        assert w.pwrite(fd, b"", 0) is None
        assert w.pwrite(-1, b"c" * ALIGN, 0) is None, "no O_DIRECT descriptor"
    finally:
        os.close(fd)
        w.close()
    assert path.read_bytes() == bytes(ALIGN) + b"a" * ALIGN
    assert open_direct(tmp_path / "missing") is None


# (offset in blocks, length in blocks, extra bytes): extra == 0 -> an aligned write, else an unaligned one
WRITES = st.lists(st.tuples(st.integers(0, 24), st.integers(1, 8), st.integers(-300, 300)), min_size=1,
                  max_size=14)


@settings(max_examples=60, deadline=None)
@given(writes=WRITES, shift=st.sampled_from([0, 0, 1, 511]))
def test_any_mix_of_direct_and_buffered_writes_reads_back_exactly(tmp_path_factory, writes, shift) -> None:
    """Overlapping aligned and unaligned writes, read back through the buffered descriptor after each one (the
    kernel must drop and write back cached pages around each direct write): always the model's bytes."""
    stage = Staging(tmp_path_factory.mktemp("s"), 1 << 30)
    sf = stage.new_file(0)
    model = bytearray()
    for i, (block, blocks, extra) in enumerate(writes):
        off = block * ALIGN + (shift if extra else 0)
        data = bytes([i + 1]) * max(1, blocks * ALIGN + extra)
        assert stage.write(sf, off, data) == len(data)
        if off > len(model):
            model.extend(bytes(off - len(model)))
        model[off:off + len(data)] = data
        assert os.pread(sf.fd, len(model) + 1, 0) == bytes(model)
    assert sf.size == len(model)
    stage.close()
