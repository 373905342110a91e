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

from xetfs.client.hub import open_hub
from xetfs.read.cache import ChunkCache
from xetfs.read.memory_tier import AHEAD_SHARE, MemoryTier
from xetfs.read.reader import Fetcher, FileReader
from xetfs.testing.hub import uploaded_file
from xetfs.testing.server import ServerHandle, make_bytes, running_server

MiB = 1 << 20


def test_unread_chunks_outlast_read_ones_within_their_share() -> None:
    tier: MemoryTier[str] = MemoryTier(10)
    tier.put("next1", b"n")
    tier.put("next2", b"n")                      # a lead, not read yet
    for k in "abcdefgh":
        tier.put(k, b"r")
        tier.read([k])                           # the loader reads on: 10 chunks held
    tier.get("a")                                # a partly read chunk used again
    tier.put("x", b"r")
    tier.put("y", b"r")
    assert "next1" in tier and "next2" in tier
    assert "b" not in tier and "c" not in tier and "a" in tier   # least recently used first
    assert tier.evictions == 2 and tier.size_bytes == 10 and tier.unread_evictions == 0


def test_consumed_chunks_go_before_partly_read_ones() -> None:
    """A loader copying two tensors from their ends backwards: the chunk straddling them is read in part at
    the start of the first copy and needed again at the end of the second."""
    tier: MemoryTier[str] = MemoryTier(10)
    tier.put("edge", b"e")
    tier.read(["edge"])                          # the first tensor's last bytes: part of the chunk
    for k in "abcdefghijklmnop":                 # 16 chunks read whole through a tier of 10
        tier.put(k, b"c")
        tier.read([], [k])
    assert "edge" in tier and "a" not in tier and "p" in tier
    tier.read([], ["edge"])                      # the second tensor's first bytes: all of it now asked for
    tier.put("q", b"c")
    tier.put("r", b"c")
    assert "edge" in tier                        # consumed now: last of its queue, behind "j" to "p"
    assert tier.evictions == 9 and tier.unread_evictions == 0


def test_past_their_share_the_oldest_unread_chunks_go_first() -> None:
    tier: MemoryTier[int] = MemoryTier(10)
    tier.put(100, b"r")
    tier.read([100])
    for k in range(10):
        tier.put(k, b"u")                        # a readahead nobody reads
    assert 100 in tier and 0 not in tier         # 9 unread: past half the tier, they make room themselves
    assert tier.ahead_bytes == 9 and tier.unread_evictions == 1


def test_past_their_own_bound_consumed_chunks_go_at_once() -> None:
    """A sequential read in the mount: each chunk put ahead, then read whole. The consumed ones past their bound
    go at once, oldest first; chunks read in part and chunks not read yet stay."""
    tier: MemoryTier[str] = MemoryTier(10, consumed_max_bytes=3)
    tier.put("edge", b"e")
    tier.read(["edge"])                          # read in part
    tier.put("lead", b"l")                       # not read yet
    for k in "abcdefgh":
        tier.put(k, b"c")
        tier.read([], [k])
    assert [k for k in "abcdefgh" if k in tier] == ["f", "g", "h"]
    assert "edge" in tier and "lead" in tier and tier.size_bytes == 5
    assert tier.evictions == 5 and tier.unread_evictions == 0
    tier.put("h", b"C")                          # put again: still consumed, and it stays
    assert tier.get("h") == b"C"
    none: MemoryTier[str] = MemoryTier(10, consumed_max_bytes=0)
    none.put("x", b"x")
    none.read([], ["x"])
    assert "x" not in none
    none.put("y", b"y")
    none.read([], ["y"])
    none.put("y", b"Y")                          # the chunk just put always stays, even past the bound
    assert none.get("y") == b"Y"


_ops = st.lists(st.tuples(st.sampled_from(["put", "partly", "consumed", "get"]), st.integers(0, 11),
                          st.integers(1, 40)), max_size=120)


class _Model:
    """What the tier should hold: each queue in its eviction order, first out first."""

    def __init__(self) -> None:
        self.queues: dict[str, list[int]] = {"ahead": [], "partly": [], "consumed": []}
        self.sizes: dict[int, int] = {}

    def queue_of(self, key: int) -> str | None:
        return next((name for name, q in self.queues.items() if key in q), None)

    def to_end(self, key: int, name: str) -> None:
        for q in self.queues.values():
            if key in q:
                q.remove(key)
        self.queues[name].append(key)

    def held(self) -> list[int]:
        return [k for q in self.queues.values() for k in q]

    def bytes(self, name: str, but: int) -> int:
        return sum(self.sizes[k] for k in self.queues[name] if k != but)


@given(max_bytes=st.integers(1, 100), ops=_ops)
@settings(max_examples=300, deadline=None)
def test_the_bound_and_the_eviction_order_hold_for_any_sequence(max_bytes: int,
                                                                 ops: list[tuple[str, int, int]]) -> None:
    tier: MemoryTier[int] = MemoryTier(max_bytes)
    model = _Model()
    share = int(max_bytes * AHEAD_SHARE)
    for op, key, size in ops:
        assert {k for k in model.held() if k in tier} == set(model.held()), "a chunk went without a put"
        if op in ("partly", "consumed"):
            tier.read(*([[key], []] if op == "partly" else [[], [key]]))
            if key in model.sizes:
                model.to_end(key, op)
            continue
        if op == "get":
            assert (tier.get(key) is None) == (key not in model.sizes)
            if model.queue_of(key) == "partly":
                model.to_end(key, "partly")
            continue
        data = bytes(size)
        tier.put(key, data)
        if size > max_bytes:
            continue
        name = model.queue_of(key) or "ahead"
        before = {n: model.bytes(n, but=key) for n in model.queues}
        model.sizes[key] = size
        model.to_end(key, name)
        assert tier.get(key) is data, "the chunk just put is held"
        if name == "partly":
            model.to_end(key, "partly")          # (the get above)
        gone = {n: [k for k in q if k not in tier] for n, q in model.queues.items()}
        assert tier.size_bytes == sum(model.sizes[k] for k in model.held() if k in tier) <= max_bytes
        for n, q in model.queues.items():
            assert gone[n] == q[:len(gone[n])], f"{n}: evicted out of order"
        overflow = sum(before.values()) + size - max_bytes
        if name == "ahead" and before["ahead"] + size <= share:
            if before["consumed"] + before["partly"] >= overflow:
                assert not gone["ahead"], "an unread chunk went while read ones could make room"
            if before["consumed"] >= overflow:
                assert not gone["partly"], "a partly read chunk went while consumed ones could make room"
        for n in model.queues:
            for k in gone[n]:
                del model.sizes[k]
            model.queues[n] = [k for k in model.queues[n] if k not in gone[n]]


def test_the_next_files_lead_is_in_memory_when_the_loader_gets_there(tmp_path: Path) -> None:
    current, lead = make_bytes("random", 16 * MiB, 1), make_bytes("random", 4 * MiB, 2)

    async def settle(fetcher: Fetcher) -> None:
        while fetcher.stats.pending_fetches:     # the background fills end before the next step: no timing
            await trio.sleep(0.001)

    async def main(server: ServerHandle) -> None:
        async with open_hub(server.url, server.token) as hub:
            cas, a_hash = await uploaded_file(hub, "org/lead", current, "a.bin")
            _, b_hash = await uploaded_file(hub, "org/lead", lead, "b.bin")
            async with trio.open_nursery() as nursery:
                fetcher = Fetcher(cas, ChunkCache(memory_bytes=16 * MiB), nursery=nursery)
                a = FileReader(cas, a_hash, len(current), fetcher=fetcher)
                b = FileReader(cas, b_hash, len(lead), fetcher=fetcher)
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


def _pages_down(start: int, end: int, step: int = 33 * 4096) -> list[tuple[int, int]]:
    """The kernel's reads for a copy of ``[start, end)`` out of a mapping, from its end backwards: whole
    pages, ``step`` bytes at a time."""
    lo, hi = start // 4096 * 4096, -(-end // 4096) * 4096
    return [(max(lo, at - step), at) for at in range(hi, lo, -step)]


def test_the_chunk_between_two_tensors_copied_backwards_is_fetched_once(tmp_path: Path) -> None:
    """glibc's memcpy copies some tensors from their end backwards. Two such tensors in a row ask for the
    chunk that straddles them at the start of the first copy and at the end of the second, 16 MiB of reads
    apart here, through a 12 MiB tier: it is kept as a chunk read in part (a plain LRU, or one queue for all
    read chunks, fetched it again); the chunks read whole make room."""
    edge = 8 * MiB + 12_345
    data = make_bytes("random", 16 * MiB, 3)

    async def main(server: ServerHandle) -> None:
        async with open_hub(server.url, server.token) as hub:
            cas, file_hash = await uploaded_file(hub, "org/backwards", data, "m.bin")
            fetched = []
            for reads in ([(0, len(data))], _pages_down(0, edge) + _pages_down(edge, len(data))):
                async with trio.open_nursery() as nursery:
                    fetcher = Fetcher(cas, ChunkCache(memory_bytes=(64 if len(reads) == 1 else 12) * MiB),
                                      nursery=nursery)
                    reader = FileReader(cas, file_hash, len(data), fetcher=fetcher)
                    for start, end in reads:
                        assert await reader.read(start, end - start, fetch_end=end) == data[start:end]
                        while fetcher.stats.pending_fetches:   # background fills end first: no timing
                            await trio.sleep(0.001)
                    straddling = [at for at, c in reader.known.run(edge - 1, edge + 1) if at < edge < at + c.size]
                    fetched.append(fetcher.stats.bytes_fetched)
                    nursery.cancel_scope.cancel()
            assert straddling, "a chunk straddles the two tensors"
            assert fetched[1] == fetched[0], "a chunk was fetched twice"

    with running_server(tmp_path / "server") as server:
        server.create_repo("org/backwards")
        trio.run(main, server)


@given(max_bytes=st.integers(1, 100), consumed_max=st.integers(0, 120), ops=_ops)
@settings(max_examples=300, deadline=None)
def test_the_consumed_bound_holds_and_changes_nothing_when_it_is_the_tiers(max_bytes: int, consumed_max: int,
                                                                          ops: list[tuple[str, int, int]]) -> None:
    bounded: MemoryTier[int] = MemoryTier(max_bytes, consumed_max_bytes=consumed_max)
    plain: MemoryTier[int] = MemoryTier(max_bytes)
    same: MemoryTier[int] = MemoryTier(max_bytes, consumed_max_bytes=max_bytes)
    queue: dict[int, str] = {}                   # key -> the queue it is in, as the reads and puts say
    sizes: dict[int, int] = {}
    for op, key, size in ops:
        just_put = None
        for tier in (bounded, plain, same):
            if op == "put":
                tier.put(key, bytes(size))
            elif op == "get":
                tier.get(key)
            else:
                tier.read(*([[key], []] if op == "partly" else [[], [key]]))
        if op == "put" and size <= max_bytes:
            queue.setdefault(key, "ahead")
            sizes[key] = size
            just_put = key
        elif op in ("partly", "consumed") and key in queue:
            queue[key] = op
        for k in [k for k in queue if k not in bounded]:
            del queue[k]
        assert bounded.size_bytes <= max_bytes
        if just_put is not None:
            assert just_put in bounded, "the chunk just put is held"
        consumed = sum(sizes[k] for k, q in queue.items() if q == "consumed" and k != just_put)
        assert consumed <= consumed_max, "consumed chunks past their bound"
        assert [k for k in range(12) if k in same] == [k for k in range(12) if k in plain]
        assert (same.evictions, same.unread_evictions) == (plain.evictions, plain.unread_evictions)
