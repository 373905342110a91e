"""Global dedup answers that find the neighbours: hf_xet with an empty cache re-uploads a re-saved model.

A 3-shard safetensors model (>= 256 MiB) is uploaded with huggingface_hub/hf_xet; one 8 MiB tensor changes
and the model is saved again with different shard boundaries, then uploaded by a fresh hf_xet (new
``HF_HOME``). The new xorb bytes the server stores must be <= 1.5 x the ideal + 1 MiB, where the ideal is
the bytes of the chunks of the new files that the old files do not have.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.params import GLOBAL_DEDUP_MODULUS
from xetfs.core.shard import parse_shard
from xetfs.testing.server import HF_CLIENT_ENV, ServerHandle, running_server

MiB = 1024 * 1024
XORB_BYTES = "xetfs_cas_xorb_upload_bytes_total"
N_TENSORS = 36                      # 8 MiB each: 288 MiB


def _tensors(changed: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out = {f"layer{i:02d}": rng.standard_normal(2 * MiB, dtype=np.float32) for i in range(N_TENSORS)}
    if changed:
        out["layer17"] = np.random.default_rng(8).standard_normal(2 * MiB, dtype=np.float32)
    return out


def _save(folder: Path, tensors: dict[str, np.ndarray], cuts: list[int]) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    names = sorted(tensors)
    bounds = [0, *cuts, len(names)]
    for i in range(len(bounds) - 1):
        part = {n: tensors[n] for n in names[bounds[i]:bounds[i + 1]]}
        save_file(part, str(folder / f"model-{i + 1:05d}-of-{len(bounds) - 1:05d}.safetensors"))


def _upload(srv: ServerHandle, folder: Path, home: Path) -> None:
    """``upload_folder`` in a fresh process with its own ``HF_HOME`` (an empty hf_xet cache)."""
    code = ("import sys; from huggingface_hub import HfApi; "
            "HfApi(endpoint=sys.argv[1], token=sys.argv[2]).upload_folder(repo_id='org/model', "
            "folder_path=sys.argv[3], commit_message='save')")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HF_HOME": str(home / "hf"), **HF_CLIENT_ENV}
    subprocess.run([sys.executable, "-c", code, srv.url, srv.token, str(folder)], env=env, check=True,
                   timeout=600)


def _chunk_sizes(folder: Path) -> dict[bytes, int]:
    return {bytes(c.hash): c.size for p in sorted(folder.iterdir()) for c in chunk_data(p.read_bytes())}


def _check_hit_names_neighbours(srv: ServerHandle, old: Path) -> None:
    """A key chunk from inside a file (not its first), asked by a token of ANOTHER repo: the answer names
    every xorb of the file that holds it (not just the one xorb of the chunk)."""
    srv.create_repo("org/other")
    status, _, body = srv.request("GET", "/api/models/org/other/xet-write-token/main")
    other = json.loads(body)["accessToken"]
    files = [chunk_data(p.read_bytes()) for p in sorted(old.iterdir())]
    chunks, key = next((cs, c.hash) for cs in files for c in cs[1:] if c.hash.modulo(GLOBAL_DEDUP_MODULUS) == 0)
    status, _, answer = srv.request("GET", f"/v1/chunks/default/{key}", token=other)
    assert status == 200
    named = {str(x.xorb_hash) for x in parse_shard(answer).xorbs}
    file_id = str(file_hash_of(chunks))
    status, _, body = srv.request("GET", f"/v1/reconstructions/{file_id}", token=srv_read_token(srv))
    assert status == 200, body
    have = {t["hash"] for t in json.loads(body)["terms"]}
    assert len(have) >= 2 and have <= named, (len(have), len(named))


def srv_read_token(srv: ServerHandle) -> str:
    status, _, body = srv.request("GET", "/api/models/org/model/xet-read-token/main")
    assert status == 200, body
    return str(json.loads(body)["accessToken"])


def test_hf_xet_fresh_cache_reupload_of_a_resaved_model(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _save(old, _tensors(changed=False), [12, 24])
    _save(new, _tensors(changed=True), [9, 22])
    old_chunks, new_chunks = _chunk_sizes(old), _chunk_sizes(new)
    ideal = sum(size for h, size in new_chunks.items() if h not in old_chunks)
    assert 8 * MiB <= ideal <= 10 * MiB
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/model")
        _upload(srv, old, tmp_path / "home1")
        before = srv.metrics()[XORB_BYTES]
        _upload(srv, new, tmp_path / "home2")
        uploaded = srv.metrics()[XORB_BYTES] - before
        status, _, body = srv.request("GET", "/api/models/org/model/tree/main")
        assert status == 200 and len(json.loads(body)) == 3
        _check_hit_names_neighbours(srv, old)
    print(f"new xorb bytes {uploaded / MiB:.2f} MiB, ideal {ideal / MiB:.2f} MiB")
    assert uploaded <= 1.5 * ideal + MiB, (uploaded / MiB, ideal / MiB)
