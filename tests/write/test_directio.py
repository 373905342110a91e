"""Writes through ``O_DIRECT`` (osutil/directio.py). Staged writes: aligned writes skip the page cache, every other
write goes through it, and the staged file holds exactly the bytes written whatever the mix. New whole files (the
disk tier's entries): every whole block skips the page cache, the tail does not, and the file holds exactly the
parts given, also where the file system refuses ``O_DIRECT``. Spans read back (``read_spans``, the disk tier's loads):
exactly what ``pread`` gives, around the page cache where they are large enough."""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.osutil import directio
from xetfs.osutil.directio import (ALIGN, DIRECT_READ_MIN_BYTES, PIECE_BYTES, DirectWriter, open_direct, read_spans,
                                   write_new_file)
from xetfs.read.disk_tier import DiskTier
from xetfs.write.growing import GrowingFile, block_buffer, read_segments
from xetfs.testing.pagecache import cached_pages, file_not_cached, on_a_disk
from xetfs.write.staging import Staging

PAGE = mmap.PAGESIZE
MiB = 1 << 20


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


# (offset in blocks, length in blocks, extra bytes): extra == 0 -> an aligned write, else an unaligned one;
# offset -1 -> an append at the current end (runs of them are gathered); length 0 -> a truncate to the offset
WRITES = st.lists(st.tuples(st.integers(-1, 24), st.integers(0, 8),
                            st.one_of(st.just(0), st.integers(-300, 300)), st.booleans()), min_size=1, max_size=24)


@settings(max_examples=80, deadline=None)
@given(writes=WRITES, shift=st.sampled_from([0, 0, 1, 511]), gather_blocks=st.sampled_from([1, 3, 1024]))
def test_any_mix_of_direct_gathered_and_buffered_writes_reads_back_exactly(tmp_path_factory, writes, shift,
                                                                          gather_blocks) -> None:
    """Overlapping aligned and unaligned writes, appends (gathered: ``osutil.directio.Gather``) and truncates,
    read back through the buffered descriptor after a ``flush`` at random points (the kernel must drop and write
    back cached pages around each direct write): always the model's bytes. Without the flush, the data file holds
    the model but for the bytes still gathered, at most ``gather_blocks`` blocks at its end."""
    stage = Staging(tmp_path_factory.mktemp("s"), 1 << 30)
    stage._gather = directio.Gather(gather_blocks * ALIGN)
    sf = stage.new_file(0)
    model = bytearray()
    for i, (block, blocks, extra, check) in enumerate(writes):
        if blocks == 0:
            stage.resize(sf, max(0, block) * ALIGN + extra % 7)
            del model[sf.size:]
            model.extend(bytes(sf.size - len(model)))
        else:
            off = len(model) if block < 0 else block * ALIGN + (shift if extra else 0)
            data = bytes([i + 1]) * max(1, blocks * ALIGN + extra)
            assert stage.write(sf, off, data) == len(data)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + len(data)] = data
        on_disk = os.pread(sf.fd, len(model) + 1, 0)
        g = stage._gather
        lo, hi = (g._start, g._start + g._len) if g.owner is sf else (len(model), len(model))
        assert hi - lo <= gather_blocks * ALIGN and hi <= len(model)
        assert on_disk[:lo].ljust(lo, b"\0") == bytes(model[:lo]), "all but the gathered run is in the file"
        assert on_disk[hi:] == bytes(model[hi:])
        if check:
            stage.flush(sf)
            assert os.pread(sf.fd, len(model) + 1, 0) == bytes(model)
    assert sf.size == len(model)
    stage.flush(sf)
    assert os.pread(sf.fd, len(model) + 1, 0) == bytes(model)
    stage.close()


def test_gathered_bytes_that_cannot_be_written_stay_gathered(tmp_path: Path) -> None:
    """A failing device write leaves the bytes gathered and raises; the next flush writes them."""
    path = tmp_path / "f"
    path.write_bytes(b"")
    good = os.open(path, os.O_WRONLY)
    bad = os.open(path, os.O_RDONLY)   # pwrite: EBADF
    g = directio.Gather(4 * ALIGN)
    owner, other = object(), object()
    try:
        assert g.add(owner, bad, bad, b"a" * ALIGN, 0)
        assert not g.add(other, good, good, b"b" * ALIGN, 0), "one owner at a time"
        g.flush(other)                                        # not its bytes: nothing happens
        try:
            g.flush(owner)
            raise AssertionError("the write failed")
        except OSError as exc:
            assert exc.errno == errno.EBADF
        assert g.owner is owner and path.read_bytes() == b""
        g._fd = g._fallback_fd = good                         # the device is back
        assert g.add(owner, good, good, b"c" * ALIGN, ALIGN)  # continues the run
        assert not g.add(owner, good, good, b"d" * 3, 2 * ALIGN), "unaligned"
        g.flush(owner)
        assert g.owner is None and path.read_bytes() == b"a" * ALIGN + b"c" * ALIGN
        assert g.add(owner, good, good, b"e" * ALIGN, 0)
        g.forget(owner)
        g.flush(owner)
        assert path.read_bytes() == b"a" * ALIGN + b"c" * ALIGN, "forgotten bytes are never written"
    finally:
        os.close(good)
        os.close(bad)
        g.close()


def _refusing_direct(real: Callable[[int, Any, int], int], refused: list[int]) -> Callable[[int, Any, int], int]:
    """``real`` (``os.pwrite``, ``os.preadv``) failing with ``EINVAL`` on an ``O_DIRECT`` descriptor, as a device
    wanting a larger alignment does; each offset refused is added to ``refused``."""
    def call(fd: int, data: Any, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)
    return call


def _write_new(path: Path, parts: list[bytes | bytearray | memoryview]) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return write_new_file(fd, path, parts)
    finally:
        os.close(fd)


def test_a_new_file_skips_the_page_cache_but_for_its_tail(tmp_path: Path) -> None:
    parts = [os.urandom(3 * MiB + 5), bytearray(os.urandom(2 * MiB + 100)), memoryview(b"end of it")]
    path = tmp_path / "entry"
    total = sum(len(p) for p in parts)
    assert total > PIECE_BYTES, "crosses a piece of the thread's buffer"
    assert _write_new(path, parts) == total
    pages = cached_pages(path)
    if on_a_disk(path):
        assert not any(pages[:total // PAGE]), "whole blocks went around the page cache"
    assert pages[total // PAGE], "the tail went through it"
    assert path.read_bytes() == b"".join(parts)


PART_SIZES = st.lists(st.one_of(st.integers(0, 3 * ALIGN), st.integers(0, 3 * MiB),
                                st.sampled_from([ALIGN, PIECE_BYTES, PIECE_BYTES - 1, PIECE_BYTES + 1])),
                      max_size=5)


@settings(max_examples=30, deadline=None)
@given(sizes=PART_SIZES, kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_a_new_file_holds_exactly_its_parts(tmp_path_factory, sizes, kind) -> None:
    parts = [kind(bytes([i + 1]) * n) for i, n in enumerate(sizes)]
    path = tmp_path_factory.mktemp("n") / "f"
    assert _write_new(path, parts) == sum(sizes)
    assert path.read_bytes() == b"".join(bytes(p) for p in parts)


def test_a_new_file_where_o_direct_is_refused_goes_through_the_page_cache(tmp_path: Path, monkeypatch) -> None:
    body = os.urandom(PIECE_BYTES + 3 * ALIGN + 17)
    monkeypatch.setattr(directio, "open_direct", lambda path: None)
    assert _write_new(tmp_path / "a", [body]) == len(body)
    assert (tmp_path / "a").read_bytes() == body
    monkeypatch.undo()

    refused: list[int] = []
    monkeypatch.setattr(directio.os, "pwrite", _refusing_direct(os.pwrite, refused))
    assert _write_new(tmp_path / "b", [body[:5], body[5:]]) == len(body)
    monkeypatch.undo()
    assert (tmp_path / "b").read_bytes() == body
    if open_direct(tmp_path / "b") is not None:
        assert refused == [0], "refused once, then the page cache takes every piece"


def test_disk_tier_entries_skip_the_page_cache_both_ways(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path / "cache", 1 << 30)
    xorb = bytes(range(32))
    chunks = [os.urandom(n) for n in (64 * 1024 + 3, 100_000, 131_072, 5)]
    tier.put_range(xorb, 7, chunks)
    [entry] = (tmp_path / "cache" / "chunks").rglob("*.7-11")
    size = entry.stat().st_size
    if on_a_disk(entry):
        assert not any(cached_pages(entry)[:size // PAGE]), "the entry's whole blocks skipped the page cache"
    found, damaged = tier.get_many([(xorb, i) for i in range(7, 11)])
    assert damaged == 0
    assert [found[(xorb, i)] for i in range(7, 11)] == chunks
    if on_a_disk(entry):   # the header went through the page cache (with the kernel's first readahead: a few
        # pages), the chunks around it
        assert not any(cached_pages(entry)[8:size // PAGE]), "the chunks were read around the page cache"


class _Stream:
    """What ``Staging.write`` needs of a ``write.stream.StreamUpload``, around a real ``GrowingFile``."""

    def __init__(self, growing: GrowingFile) -> None:
        self.growing, self.finished = growing, False

    def appended(self, end: int, data: bytes | None = None) -> bool:
        return self.growing.grew(end, data)

    def drop(self) -> None:
        raise AssertionError("appends never drop the stream")


@settings(max_examples=30, deadline=None)
@given(blocks=st.lists(st.integers(1, 3), min_size=1, max_size=12), keep_blocks=st.integers(1, 4),
       taken_every=st.integers(1, 5))
def test_a_stream_that_fell_behind_reads_from_the_file_exactly_what_was_written(tmp_path_factory, blocks,
                                                                               keep_blocks, taken_every) -> None:
    """Appends gathered while a stream keeps only ``keep_blocks`` blocks: what it did not keep it reads from the
    data file, so those bytes must be there at once (``Staging.write`` flushes them). The stream's view of the
    file, kept and read back, is always exactly the bytes written."""
    stage = Staging(tmp_path_factory.mktemp("s"), 1 << 30)
    sf = stage.new_file(0)
    growing = GrowingFile(os.dup(sf.fd), max_buffered_bytes=keep_blocks * ALIGN)
    sf.stream = _Stream(growing)  # type: ignore[assignment]
    written, pos, got = bytearray(), 0, bytearray()
    with block_buffer(64 * ALIGN) as buf:
        for i, n in enumerate(blocks):
            data = os.urandom(n * ALIGN)
            assert stage.write(sf, len(written), data) == len(data)
            written += data
            if i % taken_every == 0 or i == len(blocks) - 1:   # the stream reads up to the end now and then
                got += b"".join(read_segments(growing.fd, growing.take(pos, len(written) - pos), buf))
                pos = len(written)
    assert got == written
    sf.stream = None
    os.close(growing.fd)
    stage.close()


def _spans(draw_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(gap, length) pairs -> ascending (offset, length) spans."""
    spans, at = [], 0
    for gap, n in draw_sizes:
        at += gap
        spans.append((at, n))
        at += n
    return spans


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 5000, ALIGN]),
                                st.one_of(st.integers(1, 200_000), st.sampled_from([PIECE_BYTES, PIECE_BYTES - 1]))),
                      min_size=1, max_size=12))
def test_spans_read_back_exactly_what_pread_gives(tmp_path_factory, sizes) -> None:
    spans = _spans(sizes)
    end = spans[-1][0] + spans[-1][1]
    data = os.urandom(max(0, end - 3))              # the last span runs past the end of the file
    fd = file_not_cached(tmp_path_factory.mktemp("r") / "f", data)
    try:
        assert read_spans(fd, spans) == [os.pread(fd, n, off) for off, n in spans]
    finally:
        os.close(fd)


def test_large_spans_skip_the_page_cache_and_small_ones_do_not(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    path = tmp_path / "entry"
    fd = file_not_cached(path, data)
    try:
        spans = [(100, 70_000), (70_100, 2 * MiB), (3 * MiB - 9, 9)]
        assert read_spans(fd, spans) == [data[o:o + n] for o, n in spans]
        if on_a_disk(path):
            assert not any(cached_pages(path)), "read around the page cache"
        small = [(0, DIRECT_READ_MIN_BYTES // 2)]
        assert read_spans(fd, small) == [data[:DIRECT_READ_MIN_BYTES // 2]]
        assert cached_pages(path)[0], "a small read goes through the page cache"
    finally:
        os.close(fd)


def test_spans_where_o_direct_is_refused_are_read_through_the_page_cache(tmp_path: Path, monkeypatch) -> None:
    data = os.urandom(2 * MiB)
    fd = file_not_cached(tmp_path / "f", data)
    spans = [(1, MiB), (MiB + 1, 5), (MiB + 100, MiB - 200)]
    want = [data[o:o + n] for o, n in spans]
    try:
        monkeypatch.setattr(directio, "open_direct_reader", lambda fd: None)
        assert read_spans(fd, spans) == want
        monkeypatch.undo()
        refused: list[int] = []
        monkeypatch.setattr(directio.os, "preadv", _refusing_direct(os.preadv, refused))
        assert read_spans(fd, spans) == want
        assert refused == [0], "refused once, then the page cache reads every span"
    finally:
        os.close(fd)
