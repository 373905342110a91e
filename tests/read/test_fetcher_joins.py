"""The fetcher fetches each chunk range once, whatever the timing of its callers (docs/architecture.md,
"The read path"). A caller looks in the cache tiers, awaits (a disk load runs in a thread), then starts a
fetch; a fetch of the same chunks may finish during that await. ``start`` must then answer from the memory
tier instead of fetching the range again. The source below is a real xorb served from memory, counting
every range it is asked for."""
from __future__ import annotations

import contextlib

import numpy as np
import trio

from xetfs.core.chunking import Chunk
from xetfs.core.hashing import MerkleHash, chunk_hash
from xetfs.core.reconstruction import FetchRange, Reconstruction
from xetfs.core.xorb import XorbBuilder
from xetfs.read.cache import ChunkCache
from xetfs.read.fetcher import Fetcher


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[tuple[int, int]] = []

    async def reconstruction(self, file_hash: MerkleHash,
                             byte_range: tuple[int, int] | None = None) -> Reconstruction:
        raise AssertionError("not used")

    async def fetch_range_into(self, fr: FetchRange, out: bytearray | memoryview) -> int:
        self.asked.append((fr.byte_start, fr.byte_end))
        piece = self.data[fr.byte_start:fr.byte_end + 1]
        out[:len(piece)] = piece
        return len(piece)

    def open_range(self, fr: FetchRange) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext(None)   # no one-GET body: each piece is asked for above


def _xorb() -> tuple[FetchRange, list[bytes], CountingSource]:
    rng = np.random.default_rng(5)
    chunks = [rng.bytes(4096) for _ in range(8)]
    builder = XorbBuilder()
    for c in chunks:
        builder.add(Chunk(chunk_hash(c), c))
    built = builder.finish()
    fr = FetchRange(built.hash, 0, len(chunks), 0, len(built.data) - 1)
    return fr, chunks, CountingSource(built.data)


def test_a_start_after_the_same_fetch_finished_fetches_nothing() -> None:
    fr, chunks, source = _xorb()

    async def main() -> None:
        fetcher = Fetcher(source, ChunkCache(memory_bytes=1 << 20))
        async with trio.open_nursery() as nursery:
            first = fetcher.start(fr, [], nursery)
            await first.done.wait()
            assert first.result() == chunks
            # the race: this caller looked in the cache before the first fetch finished, and starts now
            again = fetcher.start(fr, [], nursery)
            await again.done.wait()
            assert again.result() == chunks

    trio.run(main)
    assert len(source.asked) == 1, source.asked
