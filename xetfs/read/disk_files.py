"""The files of the disk tier, shared by ``DiskTier`` and the cache commands (docs/architecture.md, "The read
path" and "Cache management"): entry names, the entry header and its checks, atomic writes, the directory
scan and a per-directory lock.

A chunk entry is ``MAGIC | n | n x (size, chunk hash[:16]) | keyed blake3(header)[:16] | chunk bytes...``,
named ``<xorb hex>.<first chunk>-<end chunk>``. Every function does blocking file I/O (or none).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from xetfs.core.hashing import chunk_hash
from xetfs.osutil.atomic import publish
from xetfs.osutil.directio import write_new_file

log = logging.getLogger(__name__)

MAGIC = b"XFC3"
_COUNT = struct.Struct("<I")
_INDEX = struct.Struct("<I16s")       # uncompressed size, chunk hash[:16]
CHECKSUM_BYTES = 16
HEADER_BYTES = len(MAGIC) + _COUNT.size + _INDEX.size + CHECKSUM_BYTES   # the header of a one-chunk entry
LAYOUT_SUFFIX = ".layout"


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """The chunk hash (docs/protocol.md, "Hashes"), truncated: the read path computed it to verify the chunk, so a
    write passes it in and nothing is hashed twice."""
    return bytes(chunk_hash(data)[:CHECKSUM_BYTES])


def header_bytes(n: int) -> int:
    return len(MAGIC) + _COUNT.size + n * _INDEX.size + CHECKSUM_BYTES


def encode_header(datas: Sequence[bytes], hashes: Sequence[bytes] | None) -> bytes:
    head = bytearray(MAGIC + _COUNT.pack(len(datas)))
    for i, d in enumerate(datas):
        head += _INDEX.pack(len(d), checksum(d) if hashes is None else bytes(hashes[i][:CHECKSUM_BYTES]))
    head += checksum(head)
    return bytes(head)


def parse_header(head: bytes, n: int) -> list[tuple[int, bytes]] | None:
    """The (size, checksum) of each of the ``n`` chunks of an entry header, None when it is damaged."""
    if (len(head) != header_bytes(n) or head[:len(MAGIC)] != MAGIC or _COUNT.unpack_from(head, len(MAGIC))[0] != n
            or checksum(head[:-CHECKSUM_BYTES]) != head[-CHECKSUM_BYTES:]):
        return None
    return list(_INDEX.iter_unpack(head[len(MAGIC) + _COUNT.size:-CHECKSUM_BYTES]))


def entry_ok(data: bytes | memoryview, n: int) -> bool:
    """Whether a whole entry of ``n`` chunks is sound: its header, its length and every chunk's hash."""
    view = memoryview(data)
    index = parse_header(bytes(view[:header_bytes(n)]), n)
    if index is None or header_bytes(n) + sum(size for size, _ in index) != len(view):
        return False
    at = header_bytes(n)
    for size, want in index:
        if checksum(view[at:at + size]) != want:
            return False
        at += size
    return True


def parse_name(name: str) -> tuple[bytes, int, int] | None:
    """``<xorb hex>.<start>-<end>`` -> (raw xorb hash, start, end), None for anything else."""
    try:
        hexed, span = name.split(".", 1)
        start, end = span.split("-", 1)
        parsed = bytes.fromhex(hexed), int(start), int(end)
    except ValueError:
        return None
    return parsed if len(parsed[0]) == 32 and 0 <= parsed[1] < parsed[2] else None


def parse_layout_name(name: str) -> bytes | None:
    """``<file hash hex>.layout`` -> the raw file hash, None for anything else."""
    if not name.endswith(LAYOUT_SUFFIX):
        return None
    try:
        raw = bytes.fromhex(name[:-len(LAYOUT_SUFFIX)])
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def write_file(path: str, bufs: list[bytes | bytearray], total: int) -> bool:
    """Write ``bufs`` to a unique temp file beside ``path``, then rename it over ``path``. False (logged)
    on any OS error: a full disk must not fail a read, the cache is best effort."""
    sub, name = os.path.split(path)
    os.makedirs(sub, exist_ok=True)
    tmp = os.path.join(sub, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            written = write_new_file(fd, tmp, bufs)   # skips the page cache (osutil.directio)
            if written != total:
                raise OSError(f"short write {written} of {total}")
        finally:
            os.close(fd)
        # a cache entry is checked against its chunk hashes when loaded, so it needs no fsync
        publish(Path(tmp), Path(path), sync_dir=False, sync_file=False)
    except OSError as exc:
        log.warning("disk cache write failed: %s", exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def scan(roots: Iterable[Path]) -> Iterator[tuple[float, Path, int]]:
    """(mtime, path, size) of every entry under the two-level ``roots`` (temp files, dot-named, skipped)."""
    for root in roots:
        try:
            subs = list(root.iterdir())
        except FileNotFoundError:
            continue
        for sub in subs:
            if not sub.is_dir():
                continue
            with os.scandir(sub) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    yield st.st_mtime, Path(entry.path), st.st_size


@contextlib.contextmanager
def dir_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on a directory (created if need be), shared by every process using the cache dir:
    for read-modify-write updates of a file in it (a layout merged with what another process stored)."""
    os.makedirs(path, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock
