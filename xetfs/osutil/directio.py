"""Block-aligned writes that skip the page cache (``O_DIRECT``; docs/architecture.md, "Staging writes").

A writable mount stages every byte written into it before the upload (``write.staging``). Through the page
cache, each staged GiB costs the daemon a fresh page per 4 KiB and a copy into it, then the close's fsync
writes them out. On the benchmark machine a loop of 1 MiB ``pwrite`` calls took 0.3-3.3 s of system time per
GiB that way (the most after GBs of memory were freed), on the thread that answers the kernel; with
``O_DIRECT`` the device reads the bytes from our buffer, for 0.06-0.1 s.

``DirectWriter.pwrite`` takes a write only when its offset and length are multiples of ``ALIGN``; the bytes
are copied into one reused page-aligned buffer (the device needs an aligned address), then written through a
second descriptor of the same file opened with ``O_DIRECT``. Anything else (a header, a tail, a file system
refusing ``O_DIRECT``) returns None and the caller writes through the page cache as before. Mixing the two on
one file is safe: before a direct write the kernel writes back and drops the cached pages it covers.
One caller at a time (the mount's trio thread).

``Gather`` spares the device most of those writes: ``shutil.copyfile`` hands the mount 64 KiB at a time, and
each direct write waits for the device (on the benchmark machine 172 us per 64 KiB write, 910 us per 1 MiB,
3 ms per 4 MiB). Contiguous aligned writes of one file at a time are copied into a page-aligned buffer and
written together, ``GATHER_BYTES`` at a time, or earlier when the file's owner calls ``flush``: before anything
reads the file, changes it another way, or syncs it (``write.staging``). Bytes that cannot be written stay
gathered and the error goes to the caller, so nothing gathered is ever dropped unwritten while its file lives.

``pread_direct`` reads the other way round: the staged bytes a streaming upload reads back (the ones it fell too
far behind to take from the writes) come from the device into the upload's own page-aligned buffer, so a GiB
written and streamed allocates no page-cache page at all.

``read_spans`` reads the disk tier's entries back the same way: runs of adjacent chunks come from the device into
a reused page-aligned buffer per thread and are copied out, so loading a GiB of cached chunks fills no page-cache
page either.

``write_new_file`` writes a whole new file that way: the disk tier's entries, which the read path writes once and
reads back only after the memory tier let them go (docs/architecture.md, "Performance"). Through the page cache
each GiB of them cost the daemon a fresh page per 4 KiB, a copy into it and a second cached copy of bytes the
FUSE page cache and the memory tier already hold.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Iterable, Sequence

__all__ = ["ALIGN", "GATHER_BYTES", "DirectWriter", "Gather", "open_direct", "open_direct_reader", "pread_direct",
           "read_spans", "write_new_file"]

ALIGN = 4096                 # the page size: a multiple of every device's logical block size here
PIECE_BYTES = 4 << 20        # write_new_file's and read_spans' buffers, one each per thread that calls them
GATHER_BYTES = 4 << 20       # Gather's buffer: one device write per 4 MiB of contiguous writes
DIRECT_READ_MIN_BYTES = 256 << 10   # read_spans: smaller reads go through the page cache (and its readahead)
_local = threading.local()


def open_direct(path: str | os.PathLike[str]) -> int | None:
    """A write-only ``O_DIRECT`` descriptor of ``path``, or None where the file system refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None


def open_direct_reader(fd: int) -> int | None:
    """A read-only ``O_DIRECT`` descriptor of the file open as ``fd``, with a file description of its own (``fd``
    keeps its flags), or None where the file system refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | flag)
    except OSError:
        return None


def pread_direct(fd: int, buf: memoryview, at: int, start: int, length: int) -> tuple[memoryview, int]:
    """Bytes ``[start, start + length)`` of the file open as ``fd`` (``open_direct_reader``), read as whole blocks
    into ``buf`` (page-aligned) from ``at`` rounded up to ``ALIGN``; returns them (a view of ``buf``) and the
    offset in ``buf`` past the blocks read. ``buf`` needs room for ``length`` plus ``2 * ALIGN`` past ``at``
    rounded up. The last block may end past the end of the file. Raises ``OSError``: ``EINVAL`` where the device
    wants a larger alignment, ``EIO`` when the file ends before ``start + length``."""
    at += -at % ALIGN
    lo = start - start % ALIGN
    hi = start + length + -(start + length) % ALIGN
    got = os.preadv(fd, [buf[at:at + hi - lo]], lo)
    if got < start + length - lo:
        raise OSError(errno.EIO, f"the file ends before byte {start + length} ({lo + got})")
    return buf[at + start - lo:at + start - lo + length], at + hi - lo


class DirectWriter:
    """Aligned ``pwrite`` through an ``O_DIRECT`` descriptor, from one reused page-aligned buffer."""

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.max_bytes = max_bytes    # larger writes go through the page cache (FUSE sends at most 1 MiB)
        self._buf: mmap.mmap | None = None

    def fits(self, offset: int, n: int) -> bool:
        """Whether a write of ``n`` bytes at ``offset`` can go direct: aligned, non-empty, within the buffer."""
        return 0 < n <= self.max_bytes and not n % ALIGN and not offset % ALIGN

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int | None:
        """Bytes written through ``fd`` (an ``open_direct`` descriptor), or None when ``fd`` is -1, the write does
        not ``fit``, or the kernel refuses it as unaligned (``EINVAL``): the caller then writes it the usual way.
        Raises ``OSError`` otherwise, as ``os.pwrite`` does (``ENOSPC``, ``EIO``)."""
        n = len(data)
        if fd < 0 or not self.fits(offset, n):
            return None
        if self._buf is None:
            self._buf = mmap.mmap(-1, self.max_bytes)   # anonymous mappings are page-aligned
        view = memoryview(self._buf)
        try:
            view[:n] = data
            return os.pwrite(fd, view[:n], offset)
        except OSError as exc:
            if exc.errno == errno.EINVAL:   # a device wanting a larger alignment
                return None
            raise
        finally:
            view.release()

    def close(self) -> None:
        if self._buf is not None:
            self._buf.close()
            self._buf = None


class Gather:
    """Contiguous aligned writes of one file (its ``owner``) at a time, written through its ``O_DIRECT``
    descriptor together (module docstring). One caller at a time."""

    def __init__(self, max_bytes: int = GATHER_BYTES) -> None:
        self.max_bytes = max_bytes
        self.owner: object | None = None   # whose bytes are gathered (None: nothing is)
        self._buf: mmap.mmap | None = None
        self._fd = self._fallback_fd = -1
        self._start = self._len = 0

    def add(self, owner: object, fd: int, fallback_fd: int, data: bytes | memoryview, offset: int) -> bool:
        """Take a write of ``owner``'s file (``fd``: its ``O_DIRECT`` descriptor, ``fallback_fd``: a plain one for
        a device refusing the alignment); False, taking nothing, when it is not aligned, ``fd`` is -1 or another
        owner's bytes are gathered: the caller then writes it itself, after its own ``flush``. What was gathered
        is written out first when this write does not continue it or would overflow the buffer (OSError as
        ``os.pwrite`` raises, with the write not taken)."""
        n = len(data)
        if fd < 0 or not 0 < n <= self.max_bytes or n % ALIGN or offset % ALIGN or self.owner not in (None, owner):
            return False
        if self._len and (offset != self._start + self._len or self._len + n > self.max_bytes):
            self.flush(owner)
        if self._buf is None:
            self._buf = mmap.mmap(-1, self.max_bytes)   # anonymous mappings are page-aligned
        if not self._len:
            self.owner, self._fd, self._fallback_fd, self._start = owner, fd, fallback_fd, offset
        self._buf[self._len:self._len + n] = data
        self._len += n
        return True

    def flush(self, owner: object) -> None:
        """Write out what ``owner`` gathered (nothing to do when another owner's bytes are gathered). Raises
        OSError as ``os.pwrite`` does; the bytes then stay gathered for the next flush."""
        if self.owner is not owner or self.owner is None:
            return
        assert self._buf is not None
        view = memoryview(self._buf)
        try:
            _pwrite_all(self._fd, self._fallback_fd, view[:self._len], self._start)
        finally:
            view.release()
        self.owner, self._len = None, 0

    def forget(self, owner: object) -> None:
        """Drop what ``owner`` gathered unwritten: its file is gone."""
        if self.owner is owner:
            self.owner, self._len = None, 0

    def close(self) -> None:
        self.owner, self._len = None, 0
        if self._buf is not None:
            self._buf.close()
            self._buf = None


def write_new_file(fd: int, path: str | os.PathLike[str], parts: Iterable[bytes | bytearray | memoryview]) -> int:
    """Write ``parts`` back to back from offset 0 of ``path``, a new empty file open for writing as ``fd``; returns
    the bytes written. Whole ``ALIGN`` blocks go through an ``O_DIRECT`` descriptor of ``path``, copied into this
    thread's reused page-aligned buffer ``PIECE_BYTES`` at a time; the tail under ``ALIGN``, and everything where
    the file system refuses ``O_DIRECT``, through ``fd``. Raises ``OSError`` as ``os.pwrite`` does."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = mmap.mmap(-1, PIECE_BYTES)   # anonymous mappings are page-aligned
    out = _PieceWriter(fd, path)
    view = memoryview(buf)
    fill = 0
    try:
        for part in parts:
            src = memoryview(part).cast("B")
            while len(src):
                k = min(len(src), PIECE_BYTES - fill)
                view[fill:fill + k] = src[:k]
                fill += k
                src = src[k:]
                if fill == PIECE_BYTES:
                    out.write(view[:fill])
                    fill = 0
        aligned = fill - fill % ALIGN
        if aligned:
            out.write(view[:aligned])
        if fill > aligned:
            out.write(view[aligned:fill], direct=False)
        return out.offset
    finally:
        view.release()
        out.close()


class _PieceWriter:
    """``write_new_file``'s two descriptors and the offset reached. The ``O_DIRECT`` one is opened at the first
    whole block (a file smaller than a block never opens it); on ``EINVAL`` ``fd`` takes the rest."""

    def __init__(self, fd: int, path: str | os.PathLike[str]) -> None:
        self.fd, self.path, self.offset = fd, path, 0
        self.direct: int | None = None
        self._opened = False

    def write(self, piece: memoryview, direct: bool = True) -> None:
        if direct and not self._opened:
            self._opened = True
            self.direct = open_direct(self.path)
        through = self.direct if direct else None
        if not _pwrite_all(through, self.fd, piece, self.offset) and through is not None:
            self.close()   # refused: the page cache takes this file's later pieces too
        self.offset += len(piece)

    def close(self) -> None:
        if self.direct is not None:
            os.close(self.direct)
            self.direct = None


def _pwrite_all(direct: int | None, fd: int, piece: memoryview, offset: int) -> bool:
    """Write ``piece`` at ``offset`` through ``direct`` (an ``O_DIRECT`` descriptor; None: through ``fd``),
    continuing short writes; where the device refuses the alignment (``EINVAL``) ``fd`` takes the rest. Whether
    ``direct`` took it all. Raises ``OSError`` otherwise, as ``os.pwrite`` does."""
    out = fd if direct is None else direct
    while len(piece):
        try:
            n = os.pwrite(out, piece, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL or out == fd:
                raise
            out = fd
            continue
        if n <= 0:
            raise OSError(errno.EIO, f"pwrite wrote nothing at offset {offset}")
        offset += n
        piece = piece[n:]
    return out != fd


def read_spans(fd: int, spans: Sequence[tuple[int, int]]) -> list[bytes]:
    """The bytes of each ``(offset, length)`` span of the file open as ``fd``, in order (offsets ascending). Runs
    of adjacent spans within ``PIECE_BYTES`` are read as whole blocks through an ``O_DIRECT`` descriptor into this
    thread's reused page-aligned buffer and copied out. Spans under ``DIRECT_READ_MIN_BYTES`` in all, a span
    larger than the buffer, and every span where the file system refuses ``O_DIRECT`` are read through ``fd``. A
    span past the end of the file comes back short, as ``os.pread`` gives it."""
    direct = None
    if sum(n for _, n in spans) >= DIRECT_READ_MIN_BYTES:
        direct = open_direct_reader(fd)
    if direct is None:
        return [os.pread(fd, n, off) for off, n in spans]
    buf = getattr(_local, "rbuf", None)
    if buf is None:
        buf = _local.rbuf = mmap.mmap(-1, PIECE_BYTES)   # anonymous mappings are page-aligned
    view = memoryview(buf)
    out: list[bytes] = []
    try:
        i = 0
        while i < len(spans):
            lo = spans[i][0] - spans[i][0] % ALIGN
            j = i + 1
            while j < len(spans) and spans[j][0] == sum(spans[j - 1]) and sum(spans[j]) - lo <= PIECE_BYTES - ALIGN:
                j += 1
            hi = sum(spans[j - 1])
            hi += -hi % ALIGN
            if direct is None or hi - lo > PIECE_BYTES:
                out += [os.pread(fd, n, off) for off, n in spans[i:j]]
            else:
                try:
                    got = os.preadv(direct, [view[:hi - lo]], lo)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:   # a device wanting a larger alignment: the page cache reads the rest
                        raise
                    os.close(direct)
                    direct = None
                    continue
                out += [bytes(view[off - lo:max(off - lo, min(off - lo + n, got))]) for off, n in spans[i:j]]
            i = j
    finally:
        view.release()
        if direct is not None:
            os.close(direct)
    return out
