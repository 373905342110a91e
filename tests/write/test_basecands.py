"""Base-revision dedup candidates (``xetfs.write.basecands``) without a server: a file's terms + its chunk
list give a partial shard of its xorbs, which a dedup session uses (source ``base_revision``) and merges with
a full listing of the same xorbs; a chunk list that does not fit the terms is refused."""
from __future__ import annotations

import pytest

from xetfs.core.chunking import chunk_data
from xetfs.core.dedup import DedupSession
from xetfs.core.hashing import MerkleHash
from xetfs.core.params import XorbParams
from xetfs.testing.server import make_bytes
from xetfs.core.dedup import layout_shard
from xetfs.write.session import FROM_BASE, FROM_SHARD_CACHE

MiB = 1024 * 1024


def test_a_rewrite_dedups_against_the_base_files_layout() -> None:
    params = XorbParams(max_xorb_bytes=MiB)                    # several xorbs for a 4 MiB file
    other = make_bytes("random", 2 * MiB, seed=1)
    base = make_bytes("random", 4 * MiB, seed=2)
    seed = DedupSession(params)                           # the base file shares its xorbs with another file
    for data in (other, base):
        f = seed.start_file()
        seed.add_chunks(f, chunk_data(data))
        seed.finish_file(f, None)
    _, shard = seed.finish()
    leaves = [(c.hash, c.size) for c in chunk_data(base)]
    terms = next(fi.terms for fi in shard.files if sum(t.unpacked_bytes for t in fi.terms) == len(base))

    cands = layout_shard(terms, leaves)
    used = {x.xorb_hash for x in cands.xorbs}
    assert used == {t.xorb_hash for t in terms}
    for x in cands.xorbs:                                 # the chunks the file uses are listed as in the xorb
        full = next(f for f in shard.xorbs if f.xorb_hash == x.xorb_hash)
        for mine, theirs in zip(x.chunks, full.chunks):
            assert mine.unpacked_bytes == 0 or (mine.chunk_hash, mine.unpacked_bytes) == (
                theirs.chunk_hash, theirs.unpacked_bytes)

    edited = base[:MiB] + make_bytes("random", 256 * 1024, seed=3) + base[MiB + 256 * 1024:]
    s = DedupSession(params)
    s.add_known_shard(cands, FROM_BASE)
    s.add_known_shard(shard, FROM_SHARD_CACHE)            # a full listing of the same xorbs merges
    f = s.start_file()
    s.add_chunks(f, chunk_data(edited))
    s.finish_file(f, None)
    s.finish()
    assert set(s.stats.deduped_by_source) == {FROM_BASE}
    assert len(base) - 256 * 1024 - 2 * 128 * 1024 <= s.stats.deduped_bytes
    assert s.stats.new_bytes <= 256 * 1024 + 2 * 128 * 1024

    with pytest.raises(ValueError):
        layout_shard(terms, leaves[:-1])
    with pytest.raises(ValueError):
        layout_shard(terms, [(h, n + 1) for h, n in leaves])


class _BytesReader:
    """The base file's bytes, read as the mount's reader would return them."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes:
        return self.data[offset:offset + size]


def test_candidates_are_learned_in_the_background_and_a_failure_only_falls_back() -> None:
    import trio

    from xetfs.errors import TransientError
    from xetfs.write.basecands import BaseCandidates

    data = make_bytes("random", 3 * MiB, seed=5)
    seed = DedupSession(XorbParams(max_xorb_bytes=MiB))
    f = seed.start_file()
    seed.add_chunks(f, chunk_data(data))
    file = seed.finish_file(f, None)
    _, shard = seed.finish()

    async def terms(h):
        if h != file:
            raise TransientError("the CAS is down")
        return shard.files[0].terms

    async def main() -> tuple[list, list, list, BaseCandidates]:
        c = BaseCandidates(terms, lambda h, size: _BytesReader(data if h == file else data[::-1]), wait_s=30)
        async with trio.open_nursery() as nursery:
            c.nursery = nursery
            got = await c.shards([(file, len(data))])
            other = MerkleHash(bytes(range(32)))
            down = await c.shards([(other, len(data))])           # no layout: logged, nothing
            c.note_read(file, len(data))
            streamed = await c.for_stream(None)
        return got, down, streamed, c

    got, down, streamed, c = trio.run(main)
    assert {x.xorb_hash for x in got[0].xorbs} == {x.xorb_hash for x in shard.xorbs}
    assert down == [] and c.failed == 1 and c.prepared == 1
    assert streamed == got
