"""The disk readahead of a first pass over a file leaves out the chunks already asked for: a loader that read
the file's tail first (as glibc's memcpy copies a large tensor) and then reads from the start loads the tail's
chunks from the disk tier once, not a second time when the readahead gets there (the kernel holds their
bytes). A re-read loads them again. (The chunk straddling the tail read's start is needed by both reads.) Against a real server; the second reader finds the file's layout
and chunks in the disk tier, with a memory tier too small to keep the tail until the pass reaches it."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import trio

from xetfs.client.cas import CasClient
from xetfs.client.hub import open_hub
from xetfs.read.cache import ChunkCache, ChunkKey
from xetfs.read.reader import Fetcher, FileReader, Readahead
from xetfs.testing.hub import uploaded_file
from xetfs.testing.server import ServerHandle, make_bytes, running_server

MiB = 1 << 20
SIZE = 20 * MiB
TAIL = 256 * 1024


class CountingCache(ChunkCache):
    """The real two-tier cache, counting the disk-tier loads of each chunk."""

    def __init__(self, memory_bytes: int, cache_dir: Path) -> None:
        super().__init__(memory_bytes=memory_bytes, cache_dir=cache_dir)
        self.loads: Counter[ChunkKey] = Counter()

    def get_many_disk(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, bytes]:
        found = super().get_many_disk(keys)
        self.loads.update(found.keys())
        return found


async def _pass(cas: CasClient, cache_dir: Path, file_hash: object, reads: list[tuple[int, int]],
                memory_bytes: int) -> tuple[bytes, Fetcher, dict[int, int]]:
    """These reads, in order, with the mount's readahead; -> (bytes read, fetcher, disk-tier loads of the
    chunks that lie wholly in the file's last ``TAIL`` bytes, by file offset)."""
    out = bytearray(SIZE)
    async with trio.open_nursery() as nursery:
        cache = CountingCache(memory_bytes, cache_dir)
        fetcher = Fetcher(cas, cache, nursery=nursery)
        reader = FileReader(cas, file_hash, SIZE, fetcher=fetcher)   # type: ignore[arg-type]
        ahead = Readahead(8 * MiB)
        for offset, size in reads:
            out[offset:offset + size] = await reader.read(offset, size, fetch_end=ahead.fetch_end(offset, size))
            while reader.disk_ahead.batches:   # the readahead's disk loads end before the next read: no timing
                await trio.sleep(0.001)
        tail = {at: cache.loads[(c.xorb_hash, c.index)] for at, c in reader.known.run(SIZE - TAIL, SIZE)
                if at >= SIZE - TAIL}
        nursery.cancel_scope.cancel()
    return bytes(out), fetcher, tail


def test_a_first_pass_loads_the_chunks_it_asked_for_out_of_order_once(tmp_path: Path) -> None:
    data = make_bytes("random", SIZE, 9)
    cache_dir = tmp_path / "cache"
    step = 256 * 1024
    tail_first = [(SIZE - TAIL, TAIL)] + [(o, step) for o in range(0, SIZE - TAIL, step)]

    async def main(server: ServerHandle) -> None:
        async with open_hub(server.url, server.token) as hub:
            cas, file_hash = await uploaded_file(hub, "org/tail", data, "f.bin")
            got, _, _ = await _pass(cas, cache_dir, file_hash, [(0, SIZE)], 64 * MiB)   # fills the disk tier
            assert got == data

            got, fetcher, tail = await _pass(cas, cache_dir, file_hash, tail_first, 10 * MiB)
            assert got == data and fetcher.stats.bytes_fetched == 0 and len(tail) >= 2
            assert set(tail.values()) == {1}, tail       # not loaded again when the pass got near them

            got, fetcher, tail = await _pass(cas, cache_dir, file_hash, tail_first + [(SIZE - TAIL, TAIL)], 10 * MiB)
            assert got == data and set(tail.values()) == {2}, tail   # a re-read of the tail loads them again

    with running_server(tmp_path / "server") as server:
        server.create_repo("org/tail")
        trio.run(main, server)
