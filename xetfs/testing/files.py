"""Local files for tests: a whole tree as ``{relative path: bytes}`` and back, one positioned read, and a whole
read past the kernel's page cache."""
from __future__ import annotations

import errno
import os
from collections.abc import Collection, Mapping
from pathlib import Path


def tree_of(root: Path, skip: Collection[str] = ()) -> dict[str, bytes]:
    """Every file under ``root`` -> its bytes, keyed by relative POSIX path; paths with a part in ``skip``
    (e.g. ``.cache``) are left out."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not skip_part(p.relative_to(root), skip)}


def skip_part(rel: Path, skip: Collection[str]) -> bool:
    return any(part in skip for part in rel.parts)


def write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    """Write ``{relative path: bytes}`` under ``root``, creating folders."""
    for rel, data in files.items():
        (Path(root) / rel).parent.mkdir(parents=True, exist_ok=True)
        (Path(root) / rel).write_bytes(data)


def pread(path: Path, offset: int, size: int) -> bytes:
    """One ``pread`` of ``size`` bytes at ``offset`` on a fresh descriptor (errors raise ``OSError``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def read_past_page_cache(path: Path) -> bytes:
    """The whole file, after dropping its pages from the kernel's page cache (on a mount: the daemon serves
    every byte again)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        parts = []
        while piece := os.read(fd, 1 << 20):
            parts.append(piece)
        return b"".join(parts)
    finally:
        os.close(fd)


def pread_unless_eio(path: Path, offset: int, size: int) -> bytes | None:
    """``pread``, or None when it fails with EIO (an offline mount's answer; other errors raise)."""
    try:
        return pread(path, offset, size)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return None
