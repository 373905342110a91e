"""Whole-model loads through a real FUSE mount whose memory tier is smaller than the model: the background
stream (``FileReader.stream_rest``) runs ahead of the loader by a bounded lead, shard after shard, so no chunk
it fetched is evicted from memory before the loader reads it (nothing is loaded back from the disk tier), and
every byte is fetched once. A model in three shards written by the ``safetensors`` package, random bytes.
``get_tensor`` copies a large tensor with glibc's memcpy, which reads four quarters of it at once: a lead
measured from the furthest byte asked for ran ahead of the three slower quarters, and this test then saw
disk-tier hits in some runs; the lead counts the bytes not yet asked for instead.

glibc copies a large tensor's tail first, then the rest from its start, and the chunks straddling the ends
of that first read are needed again when the copy gets there. With a plain LRU, a 32 MiB tensor in this 40 MiB
tier saw them evicted by then in some runs (2 disk-tier hits), so the tensors here were kept to 0.4 x the
tier. Those chunks are read in part, and the memory tier now keeps them over the chunks read whole: the
largest tensors here are 0.8 x the tier.

The memory tier evicts chunks the loader asked for whole first, then chunks it asked for in part, and the
chunks fetched ahead and not read yet last (``read.memory_tier``). With a plain LRU this test saw 7 disk-tier
hits in some runs, for two reasons. The next shard's lead, fetched while the loader read the last tensors of
the shard before it, was older than every chunk read since. And glibc copies some tensors from their end
backwards: two such tensors in a row read the chunk straddling them at the start of the first copy and at the
end of the second, 32 MiB of reads apart in this 40 MiB tier.

A loader that pauses between shards, or stops, leaves no stream waiting for it: the next shard's stream
fetches its lead and parks while the shard is not open, and goes on when the loader opens it.

The kernel's page cache holds what the loader read, so the memory tier keeps at most
``CONSUMED_MEMORY_BYTES`` of the chunks read whole: once the model is loaded, that is all it holds (once one
shard is read: that, and the next shard's lead). Read again past the page cache, the chunks come from the
disk tier, byte-exact, and nothing is fetched twice."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from xetfs.core.params import ChunkingParams
from xetfs.fs.mount import CONSUMED_MEMORY_BYTES
from xetfs.read.memory_tier import LEAD_SHARE
from xetfs.testing.files import read_past_page_cache
from xetfs.testing.mount import FreshMount, Mount, uploaded_repo

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1 << 20
MEMORY = 40 * MiB
SHARD_TENSORS = [32 * MiB, 4 * MiB, 32 * MiB, 256 * 1024, 16 * MiB, 8 * MiB, 12 * 1024, 12 * MiB, 32 * MiB,
                 16 * MiB]   # ~152 MiB; the largest tensors are 0.8 x the memory tier


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory):
    from safetensors.numpy import save_file

    tmp = tmp_path_factory.mktemp("stream")
    src = tmp / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    for k in range(1, 4):
        save_file({f"s{k}.t{i}": np.frombuffer(rng.bytes(n), dtype=np.float16 if n % 2 == 0 else np.int8)
                   for i, n in enumerate(SHARD_TENSORS)}, str(src / f"model-0000{k}-of-00003.safetensors"))
    with uploaded_repo(tmp, "org/sharded", src) as server:
        yield server, sorted(src.glob("*.safetensors")), tmp


def _load(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {name: hashlib.sha256(f.get_tensor(name).tobytes()).hexdigest() for name in f.keys()}


@pytest.mark.parametrize("round_", range(3))
def test_a_model_larger_than_the_memory_tier_loads_with_every_chunk_fetched_once_and_none_reloaded(
        shards, round_: int) -> None:
    server, paths, tmp = shards
    want = {}
    for p in paths:
        want.update(_load(p))
    with FreshMount(server, "org/sharded", tmp, str(round_), args=["--memory-cache-size", str(MEMORY)]) as fresh:
        got = {}
        for p in paths:                                   # a loader: shard after shard, tensors in file order
            got.update(_load(fresh.m.path / p.name))
        served = fresh.served()
        stats = fresh.m.stats()
    total = sum(p.stat().st_size for p in paths)
    assert got == want
    assert total > 4 * MEMORY
    assert served <= 1.03 * total, (served, total)
    assert stats["cache"]["disk"]["hits"] == 0, "a chunk was evicted from memory before the loader read it"
    assert stats["cache"]["memory"]["unread_evictions"] == 0, "a chunk was fetched ahead for nothing"
    assert stats["cache"]["memory"]["bytes"] <= CONSUMED_MEMORY_BYTES < MEMORY, stats["cache"]["memory"]


def test_chunks_read_whole_leave_the_memory_tier_and_come_back_from_disk(shards) -> None:
    server, paths, tmp = shards
    with FreshMount(server, "org/sharded", tmp, "reread", args=["--memory-cache-size", str(MEMORY)]) as fresh:
        path = fresh.m.path / paths[0].name
        first = read_past_page_cache(path)
        after_first = fresh.m.stats()
        served = fresh.served()
        again = read_past_page_cache(path)                # the kernel's copy dropped: the mount serves it again
        after_again = fresh.m.stats()
        assert fresh.served() == served, "a chunk was fetched twice"
    assert first == again == paths[0].read_bytes()
    # memory also holds shard 2's lead, fetched but not read yet, to the end of the chunk holding its last byte
    ahead = int(MEMORY * LEAD_SHARE) + ChunkingParams().max_chunk_size
    assert after_first["cache"]["memory"]["bytes"] <= CONSUMED_MEMORY_BYTES + ahead, after_first["cache"]["memory"]
    assert after_again["cache"]["disk"]["hits"] > after_first["cache"]["disk"]["hits"]


def _streams_become(m: Mount, n: int, deadline_s: float = 60.0) -> int:
    """Wait for the mount to count ``n`` running streams (it gets there on its own); the count it reached."""
    end = time.monotonic() + deadline_s
    while (running := m.stats()["pending"]["streams"]) != n and time.monotonic() < end:
        time.sleep(0.05)
    return running


def test_a_stream_parks_while_its_shard_is_not_open_and_goes_on_when_the_loader_opens_it(shards) -> None:
    from safetensors import safe_open

    server, paths, tmp = shards
    want = {}
    for p in paths:
        want.update(_load(p))
    with FreshMount(server, "org/sharded", tmp, "park", args=["--memory-cache-size", str(MEMORY)]) as fresh:
        got = _load(fresh.m.path / paths[0].name)       # shard 1, then a pause with nothing open:
        assert _streams_become(fresh.m, 0) == 0           # shard 2's stream fetched its lead and parked
        with safe_open(str(fresh.m.path / paths[1].name), framework="np") as f:
            assert _streams_become(fresh.m, 1) == 1       # opened: it goes on, up to its lead
            got.update({name: hashlib.sha256(f.get_tensor(name).tobytes()).hexdigest() for name in f.keys()})
        del f
        assert _streams_become(fresh.m, 0) == 0           # shard 3's stream parked in turn
        got.update(_load(fresh.m.path / paths[2].name))
        served = fresh.served()
        stats = fresh.m.stats()
    total = sum(p.stat().st_size for p in paths)
    assert got == want
    assert served <= 1.03 * total, (served, total)
    assert stats["cache"]["disk"]["hits"] == 0, "a chunk was evicted from memory before the loader read it"
    assert stats["cache"]["memory"]["unread_evictions"] == 0, "a chunk was fetched ahead for nothing"
