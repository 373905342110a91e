"""One way to replace a local file atomically and durably (docs/architecture.md, "Durability").

A reader sees either the old file or the new one, never a torn one, and after return the new
name survives a power cut: write a uniquely named temp file beside the target, fsync it,
``rename`` it over the target, then fsync the directory so the rename itself is durable.
Temp files carry ``TMP_SUFFIX`` so a store can sweep the ones an interrupted write left.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """fsync a directory, making the renames and creations inside it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A fresh temp name in the target's directory (same filesystem, so the rename is atomic)."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"


def write_atomic(path: Path, data: bytes | bytearray | memoryview, mode: int = 0o644,
                 *, sync_dir: bool = True) -> None:
    """Atomically replace ``path`` with ``data``."""
    write_atomic_with(path, lambda f: f.write(data), mode, sync_dir=sync_dir)


def write_atomic_with(path: Path, fill: Callable[[BinaryIO], object], mode: int = 0o644,
                      *, sync_dir: bool = True) -> None:
    """Atomically replace ``path`` with what ``fill`` writes to the open temp file."""
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            fill(f)
            f.flush()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    publish(tmp, path, sync_dir=sync_dir, sync_file=False)


def publish(tmp: Path, path: Path, *, sync_dir: bool = True, sync_file: bool = True) -> None:
    """Make a fully written temp file (from ``temp_path_for``) the new ``path``: fsync it, rename it over
    ``path``, fsync the directory. For writers that stream into the temp file themselves. On failure the
    temp file is removed."""
    try:
        if sync_file:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
