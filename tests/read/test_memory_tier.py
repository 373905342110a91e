"""The memory tier keeps chunks no reader has read yet over chunks already read (``read.memory_tier``): the
bound in bytes holds, the chunk just put stays, read chunks go least recently used first and unread ones
oldest first, and while the unread ones fit their share of the tier a put makes room from the read ones.

Against a real server: a stream's lead for the next file, fetched before the loader reads the rest of the
current file, is still in memory when the loader gets there. A plain LRU evicted it (its chunks were older
than every chunk the loader read since), and the loader fetched them a second time."""
from __future__ import annotations

from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import open_hub
from xetfs.read.cache import ChunkCache
from xetfs.read.memory_tier import AHEAD_SHARE, MemoryTier
from xetfs.read.reader import Fetcher, FileReader
from xetfs.testing.server import ServerHandle, make_bytes, running_server
from xetfs.write.upload import upload_files

MiB = 1 << 20


def test_unread_chunks_outlast_read_ones_within_their_share() -> None:
    tier: MemoryTier[str] = MemoryTier(10)
    tier.put("next1", b"n")
    tier.put("next2", b"n")                      # a lead, not read yet
    for k in "abcdefgh":
        tier.put(k, b"r")
        tier.read([k])                           # the loader reads on: 10 chunks held
    tier.get("a")                                # a read chunk used again
    tier.put("x", b"r")
    tier.put("y", b"r")
    assert "next1" in tier and "next2" in tier
    assert "b" not in tier and "c" not in tier and "a" in tier   # least recently read first
    assert tier.evictions == 2 and tier.size_bytes == 10


def test_past_their_share_the_oldest_unread_chunks_go_first() -> None:
    tier: MemoryTier[int] = MemoryTier(10)
    tier.put(100, b"r")
    tier.read([100])
    for k in range(10):
        tier.put(k, b"u")                        # a readahead nobody reads
    assert 100 in tier and 0 not in tier         # 9 unread: past half the tier, they make room themselves
    assert tier.ahead_bytes == 9


_ops = st.lists(st.tuples(st.sampled_from(["put", "read", "get"]), st.integers(0, 11), st.integers(1, 40)),
                max_size=120)


@given(max_bytes=st.integers(1, 100), ops=_ops)
@settings(max_examples=300, deadline=None)
def test_the_bound_and_the_eviction_order_hold_for_any_sequence(max_bytes: int,
                                                                 ops: list[tuple[str, int, int]]) -> None:
    tier: MemoryTier[int] = MemoryTier(max_bytes)
    ahead: list[int] = []                        # what the tier should hold, in its eviction order
    read: list[int] = []
    sizes: dict[int, int] = {}
    for op, key, size in ops:
        held = {k for k in ahead + read if k in tier}
        assert held == set(ahead + read), "a chunk went without a put making room"
        if op == "read":
            tier.read([key])
            if key in ahead:
                ahead.remove(key)
            if key in sizes:
                read = [k for k in read if k != key] + [key]
            continue
        if op == "get":
            got = tier.get(key)
            assert (got is None) == (key not in sizes)
            if key in read:
                read = [k for k in read if k != key] + [key]
            continue
        data = bytes(size)
        tier.put(key, data)
        if size > max_bytes:
            continue
        was_read = key in read
        ahead_before = sum(sizes[k] for k in ahead if k != key)
        read_before = sum(sizes[k] for k in read if k != key)
        sizes[key] = size
        if was_read:                             # a read chunk put again stays read, the most recently used
            read = [k for k in read if k != key] + [key]
        else:
            ahead = [k for k in ahead if k != key] + [key]
        gone = [k for k in ahead + read if k not in tier]
        assert tier.get(key) is data, "the chunk just put is held"
        assert tier.size_bytes == sum(sizes[k] for k in ahead + read if k in tier) <= max_bytes
        gone_ahead = [k for k in ahead if k in gone]
        gone_read = [k for k in read if k in gone]
        assert gone_ahead == ahead[:len(gone_ahead)], "unread chunks go oldest first"
        assert gone_read == read[:len(gone_read)], "read chunks go least recently used first"
        overflow = ahead_before + read_before + size - max_bytes
        if not was_read and ahead_before + size <= int(max_bytes * AHEAD_SHARE) and read_before >= overflow:
            assert not gone_ahead, "an unread chunk went while read ones could make room"
        for k in gone:
            del sizes[k]
        ahead = [k for k in ahead if k not in gone]
        read = [k for k in read if k not in gone]


def test_the_next_files_lead_is_in_memory_when_the_loader_gets_there(tmp_path: Path) -> None:
    current, lead = make_bytes("random", 16 * MiB, 1), make_bytes("random", 4 * MiB, 2)

    async def settle(fetcher: Fetcher) -> None:
        while fetcher.stats.pending_fetches:     # the background fills end before the next step: no timing
            await trio.sleep(0.001)

    async def main(server: ServerHandle) -> None:
        ref = RepoRef("org/lead")
        async with open_hub(server.url, server.token) as hub:
            result = await upload_files(hub, ref, [(current, "a.bin"), (lead, "b.bin")], "two")
            cas = CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http)
            async with trio.open_nursery() as nursery:
                fetcher = Fetcher(cas, ChunkCache(memory_bytes=16 * MiB), nursery=nursery)
                a = FileReader(cas, result.files["a.bin"].file_hash, len(current), fetcher=fetcher)
                b = FileReader(cas, result.files["b.bin"].file_hash, len(lead), fetcher=fetcher)
                w = await b.prefetch_query(0, len(lead))        # b's stream fetches its lead
                assert w is not None
                await b.prefetch_fill(w)
                fetched = fetcher.stats.bytes_fetched
                assert fetched >= len(lead) // 2          # (compressed: random bytes barely shrink)
                for offset in range(0, len(current), MiB):   # the loader reads the current file, 16 MiB
                    assert await a.read(offset, MiB, fetch_end=offset + MiB) == current[offset:offset + MiB]
                    await settle(fetcher)
                fetched = fetcher.stats.bytes_fetched
                assert await b.read(0, 3 * MiB, fetch_end=3 * MiB) == lead[:3 * MiB]
                await settle(fetcher)
                assert fetcher.stats.bytes_fetched == fetched, "the lead was evicted and fetched again"
                nursery.cancel_scope.cancel()

    with running_server(tmp_path / "server") as server:
        server.create_repo("org/lead")
        trio.run(main, server)
