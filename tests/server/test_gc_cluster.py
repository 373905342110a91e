"""``xetfs gc`` on a cluster: two ``xetfs serve`` nodes sharing PostgreSQL and a SeaweedFS bucket. A repo
written through node A is deleted; the collector (``--db``, ``--storage``) removes exactly its xorbs (and its
inline files' blobs) from the index and the bucket, a repo written through node B that shares its chunks stays byte-exact on both
nodes, and two collectors never run at once (the lease)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.core.gitblob import git_blob_oid
from xetfs.testing.deps import required
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes

psycopg = required("psycopg")
required("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture
def cluster(weed: SeaweedFSHandle, pg: PostgresHandle, tmp_path: Path) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    with two_nodes(weed, pg, tmp_path) as nodes:
        yield nodes


def _opt(node: ServerHandle, flag: str) -> str:
    return node.extra_args[node.extra_args.index(flag) + 1]


def _gc(node: ServerHandle, weed: SeaweedFSHandle, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "xetfs.cli.main", "gc", "--data", str(node.data_dir), "--json",
           "--db", _opt(node, "--db"), "--storage", _opt(node, "--storage"), "--s3-endpoint", weed.endpoint, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **weed.env()})


def _xorbs(node: ServerHandle) -> set[str]:
    with psycopg.connect(_opt(node, "--db")) as conn:
        return {r[0] for r in conn.execute("SELECT hash FROM xorbs")}


def test_gc_across_two_nodes(cluster: tuple[ServerHandle, ServerHandle], weed: SeaweedFSHandle,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xetfs.server.stores.config import open_store

    a, b = cluster
    api_a, api_b = HfApi(endpoint=a.url, token=a.token), HfApi(endpoint=b.url, token=a.token)
    api_b.create_repo("t/stay")
    shared = make_bytes("float32", 4 * MiB, 41)
    api_b.upload_file(path_or_fileobj=shared, path_in_repo="s.bin", repo_id="t/stay")
    kept = _xorbs(a)
    api_a.create_repo("t/gone")
    for seed in (42, 43, 44):
        api_a.upload_file(path_or_fileobj=shared + make_bytes("float32", 4 * MiB, seed), path_in_repo="w.bin",
                          repo_id="t/gone")
    doomed = _xorbs(a) - kept
    assert len(doomed) >= 3
    notes = b"only t/gone has these notes\n"                             # a regular (inline) file, via node B
    api_b.upload_file(path_or_fileobj=notes, path_in_repo="notes.txt", repo_id="t/gone")
    api_a.delete_repo("t/gone")

    out = _gc(a, weed, "--grace", "0")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["xorbs"] == len(doomed)
    assert json.loads(out.stdout)["blobs"] == 1
    assert _xorbs(b) == kept
    for name, value in weed.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(_opt(a, "--storage"), weed.endpoint)
    assert store is not None
    try:
        assert [x for x in sorted(doomed) if store.exists(f"xorbs/{x}")] == []
        assert all(store.exists(f"xorbs/{x}") for x in kept)
        assert not store.exists(f"blobs/{git_blob_oid(notes)}")
    finally:
        store.close()
    for node in (a, b):
        p = hf_hub_download("t/stay", "s.bin", endpoint=node.url, token=a.token, cache_dir=tmp_path / node.url[-5:])
        assert Path(p).read_bytes() == shared

    with psycopg.connect(_opt(a, "--db"), autocommit=True) as conn:      # a live collector elsewhere
        conn.execute("INSERT INTO settings VALUES ('gc_lock', 'other-node:1 99999999999.0')")
    out = _gc(b, weed, "--grace", "0")
    assert out.returncode == 1 and "another xetfs gc holds the collector lock" in out.stderr
