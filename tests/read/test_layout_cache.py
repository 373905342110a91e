"""File layouts in the disk tier: the format, its checksum, the byte bound, and a real remount-like
read (a fresh reader over the same cache dir, against a real server) that asks for no reconstruction."""
from __future__ import annotations

from pathlib import Path

import pytest
import trio

from xetfs.read.cache import ChunkCache
from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.read.reader import Fetcher, FileReader, Readahead
from xetfs.errors import FormatError
from xetfs.client.hub import open_hub
from xetfs.read.layout import LayoutTerm, decode_layout, encode_layout
from xetfs.core.params import XorbParams
from xetfs.testing.cas import TINY_UPLOAD
from xetfs.testing.hub import uploaded_file
from xetfs.testing.server import ServerHandle, make_bytes, running_server
from xetfs.write.upload import upload_files

FILE = bytes(range(32))
X = bytes(reversed(range(32)))
TERMS = [LayoutTerm(0, X, 3, (100, 200), bytes(32 * [7])), LayoutTerm(300, X, 9, (50,), None)]


def test_layout_roundtrip_and_damage() -> None:
    data = encode_layout(FILE, 350, reversed(TERMS))
    assert decode_layout(data, FILE, 350) == TERMS
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(FormatError):
            decode_layout(bytes(bad), FILE, 350)
    with pytest.raises(FormatError):
        decode_layout(data, X, 350)          # another file's layout
    with pytest.raises(FormatError):
        decode_layout(data[:-1], FILE, 350)


def test_layouts_count_in_the_disk_bound_and_are_evicted(tmp_path: Path) -> None:
    cache = ChunkCache(memory_bytes=1 << 20, cache_dir=tmp_path, disk_bytes=10_000)
    disk = cache.disk
    assert disk is not None
    data = encode_layout(FILE, 350, TERMS)
    disk.put_layout(FILE, data)
    assert disk.size_bytes == len(data) and disk.get_layout(FILE) == data
    disk.put_layout(FILE, data)          # a replacement is not counted twice
    assert disk.size_bytes == len(data)
    cache.put(X, 0, b"x" * 9_900)        # over the bound: the least recently used (the layout) goes first
    assert disk.size_bytes <= 10_000
    assert disk.get_layout(FILE) is None and disk.evictions >= 1


async def _read_all(cas: CasClient, cache_dir: Path, file_hash: object, size: int) -> tuple[bytes, Fetcher]:
    """Read the file sequentially like the mount does (background nursery, readahead), then drain."""
    parts = []
    async with trio.open_nursery() as nursery:
        fetcher = Fetcher(cas, ChunkCache(memory_bytes=64 << 20, cache_dir=cache_dir), nursery=nursery,
                          params=XorbParams.tiny())
        reader = FileReader(cas, file_hash, size, fetcher=fetcher)   # type: ignore[arg-type]
        ahead = Readahead(256 * 1024)
        pos = 0
        while pos < size:
            data = await reader.read(pos, 64 * 1024, fetch_end=ahead.fetch_end(pos, 64 * 1024))
            parts.append(data)
            pos += len(data)
        await fetcher.drain()
        nursery.cancel_scope.cancel()
    return b"".join(parts), fetcher


def test_a_second_reader_on_the_same_cache_dir_needs_no_reconstruction(tmp_path: Path) -> None:
    data = make_bytes("random", 700_000, 3)
    cache_dir = tmp_path / "cache"

    async def main(server: ServerHandle) -> None:
        ref = RepoRef("org/layout")
        async with open_hub(server.url, server.token) as hub:
            result = await upload_files(hub, ref, [(data, "f.bin")], "one", params=TINY_UPLOAD)
            file_hash = result.files["f.bin"].file_hash
            cas = CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http)

            first, f1 = await _read_all(cas, cache_dir, file_hash, len(data))
            assert first == data and f1.stats.reconstructions > 1 and f1.stats.layouts_loaded == 0
            (layout,) = (cache_dir / "layouts").rglob("*.layout")

            second, f2 = await _read_all(cas, cache_dir, file_hash, len(data))
            assert second == data
            assert f2.stats.layouts_loaded == 1 and f2.stats.reconstructions == 0
            assert f2.stats.bytes_fetched == 0 and f2.cache.stats.disk_hits > 0

            raw = bytearray(layout.read_bytes())
            raw[len(raw) // 2] ^= 1
            layout.write_bytes(raw)
            third, f3 = await _read_all(cas, cache_dir, file_hash, len(data))
            assert third == data
            assert f3.cache.stats.disk_corrupt == 1 and f3.stats.layouts_loaded == 0
            assert f3.stats.reconstructions > 0 and f3.stats.bytes_fetched == 0   # chunks still cached
            assert decode_layout(layout.read_bytes(), bytes(file_hash), len(data))   # relearned, rewritten

    with running_server(tmp_path / "server") as server:
        server.create_repo("org/layout")
        trio.run(main, server)


def test_a_read_loads_from_the_disk_tier_only_the_chunks_memory_lacks(tmp_path: Path) -> None:
    """A read whose first chunk memory lacks, and whose next chunks memory holds: only the first is loaded from
    disk (it had loaded the rest of the read's chunks too, when memory held them)."""
    data = make_bytes("random", 4 << 20, 4)
    cache_dir = tmp_path / "cache"

    async def main(server: ServerHandle) -> None:
        async with open_hub(server.url, server.token) as hub:
            cas, file_hash = await uploaded_file(hub, "org/misses", data, "f.bin")
            assert (await _read_all(cas, cache_dir, file_hash, len(data)))[0] == data   # the disk tier holds all

            fetcher = Fetcher(cas, ChunkCache(memory_bytes=1 << 20, cache_dir=cache_dir))   # no background
            reader = FileReader(cas, file_hash, len(data), fetcher=fetcher)
            await reader.known.load()
            run = reader.known.run(len(data) // 2, len(data) // 2 + 1)
            run = reader.known.run(run[0][0], len(data))[:4]             # four chunks in a row
            (a, _), (b, _), (_, last) = run[0], run[1], run[-1]
            end = run[-1][0] + last.size
            assert await reader.read(b, end - b) == data[b:end]           # memory: the last three
            hits = fetcher.cache.stats.disk_hits
            assert await reader.read(a, end - a) == data[a:end]           # the first is missing
            assert fetcher.cache.stats.disk_hits - hits == 1
            assert fetcher.stats.bytes_fetched == 0

    with running_server(tmp_path / "srv") as server:
        server.create_repo("org/misses")
        trio.run(main, server)
