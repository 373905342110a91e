"""Global-dedup queries of an upload session run in the background (docs/architecture.md, "Global-dedup queries").

A fake CAS answers key-chunk queries with the shard of the xorbs a first upload stored. It shows:
- the packer does not wait on a block's queries before the next blocks' queries are sent (the fake answers
  nothing until queries of ``dedup_answer_lag_bytes`` later input arrived: a pipeline that waited on each
  block's answers would never get there);
- what is uploaded follows from the data alone: answers delivered in any order, each after any number of
  scheduler turns, give the same shard, the same xorbs and the same counters.
Delays are scheduler checkpoints; the held answers have a safety valve only so that a pipeline that waits on
each block's answers fails the test instead of hanging it (the test asserts that the valve was not used).
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import trio

from xetfs.core.chunking import Chunker
from xetfs.core.hashing import MerkleHash
from xetfs.core.params import GLOBAL_DEDUP_MODULUS, ChunkingParams, XorbParams
from xetfs.core.shard import Shard
from xetfs.core.xorb import BuiltXorb
from xetfs.testing.server import make_bytes
from xetfs.write.session import UploadParams, UploadStats, upload_session

PARAMS = UploadParams(chunking=ChunkingParams.tiny(), xorb=XorbParams(max_xorb_bytes=64 * 1024),
                      read_block_bytes=4096, dedup_lookahead_bytes=16 * 1024, dedup_answer_lag_bytes=16 * 1024)
VALVE_S = 60   # not a timing assertion: see the module docstring
LONG_LAG = replace(PARAMS, dedup_answer_lag_bytes=4 * 1024 * 1024)


class FakeCas:
    """Stores xorbs and shards; answers a query with the stored shard when it lists the chunk."""

    def __init__(self, answer_order: random.Random | None = None, hold_until: int = 0) -> None:
        self.xorbs: dict[MerkleHash, bytes] = {}
        self.shards: list[Shard] = []
        self.known: set[MerkleHash] = set()
        self.queries: list[MerkleHash] = []
        self.rng = answer_order
        self.hold_until = hold_until       # answer nothing until this many queries were sent
        self.enough = trio.Event()
        self.released_by_valve = False

    async def upload_xorb(self, xorb: BuiltXorb) -> bool:
        new = xorb.hash not in self.xorbs
        self.xorbs[xorb.hash] = xorb.data
        return new

    async def upload_shard(self, data: bytes) -> None:
        pass

    def store(self, shard: Shard) -> None:
        self.shards.append(shard)
        self.known.update(MerkleHash(c.chunk_hash) for x in shard.xorbs for c in x.chunks)

    async def query_dedup(self, h: MerkleHash) -> Shard | None:
        self.queries.append(h)
        if len(self.queries) >= self.hold_until:
            self.enough.set()
        with trio.move_on_after(VALVE_S):
            await self.enough.wait()
        if not self.enough.is_set():
            self.released_by_valve = True
            self.enough.set()
        if self.rng is not None:
            for _ in range(self.rng.randrange(200)):
                await trio.lowlevel.checkpoint()
        return next((s for s in self.shards if h in self.known), None)


async def _upload(cas: FakeCas, data: bytes, params: UploadParams = PARAMS) -> tuple[Shard, UploadStats]:
    stats = UploadStats()
    cas_: Any = cas
    async with upload_session(cas_, params, stats=stats) as session:
        await session.add_file(data)
    assert session.shard is not None
    return session.shard, stats


def _eligible(data: bytes) -> int:
    chunks = Chunker(PARAMS.chunking).feed(data)
    return sum(1 for c in chunks[1:] if c.hash.modulo(GLOBAL_DEDUP_MODULUS) == 0)


def _old_and_new() -> tuple[bytes, bytes]:
    old = make_bytes("random", 8 * 1024 * 1024, 11)
    # A new head, the old bytes, a changed middle, the old bytes again: answers matter at several points.
    new = make_bytes("random", 5000, 12) + old[:3_000_000] + make_bytes("random", 70_000, 13) + old[3_000_000:]
    return old, new


def test_queries_of_later_blocks_are_sent_while_earlier_ones_are_in_flight() -> None:
    old, new = _old_and_new()
    assert _eligible(new[:LONG_LAG.dedup_answer_lag_bytes]) >= 2

    async def main() -> tuple[int, UploadStats]:
        seed = FakeCas()
        shard, _ = await _upload(seed, old)
        cas = FakeCas(hold_until=3)   # answers wait for the queries of at least two later blocks
        cas.store(shard)
        _, stats = await _upload(cas, new, LONG_LAG)
        assert not cas.released_by_valve, "the first answer was needed before later blocks were queried"
        return len(cas.queries), stats

    n, stats = trio.run(main)
    assert n >= 3 and stats.dedup_queries == n and stats.dedup_hits > 0
    assert stats.deduped_bytes >= len(old) - 1024 * 1024, stats


def test_what_is_uploaded_does_not_depend_on_when_answers_arrive() -> None:
    old, new = _old_and_new()

    async def main(seed: int | None) -> tuple[Shard, UploadStats, list[MerkleHash], set[MerkleHash]]:
        first = FakeCas()
        shard, _ = await _upload(first, old)
        cas = FakeCas(random.Random(seed) if seed is not None else None)
        cas.store(shard)
        new_shard, stats = await _upload(cas, new)
        return new_shard, stats, sorted(cas.queries), set(cas.xorbs)

    runs = [trio.run(main, seed) for seed in (None, 1, 2, 3)]
    shard, stats, queries, xorbs = runs[0]
    assert stats.dedup_hits > 0 and stats.deduped_bytes > len(old) // 2, stats
    for other in runs[1:]:
        assert other == (shard, stats, queries, xorbs)
