"""A staged file a sequential writer is still appending to, as the upload pipeline reads it
(docs/architecture.md, "The write path": "Stream while writing").

``UploadSession.add_file`` reads a ``GrowingFile`` in blocks as it grows (``grew``) and ends the file once
``finish`` was called and every byte was read. The bytes of each append can come with it (``grew(end, data)``,
the buffer the write handler already holds): up to ``max_buffered_bytes`` of them are kept, in file order,
and a block is then made of those buffers without reading the data file back (one copy and one syscall per
block less). Whatever was not kept (the reader fell that far behind, or an append came without its bytes) is
read from the data file: the block holds the same bytes either way, so what is uploaded never depends on which
path delivered them. Given an ``O_DIRECT`` descriptor of the file (``direct_fd``), those reads go around the page
cache into the caller's page-aligned buffer (``osutil.directio.pread_direct``); the kernel first writes back any
of the range's bytes a write left in the page cache.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import mmap
import os
from collections.abc import Iterator

import trio

from xetfs.osutil.directio import ALIGN, pread_direct

# (start offset, length, the bytes or None = read them from the file)
Segment = tuple[int, int, memoryview | None]
# What a block buffer needs past the block's bytes for ``read_segments`` to read whole blocks with ``O_DIRECT``:
# a block has at most two segments read from the file (before and after the run of kept bytes).
DIRECT_SLACK_BYTES = 8 * ALIGN


class GrowingFile:
    """See the module docstring. Only the trio thread calls its methods (``read_segments`` runs anywhere)."""

    def __init__(self, fd: int, max_buffered_bytes: int = 32 << 20, direct_fd: int | None = None) -> None:
        self.fd = fd
        self.direct_fd = direct_fd
        self.end = 0
        self.finished = False
        self.max_buffered_bytes = max_buffered_bytes
        self._event = trio.Event()
        self._pieces: collections.deque[memoryview] = collections.deque()   # contiguous, from _buf_start
        self._buf_start = 0
        self._buffered = 0

    def grew(self, end: int, data: bytes | None = None) -> bool:
        """The file now ends at ``end``; ``data``, when given, are its last ``len(data)`` bytes. Whether they were
        kept: if not, they will be read from the file, so they must be in it before the next await."""
        kept = data is not None and len(data) <= end and self._keep(end - len(data), data)
        if end > self.end:
            self.end = end
            self._wake()
        return kept

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _keep(self, start: int, data: bytes) -> bool:
        if not self._pieces:
            self._buf_start, self._buffered = start, 0
        elif start != self._buf_start + self._buffered:
            return False   # not contiguous with what is kept: read from the file
        if self._buffered + len(data) > self.max_buffered_bytes:
            return False   # the reader is far behind: memory stays bounded, the file has the bytes
        self._pieces.append(memoryview(data).cast("B"))
        self._buffered += len(data)
        return True

    def _wake(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def available(self, pos: int, want: int) -> int:
        """Wait until ``want`` bytes past ``pos`` exist or the file is finished; returns the end."""
        while self.end - pos < want and not self.finished:
            await self._event.wait()
        return self.end

    def take(self, pos: int, n: int) -> list[Segment]:
        """The segments of ``[pos, pos + n)``, in order: kept bytes where they cover it, file reads elsewhere.
        Kept bytes before ``pos + n`` are released."""
        out: list[Segment] = []
        stop = pos + n
        while self._pieces and self._buf_start < stop:
            piece = self._pieces[0]
            p_end = self._buf_start + len(piece)
            if p_end <= pos:          # already read (from the file): drop
                self._drop_head(len(piece))
                continue
            lo = max(pos, self._buf_start)
            if lo > pos and (not out or out[-1][0] + out[-1][1] < lo):
                prev = out[-1][0] + out[-1][1] if out else pos
                out.append((prev, lo - prev, None))
            hi = min(stop, p_end)
            out.append((lo, hi - lo, piece[lo - self._buf_start:hi - self._buf_start]))
            if hi == p_end:
                self._drop_head(len(piece))
            else:
                self._pieces[0] = piece[hi - self._buf_start:]
                self._buffered -= hi - self._buf_start
                self._buf_start = hi
        covered = out[-1][0] + out[-1][1] if out else pos
        if covered < stop:
            out.append((covered, stop - covered, None))
        return out

    def _drop_head(self, size: int) -> None:
        self._pieces.popleft()
        self._buf_start += size
        self._buffered -= size


@contextlib.contextmanager
def block_buffer(block_bytes: int) -> Iterator[memoryview]:
    """A page-aligned buffer for blocks of ``block_bytes``, with ``DIRECT_SLACK_BYTES`` to spare for
    ``read_segments``; unmapped on exit unless a view of it is still held (then it goes with the last one)."""
    block = mmap.mmap(-1, block_bytes + DIRECT_SLACK_BYTES)
    view = memoryview(block)
    try:
        yield view
    finally:
        view.release()
        with contextlib.suppress(BufferError):
            block.close()


def read_segments(fd: int, segments: list[Segment], buf: memoryview, direct_fd: int | None = None) -> list[memoryview]:
    """The bytes of ``segments``: kept ones as they are, the others read from ``fd`` into ``buf`` (large
    enough for all of them). With ``direct_fd`` (an ``O_DIRECT`` descriptor of the same file) and a page-aligned
    ``buf`` with ``DIRECT_SLACK_BYTES`` to spare, they are read through it as whole blocks, unless the device
    refuses (``EINVAL``: ``fd`` reads the rest). Runs in a worker thread."""
    out: list[memoryview] = []
    used = 0
    for start, length, data in segments:
        if data is None and direct_fd is not None:
            try:
                data, used = pread_direct(direct_fd, buf, used, start, length)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise OSError(f"staged file shrank while streaming ({exc})") from None
                if exc.errno != errno.EINVAL:
                    raise
                direct_fd = None
        if data is None:
            view = buf[used:used + length]
            got = os.preadv(fd, [view], start)
            if got != length:
                raise OSError(f"staged file shrank while streaming ({got} of {length} bytes at {start})")
            used += length
            data = view
        out.append(data)
    return out
