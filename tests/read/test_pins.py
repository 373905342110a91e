"""Pins and the disk tier (read/pins.py, read/disk_tier.py): eviction never takes a pinned file's layout or the
chunk entries its layout names, in this process or another one sharing the cache dir; pinned bytes do not count
against the bound; layouts stored by two processes are merged, not overwritten."""
from __future__ import annotations

from pathlib import Path

from xetfs.read.cache import ChunkCache
from xetfs.read.disk_tier import DiskTier
from xetfs.read.layout import LayoutTerm, decode_layout, encode_layout, merge_into
from xetfs.read.pins import PinNote, add_pins, pinned, protection, remove_pins

FILE_A, FILE_B = bytes([1] * 32), bytes([2] * 32)
XA, XB, XC = bytes([10] * 32), bytes([11] * 32), bytes([12] * 32)


def _store(cache: ChunkCache, xorb: bytes, n: int, size: int) -> LayoutTerm:
    cache.put_many([((xorb, i), bytes([i]) * size) for i in range(n)])
    return LayoutTerm(0, xorb, 0, (size,) * n)


def test_eviction_skips_pinned_layouts_and_their_chunks_and_does_not_count_them(tmp_path: Path) -> None:
    cache = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path, disk_bytes=100_000)
    disk = cache.disk
    assert disk is not None
    term = _store(cache, XA, 4, 10_000)            # 40 KB, pinned below
    disk.put_layout(FILE_A, encode_layout(FILE_A, 40_000, [term]))
    add_pins(tmp_path, [(FILE_A, PinNote("org/m", "main", "a.bin"))])
    assert pinned(tmp_path) == {FILE_A}
    keep = protection(tmp_path)
    assert keep.covers(Path(disk.path_for((XA, 2)))) and not keep.covers(Path(disk.path_for((XB, 0))))

    for x in (XB, XC):                              # 2 x 60 KB of unpinned data: over the bound twice
        _store(cache, x, 6, 10_000)
    assert disk.evictions > 0
    assert disk.get_layout(FILE_A) is not None
    found, corrupt = disk.get_many([(XA, i) for i in range(4)])
    assert len(found) == 4 and corrupt == 0
    assert disk.size_bytes <= 100_000               # the bound holds for the unpinned bytes

    again = DiskTier(tmp_path, 100_000)             # another process: its count leaves the pinned bytes out
    assert again.size_bytes == disk.size_bytes

    assert remove_pins(tmp_path) == 1 and pinned(tmp_path) == set()
    _store(cache, XB, 6, 10_000)
    _store(cache, XC, 6, 10_000)                    # unpinned now: the oldest (A) goes first
    assert disk.get_layout(FILE_A) is None and not disk.get_many([(XA, 0)])[0]


def test_a_pin_made_by_another_process_is_seen_at_the_next_eviction(tmp_path: Path) -> None:
    mount = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path, disk_bytes=50_000)
    assert mount.disk is not None
    term = _store(mount, XA, 3, 10_000)
    other = DiskTier(tmp_path, 1 << 30)             # e.g. xetfs prefetch --pin
    other.put_layout(FILE_B, encode_layout(FILE_B, 30_000, [term]))
    add_pins(tmp_path, [(FILE_B, PinNote())])
    _store(mount, XB, 5, 10_000)                    # the mount's own tier goes over its bound
    assert mount.disk.evictions > 0
    assert len(mount.disk.get_many([(XA, i) for i in range(3)])[0]) == 3


def test_layout_updates_merge_what_another_process_stored(tmp_path: Path) -> None:
    first = LayoutTerm(0, XA, 0, (5, 5))
    second = LayoutTerm(10, XB, 3, (7,))
    a, b = DiskTier(tmp_path, 1 << 20), DiskTier(tmp_path, 1 << 20)
    a.update_layout(FILE_A, lambda old: merge_into(old, FILE_A, 17, [first]))
    b.update_layout(FILE_A, lambda old: merge_into(old, FILE_A, 17, [second]))   # knows only its own term
    stored = a.get_layout(FILE_A)
    assert stored is not None and decode_layout(stored, FILE_A, 17) == [first, second]
    damaged = bytearray(stored)
    damaged[5] ^= 1
    assert decode_layout(merge_into(bytes(damaged), FILE_A, 17, [second]), FILE_A, 17) == [second]
