"""ChunkCache: byte bounds, persistence across instances, damaged entries, LRU eviction, shared directories."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from xetfs.read.cache import ChunkCache
from xetfs.read.disk_tier import HEADER_BYTES

X = bytes(range(32))
Y = bytes(reversed(range(32)))


def test_memory_tier_is_bounded_in_bytes_and_lru() -> None:
    cache = ChunkCache(memory_bytes=10_000)
    for i in range(5):
        cache.put(X, i, bytes([i]) * 3000)
        assert cache.memory_bytes <= 10_000
    assert cache.get(X, 0) is None and cache.get(X, 1) is None
    assert cache.get(X, 4) == bytes([4]) * 3000
    assert cache.stats.memory_hits == 1 and cache.stats.memory_misses == 2
    assert cache.memory.evictions == 2 and cache.snapshot()["memory_evictions"] == 2   # 0 and 1 pushed out
    cache.put(X, 4, bytes([4]) * 3000)                                                  # a replacement is none
    assert cache.memory.evictions == 2


def test_a_chunk_hash_comes_back_only_with_the_very_object_it_was_put_with() -> None:
    """``verified_hash`` binds the hash the fetcher computed to that bytes object: equal bytes in another
    object, a replaced entry or an evicted one give None (the download's check then hashes the bytes)."""
    cache = ChunkCache(memory_bytes=10_000)
    data, h = bytes([1]) * 3000, bytes(range(32))
    cache.put_many([((X, 0), data)], disk=False, hashes=[h])
    assert cache.verified_hash((X, 0), data) == h
    assert cache.verified_hash((X, 0), bytes(bytearray(data))) is None
    assert cache.verified_hash((X, 1), data) is None
    other = bytes([2]) * 3000
    cache.put(X, 0, other)                  # another object under the key, put without a hash
    assert cache.get(X, 0) is other
    assert cache.verified_hash((X, 0), data) is None and cache.verified_hash((X, 0), other) is None
    cache.put_many([((X, 0), data)], disk=False, hashes=[h])
    for i in range(1, 5):                   # pushes key 0 out of the 10 kB bound
        cache.put(X, i, bytes([i]) * 3000)
    assert cache.verified_hash((X, 0), data) is None


def test_disk_tier_survives_a_new_instance(tmp_path: Path) -> None:
    ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path).put(X, 7, b"chunk bytes")
    again = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path)
    assert again.get(X, 7) == b"chunk bytes"
    assert again.get(Y, 7) is None
    assert again.stats.disk_hits == 1 and again.stats.disk_misses == 1
    assert again.get(X, 7) == b"chunk bytes" and again.stats.memory_hits == 1   # promoted to memory


def test_a_damaged_entry_is_dropped_and_reported_as_a_miss(tmp_path: Path) -> None:
    cache = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path)
    cache.put(X, 1, b"a" * 1000)
    cache.put(X, 2, b"b" * 1000)
    assert cache.disk is not None
    p1, p2 = cache.disk.path_for((X, 1)), cache.disk.path_for((X, 2))
    raw = bytearray(p1.read_bytes())
    raw[HEADER_BYTES + 10] ^= 1
    p1.write_bytes(bytes(raw))
    p2.write_bytes(p2.read_bytes()[:HEADER_BYTES + 5])      # truncated
    fresh = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path)
    assert fresh.get(X, 1) is None and fresh.get(X, 2) is None
    assert fresh.stats.disk_corrupt == 2
    assert not p1.exists() and not p2.exists()


def test_disk_tier_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = ChunkCache(memory_bytes=1, cache_dir=tmp_path, disk_bytes=10 * (HEADER_BYTES + 1000))
    assert cache.disk is not None
    for i in range(8):
        cache.put(X, i, bytes([i]) * 1000)
        os.utime(cache.disk.path_for((X, i)), (1000 + i, 1000 + i))
    os.utime(cache.disk.path_for((X, 0)), (5000, 5000))      # chunk 0 was used most recently
    for i in range(8, 12):
        cache.put(Y, i, bytes([i]) * 1000)
    assert cache.disk.size_bytes <= 10 * (HEADER_BYTES + 1000)
    assert cache.get(X, 0) == bytes([0]) * 1000
    assert cache.get(X, 1) is None
    assert cache.get(Y, 11) == bytes([11]) * 1000


def test_two_caches_sharing_a_directory_write_the_same_keys(tmp_path: Path) -> None:
    caches = [ChunkCache(memory_bytes=1, cache_dir=tmp_path) for _ in range(2)]
    data = {i: os.urandom(5000) for i in range(50)}

    def fill(cache: ChunkCache) -> None:
        for i, d in data.items():
            cache.put(X, i, d)

    threads = [threading.Thread(target=fill, args=(c,)) for c in caches for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = ChunkCache(memory_bytes=1, cache_dir=tmp_path)
    assert all(reader.get(X, i) == d for i, d in data.items())
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_the_disk_tier_never_stores_a_chunk_twice(tmp_path: Path) -> None:
    cache = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path)
    disk = cache.disk
    assert disk is not None
    chunk = [bytes([i]) * 1000 for i in range(10)]
    cache.put_disk([((X, i), chunk[i]) for i in range(2, 5)])
    cache.put_disk([((X, i), chunk[i]) for i in range(0, 8)])        # overlaps both ends of the first
    cache.put_disk([((X, i), chunk[i]) for i in range(3, 4)])        # held already
    names = sorted(p.name.split(".")[1] for p in (tmp_path / "chunks").rglob(f"{X.hex()}.*"))
    assert names == ["0-2", "2-5", "5-8"]
    stored = sum(p.stat().st_size for p in (tmp_path / "chunks").rglob(f"{X.hex()}.*"))
    assert stored == disk.size_bytes and stored < 8 * 1000 + 3 * HEADER_BYTES + 8 * 20
    fresh = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path)
    assert [fresh.get(X, i) for i in range(8)] == chunk[:8]


def test_the_bound_on_consumed_chunks_holds_only_over_a_disk_tier(tmp_path: Path) -> None:
    """Chunks readers asked for whole leave memory past ``consumed_memory_bytes`` only when the disk tier holds
    them too; without one, memory is their only copy and keeps them up to its own bound."""
    for cache_dir, kept in ((tmp_path, 1), (None, 3)):
        cache = ChunkCache(memory_bytes=10_000, cache_dir=cache_dir, consumed_memory_bytes=3000)
        for i in range(3):
            cache.put(X, i, bytes([i]) * 3000)
        cache.mark_read([], [(X, i) for i in range(3)])
        assert sum(cache.in_memory((X, i)) for i in range(3)) == kept, cache_dir
        assert cache.memory_bytes == kept * 3000
