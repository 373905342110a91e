"""A writable mount deduplicates a rewrite against the mounted revision's file before asking the server
(xetfs.write.basecands; docs/architecture.md, "The write path", dedup sources).

A 64 MiB safetensors file (8 tensors, written with the ``safetensors`` package) is uploaded with ``xetfs
upload`` and a cache dir the mount never sees, so the mount's local shard cache is empty. Through the mount
the file is loaded, one 8 MiB tensor changed, and the whole file saved again by the ``safetensors`` package
(a temp file streamed while written, then renamed over the file: the candidates are the files read since the
mount); then another tensor is overwritten in place (the candidates: the file the path holds, which this
mount uploaded itself); then the file is rewritten whole through O_TRUNC with a third tensor changed. For
each save, exactly:
- the new chunk bytes are the bytes of the chunks of the new file that the old one does not have (``ideal``,
  at most the tensor plus one maximal chunk on each side), and the server stores no more than those plus the
  chunk headers;
- every other byte is deduplicated from source ``base_revision``;
- the server answers exactly as many global-dedup queries as the new file has query-eligible NEW chunks (its
  first chunk or hash % 1024 == 0): none for the unchanged chunks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xetfs.core.chunking import chunk_data
from xetfs.core.params import DEFAULT_CHUNKING, GLOBAL_DEDUP_MODULUS
from xetfs.core.xorb import CHUNK_HEADER_BYTES
from xetfs.testing.mount import mounted, wait_committed, xetfs_cli
from xetfs.testing.server import running_server

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
XORB_BYTES = "xetfs_cas_xorb_upload_bytes_total"
QUERIES = "xetfs_cas_dedup_queries_total"
NAME = "model.safetensors"


def _expected(old: bytes, new: bytes) -> tuple[int, int, int]:
    """(new chunk bytes, new chunks, global-dedup queries) of uploading ``new`` with ``old`` known."""
    known = {c.hash for c in chunk_data(old)}
    fresh: dict[bytes, int] = {}
    queried = set()
    for i, c in enumerate(chunk_data(new)):
        if c.hash in known or c.hash in fresh:
            continue
        fresh[c.hash] = c.size
        if i == 0 or c.hash.modulo(GLOBAL_DEDUP_MODULUS) == 0:
            queried.add(c.hash)
    return sum(fresh.values()), len(fresh), len(queried)


def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        start, end = json.loads(f.read(n))[name]["data_offsets"]
    return 8 + n + start, 8 + n + end


def _check(srv_before: dict[str, float], srv_after: dict[str, float], write: dict, old: bytes, new: bytes,
           tensor_bytes: int | None = None) -> None:
    """The save's commit against the ``ideal`` of ``_expected`` (with ``tensor_bytes``, the size of the one
    changed span, the ideal is also checked to be about it: at most one maximal chunk on each side)."""
    ideal, n_new, queries = _expected(old, new)
    if tensor_bytes is not None:
        assert tensor_bytes <= ideal <= tensor_bytes + 2 * DEFAULT_CHUNKING.max_chunk_size
    commit = write["recent_commits"][-1]
    assert commit["new_bytes"] == ideal, commit
    assert commit["deduplicated_bytes"] == len(new) - ideal, commit
    assert commit["deduplicated_by_source"] == {"base_revision": len(new) - ideal}, commit
    stored = srv_after[XORB_BYTES] - srv_before.get(XORB_BYTES, 0.0)
    assert stored <= ideal + n_new * CHUNK_HEADER_BYTES, (stored, ideal)
    assert srv_after.get(QUERIES, 0.0) - srv_before.get(QUERIES, 0.0) == queries


def test_a_rewrite_dedups_against_the_mounted_revision_without_asking_the_server(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(11)
    tensors = {f"layer{i}": rng.standard_normal(2 * MiB, dtype=np.float32) for i in range(8)}   # 8 MiB each
    seed = tmp_path / "seed"
    seed.mkdir()
    save_file(tensors, str(seed / NAME))
    v1 = (seed / NAME).read_bytes()
    tensors["layer5"] = rng.standard_normal(2 * MiB, dtype=np.float32)
    save_file(tensors, str(tmp_path / "v2"))
    v2 = (tmp_path / "v2").read_bytes()
    a, b = _tensor_span(tmp_path / "v2", "layer2")
    patch = rng.standard_normal((b - a) // 4, dtype=np.float32).tobytes()
    v3 = v2[:a] + patch + v2[b:]
    c, d = _tensor_span(tmp_path / "v2", "layer7")
    v4 = v3[:c] + rng.standard_normal((d - c) // 4, dtype=np.float32).tobytes() + v3[d:]

    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/m")
        xetfs_cli("upload", "org/m", str(seed), "--endpoint", srv.url, "--cache-dir", str(tmp_path / "seed-cache"),
                  env={"XETFS_TOKEN": srv.token})
        with mounted(srv, "org/m", tmp_path / "mnt", cache_dir=tmp_path / "mount-cache") as m:
            loaded = load_file(str(m.path / NAME))          # the application loads the model ...
            loaded["layer5"] = tensors["layer5"]             # ... changes one tensor and saves it again
            before = srv.metrics()
            save_file(loaded, str(m.path / NAME))
            write = wait_committed(m)
            _check(before, srv.metrics(), write, v1, v2, 8 * MiB)

            before = srv.metrics()                          # an edit in place of another tensor
            with open(m.path / NAME, "r+b") as f:
                f.seek(a)
                f.write(patch)
            write = wait_committed(m)
            _check(before, srv.metrics(), write, v2, v3, b - a)

            before = srv.metrics()                          # rewritten whole (O_TRUNC) without reading it first
            with open(m.path / NAME, "wb") as f:
                f.write(v4)
            write = wait_committed(m)
            _check(before, srv.metrics(), write, v3, v4, d - c)
        with mounted(srv, "org/m", tmp_path / "check", cache_dir=tmp_path / "check-cache") as m:
            assert (m.path / NAME).read_bytes() == v4


def test_a_checkpoint_saved_again_and_again_to_one_path_fetches_nothing(tmp_path: Path) -> None:
    """A training loop saves its checkpoint to the same path through the mount, changing one tensor each time
    and never reading it. Each save deduplicates against the file the previous save committed, whose layout
    the mount's own upload handed over: nothing is fetched to learn it (it used to fetch the whole file), and
    each save stores only the chunks of the tensor it changed."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(12)
    tensors = {f"layer{i}": rng.standard_normal(MiB, dtype=np.float32) for i in range(8)}   # 4 MiB each
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/ckpt")
        with mounted(srv, "org/ckpt", tmp_path / "mnt", cache_dir=tmp_path / "cache") as m:
            old = b""
            for step in range(4):
                if step:
                    tensors[f"layer{step}"] = rng.standard_normal(MiB, dtype=np.float32)
                save_file(tensors, str(tmp_path / "ckpt"))
                new = (tmp_path / "ckpt").read_bytes()
                before = srv.metrics()
                save_file(tensors, str(m.path / NAME))
                write = wait_committed(m)
                assert m.stats()["bytes_fetched"] == 0, step
                if step:
                    _check(before, srv.metrics(), write, old, new)
                old = new
            assert write["commits"] == 4
        with mounted(srv, "org/ckpt", tmp_path / "check", cache_dir=tmp_path / "check-cache") as m:
            assert (m.path / NAME).read_bytes() == old
