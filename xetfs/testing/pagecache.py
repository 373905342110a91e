"""What of a file is in the page cache, for tests of the paths that go around it (``osutil.directio``)."""
from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
from pathlib import Path

from xetfs.osutil.libc import libc_function

PAGE = mmap.PAGESIZE


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


def file_not_cached(path: Path, data: bytes, flags: int = os.O_RDONLY) -> int:
    """``path`` holding ``data`` with none of its pages in the page cache; returns a descriptor open with ``flags``."""
    path.write_bytes(data)
    fd = os.open(path, flags)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return fd
