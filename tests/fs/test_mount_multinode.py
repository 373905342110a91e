"""Issue 6 must-show, through the mount: two ``xetfs serve`` nodes over one SeaweedFS bucket and one PostgreSQL
database (xetfs.testing.services.two_nodes). huggingface_hub (hf_xet) uploads through node A; the real
``xetfs mount`` CLI mounts the repo through node B — then through ``--endpoint B,A`` (several endpoints) — and
every file reads back byte-identical with the right sizes in ``ls``/``stat``. The data bytes come from SeaweedFS
directly (presigned ranged GETs): neither node's ``xetfs_cas_data_bytes_served_total`` moves, while the bucket's
sent-bytes counter grows by at least what the mount fetched.
"""
from __future__ import annotations

import filecmp
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.mount import SERVED, STATS_NAME, mounted
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes
from xetfs.testing.deps import required

required("psycopg")
hub = required("huggingface_hub")

MiB = 1024 * 1024
RECONSTRUCTIONS = "xetfs_cas_reconstructions_total"
XORB_UPLOADS = "xetfs_cas_xorb_upload_bytes_total"

pytestmark = [pytest.mark.fuse, pytest.mark.timeout(180)]

FILES = {
    "model.safetensors": make_bytes("random", 17 * MiB, 601),        # >= 16 MiB: several fetch ranges
    "nested/deeper/weights.bin": make_bytes("float32", 3 * MiB, 602),
    "nested/noise.bin": make_bytes("random", MiB + 12345, 603),
    "config.json": b'{"hidden_size": 8, "layers": 2}\n',
}


def reconstructions(*nodes: ServerHandle) -> float:
    return sum(node.metrics()[RECONSTRUCTIONS] for node in nodes)


def sent_at_least(weed: SeaweedFSHandle, target: float, timeout_s: float = 10.0) -> float:
    """The bucket's sent-bytes counter once it reaches ``target`` (a response's bytes may be counted just
    after the client has them), or its last value."""
    deadline = time.monotonic() + timeout_s
    while (sent := weed.sent_bytes()) < target and time.monotonic() < deadline:
        time.sleep(0.05)
    return sent


def check_tree(root: Path, src: Path) -> None:
    """Every file listed with its size, read byte-identical, and nothing else (the stats file aside)."""
    listed = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != STATS_NAME}
    assert listed == set(FILES), listed
    assert sorted(os.listdir(root / "nested")) == ["deeper", "noise.bin"]
    for name, data in FILES.items():
        st = os.stat(root / name)
        assert st.st_size == len(data), name
        assert filecmp.cmp(root / name, src / name, shallow=False), f"{name} differs"


def test_mount_through_node_b_reads_from_the_bucket(fuse: None, hf_client_env: None, weed: SeaweedFSHandle,
                                                    pg: PostgresHandle, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name, data in FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    with two_nodes(weed, pg, tmp_path) as (a, b):
        api_a = hub.HfApi(endpoint=a.url, token=a.token)
        api_a.create_repo("t/multi-mount")
        api_a.upload_folder(folder_path=src, repo_id="t/multi-mount")
        assert a.metrics()[XORB_UPLOADS] > 0 and b.metrics()[XORB_UPLOADS] == 0, "the upload went through A"
        xet_paths = {e.path for e in api_a.list_repo_tree("t/multi-mount", recursive=True)
                     if getattr(e, "xet_hash", None)}
        assert "model.safetensors" in xet_paths and "nested/deeper/weights.bin" in xet_paths, xet_paths

        # One endpoint (node B), then several (B first, A as the alternative); a fresh cache for each.
        for i, (endpoint, readers) in enumerate(((b.url, [b]), (f"{b.url},{a.url}", [a, b]))):
            before_recon, before_a = reconstructions(*readers), reconstructions(a)
            before_sent = weed.sent_bytes()
            nodes = SimpleNamespace(url=endpoint, token=a.token)
            with mounted(nodes, "t/multi-mount", tmp_path / f"mnt{i}", args=["--read-only"]) as m:
                check_tree(m.path, src)
                fetched = m.stats()["bytes_fetched"]
            assert fetched >= len(FILES["model.safetensors"]), "the mount fetched the data over the network"
            assert reconstructions(*readers) > before_recon, f"{endpoint}: the reconstructions came from the node"
            if readers == [b]:
                assert reconstructions(a) == before_a, "a mount given only B asks B alone"
            assert a.metrics()[SERVED] == 0 and b.metrics()[SERVED] == 0, "no data bytes through a node"
            sent = sent_at_least(weed, before_sent + fetched)
            assert sent - before_sent >= fetched, "SeaweedFS served the bytes the mount fetched"
