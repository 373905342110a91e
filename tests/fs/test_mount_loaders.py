"""Real loaders on a real FUSE mount: what one ``get_tensor``, a header read and whole-model loads fetch.

One server and one model per module: a ≥ 512 MiB file written by the ``safetensors`` package, random bytes
(nothing dedups or compresses), tensors from 4 KiB to 64 MiB in three dtypes, so the file order (grouped by
dtype) differs from the name order. Every measurement starts on a fresh mount with a fresh cache and counts
the xorb bytes the server sent (its own counter). Bounds hold for the worst of the repeats.
"""
from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.mount import FreshMount, uploaded_repo, xetfs_cli

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

KiB = 1024
MiB = 1024 * KiB
REPEATS = 10
# (name, bytes): realistic sizes; names do not follow the file order (save_file groups by dtype).
TENSORS = [
    ("embed.weight", 64 * MiB), ("norm.a", 4 * KiB), ("h0.attn.q", 16 * MiB), ("h0.attn.k", 4 * MiB),
    ("h0.mlp.up", 48 * MiB), ("h0.bias", 12 * KiB), ("h1.attn.q", 16 * MiB), ("h1.attn.k", 4 * MiB),
    ("h1.mlp.up", 64 * MiB), ("h1.bias", 256 * KiB), ("h2.attn.q", 32 * MiB), ("h2.mlp.up", 64 * MiB),
    ("h2.norm", 8 * KiB), ("h3.mlp.up", 56 * MiB), ("h3.attn.q", 24 * MiB), ("h3.scale", 1 * MiB),
    ("lm_head.weight", 64 * MiB), ("final.norm", 20 * KiB), ("h4.attn.q", 40 * MiB), ("h4.b", 512 * KiB),
]
DTYPES = [np.float32, np.float16, np.int8]


def _write_model(path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(17)
    tensors = {name: np.frombuffer(rng.bytes(n), dtype=DTYPES[i % 3])
               for i, (name, n) in enumerate(TENSORS)}
    save_file(tensors, str(path))


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    from safetensors import safe_open

    tmp = tmp_path_factory.mktemp("loaders")
    src = tmp / "src"
    src.mkdir()
    path = src / "model.safetensors"
    _write_model(path)
    with safe_open(str(path), framework="np") as f:
        digests = {name: _digest(f.get_tensor(name)) for name in f.keys()}
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = path.read_bytes()[8:8 + n]
    import json
    info = {k: v for k, v in json.loads(header).items() if k != "__metadata__"}
    file_order = sorted(info, key=lambda k: info[k]["data_offsets"][0])
    with uploaded_repo(tmp, "org/model", src) as server:
        yield server, path, digests, file_order, 8 + n, tmp


def _fresh(server, tmp: Path, tag: str) -> FreshMount:
    return FreshMount(server, "org/model", tmp, tag)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_one_get_tensor_fetches_about_the_tensor(model, where: str) -> None:
    from safetensors import safe_open

    server, _, digests, file_order, _, tmp = model
    name = {"start": file_order[0], "middle": file_order[len(file_order) // 2], "end": file_order[-1]}[where]
    worst = 0.0
    for i in range(REPEATS):
        with _fresh(server, tmp, f"{where}-{i}") as fresh:
            with safe_open(str(fresh.m.path / "model.safetensors"), framework="np") as f:
                tensor = f.get_tensor(name)
            served = fresh.served()
        assert _digest(tensor) == digests[name]
        worst = max(worst, served - (1.1 * tensor.nbytes + MiB))
    assert worst <= 0, f"{name}: the worst run fetched {worst:.0f} bytes over 1.1 x tensor + 1 MiB"


def test_middle_tensors_of_every_size_fetch_about_the_tensor(model) -> None:
    """Each tensor away from the file's ends, once per fresh mount: 4 KiB ones cost at most 1 MiB."""
    from safetensors import safe_open

    server, _, digests, file_order, _, tmp = model
    for name in file_order[1:-1]:
        with _fresh(server, tmp, "each") as fresh:
            with safe_open(str(fresh.m.path / "model.safetensors"), framework="np") as f:
                tensor = f.get_tensor(name)
            served = fresh.served()
        assert _digest(tensor) == digests[name]
        assert served <= 1.1 * tensor.nbytes + MiB, (name, tensor.nbytes, served)


def test_header_only_open_fetches_the_header(model) -> None:
    from safetensors import safe_open

    server, _, digests, _, header_bytes, tmp = model
    worst = 0.0
    for i in range(REPEATS):
        with _fresh(server, tmp, f"header-{i}") as fresh:
            with safe_open(str(fresh.m.path / "model.safetensors"), framework="np") as f:
                keys = set(f.keys())
            worst = max(worst, fresh.served())
        assert keys == set(digests)
    assert worst <= header_bytes + MiB, worst


def _orders(file_order: list[str]) -> dict[str, list[str]]:
    shuffled = list(file_order)
    random.Random(3).shuffle(shuffled)
    return {"file": list(file_order), "name": sorted(file_order), "random": shuffled}


@pytest.mark.parametrize("order", ["file", "name", "random", "two_phase"])
def test_loading_every_tensor_fetches_the_file_once(model, order: str) -> None:
    from safetensors import safe_open

    server, path, digests, file_order, _, tmp = model
    names = _orders(file_order).get(order, file_order)
    with _fresh(server, tmp, f"all-{order}") as fresh:
        with safe_open(str(fresh.m.path / "model.safetensors"), framework="np") as f:
            if order == "two_phase":   # a lazy loader: the first page of each tensor, then all of them
                for name in sorted(file_order):
                    f.get_slice(name)[:16]
            got = {name: _digest(f.get_tensor(name)) for name in names}
        served = fresh.served()
    assert got == digests
    assert served <= 1.03 * path.stat().st_size, (served, path.stat().st_size)


def test_stats_show_each_open_file_with_its_fetches_and_decisions(model) -> None:
    import json

    from safetensors import safe_open

    server, _, digests, file_order, _, tmp = model
    name = file_order[len(file_order) // 2]
    with _fresh(server, tmp, "stats") as fresh:
        with safe_open(str(fresh.m.path / "model.safetensors"), framework="np") as f:
            tensor = f.get_tensor(name)
            out = json.loads(xetfs_cli("stats", str(fresh.m.path)).stdout)
        after = fresh.m.stats()["open_files"]
    assert _digest(tensor) == digests[name]
    [entry] = [e for e in out["open_files"] if e["path"] == "model.safetensors"]
    assert entry["handles"] >= 1 and entry["bytes_read"] >= tensor.nbytes
    assert tensor.nbytes <= entry["bytes_fetched"] <= min(out["bytes_fetched"], 1.1 * tensor.nbytes + MiB)
    assert entry["decisions"].get("tensor_aligned", 0) >= 1 and entry["decisions"].get("sequential", 0) == 0
    assert [e for e in after if e["path"] == "model.safetensors"] == []   # closed: no longer listed
