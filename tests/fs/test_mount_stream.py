"""Whole-model loads through a real FUSE mount whose memory tier is smaller than the model: the background
stream (``FileReader.stream_rest``) runs ahead of the loader by a bounded lead, shard after shard, so no chunk
it fetched is evicted from memory before the loader reads it (nothing is loaded back from the disk tier), and
every byte is fetched once. A model in three shards written by the ``safetensors`` package, random bytes.
``get_tensor`` copies a large tensor with glibc's memcpy, which reads four quarters of it at once: a lead
measured from the furthest byte asked for ran ahead of the three slower quarters, and this test then saw
disk-tier hits in some runs; the lead counts the bytes not yet asked for instead."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.mount import FreshMount, uploaded_repo

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1 << 20
MEMORY = 40 * MiB   # room for the lead (10 MiB here), the loader's readahead and the next shard's start
SHARD_TENSORS = [24 * MiB, 4 * MiB, 16 * MiB, 256 * 1024, 32 * MiB, 8 * MiB, 12 * 1024, 20 * MiB]   # ~104 MiB


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
