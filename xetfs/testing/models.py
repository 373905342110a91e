"""Sharded safetensors models for write tests and benchmarks, and the ideal upload of a re-save.

``model_tensors(changed)``: 36 float32 tensors of 8 MiB (288 MiB); ``changed`` replaces ``CHANGED``.
``save_sharded(folder, tensors, cuts)``: the tensors in sorted order, cut into shards at ``cuts`` (written
with the ``safetensors`` package, as ``save_pretrained`` does). ``chunk_listing(folder)``: hash -> size of
every chunk ``xetfs chunks`` lists for the folder's files; ``ideal_bytes(old, new)``: the bytes of the
chunks of ``new`` that ``old`` does not have (what a perfect deduplicating upload sends).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
N_TENSORS = 36
CHANGED = "layer17"


def model_tensors(changed: bool) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(7)
    out = {f"layer{i:02d}": rng.standard_normal(2 * MiB, dtype=np.float32) for i in range(N_TENSORS)}
    if changed:
        out[CHANGED] = np.random.default_rng(8).standard_normal(2 * MiB, dtype=np.float32)
    return out


def save_sharded(folder: Path, tensors: dict[str, Any], cuts: list[int]) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    bounds = [0, *cuts, len(names)]
    for i in range(len(bounds) - 1):
        part = {n: tensors[n] for n in names[bounds[i]:bounds[i + 1]]}
        save_file(part, str(folder / f"model-{i + 1:05d}-of-{len(bounds) - 1:05d}.safetensors"))


def chunk_listing(folder: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in sorted(folder.iterdir()):
        listing = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "chunks", str(p)], check=True,
                                 capture_output=True, text=True).stdout
        for line in listing.splitlines():
            _, size, h = line.split()
            out[h] = int(size)
    return out


def ideal_bytes(old: Path, new: Path) -> int:
    before = chunk_listing(old)
    return sum(size for h, size in chunk_listing(new).items() if h not in before)
