"""xetfs's client against the official one, both ways, through one real ``xetfs serve``:

- ``xetfs upload`` then ``huggingface_hub.snapshot_download`` (hf_xet underneath) gives identical files;
- ``HfApi.upload_folder`` (hf_xet underneath) then ``xetfs download`` gives identical files;
- an ``xetfs upload`` of files hf_xet already uploaded sends no xorb bytes (global dedup across clients).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.cli.main import main
from xetfs.testing.deps import required
from xetfs.testing.files import tree_of, write_tree
from xetfs.testing.server import ServerHandle, make_bytes, running_server

huggingface_hub = required("huggingface_hub")
required("hf_xet")

XORB_BYTES_METRIC = "xetfs_cas_xorb_upload_bytes_total"
FILES = {"model.safetensors": make_bytes("float32", 3_000_000, 11), "weights/big.bin": make_bytes("random", 2_500_000, 12),
         "config.json": b'{"hidden": 8}\n', "notes/readme.txt": make_bytes("text", 20_000, 13)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


pytestmark = pytest.mark.usefixtures("hf_client_env")


def _xetfs(server: ServerHandle, *args: str) -> int:
    return main([*args, "--endpoint", server.url, "--token", server.token])


def test_xetfs_upload_then_snapshot_download(server: ServerHandle, tmp_path: Path) -> None:
    server.create_repo("org/xetfs-up")
    write_tree(tmp_path / "src", FILES)
    assert _xetfs(server, "upload", "org/xetfs-up", str(tmp_path / "src")) == 0
    out = huggingface_hub.snapshot_download("org/xetfs-up", endpoint=server.url, token=server.token,
                                            cache_dir=tmp_path / "cache", local_dir=tmp_path / "dst")
    assert tree_of(Path(out), skip={".cache"}) == FILES
    api = huggingface_hub.HfApi(endpoint=server.url, token=server.token)
    infos = {f.path: f for f in api.list_repo_tree("org/xetfs-up", recursive=True) if hasattr(f, "size")}
    assert infos["weights/big.bin"].xet_hash and infos["weights/big.bin"].lfs.size == 2_500_000


def test_upload_folder_then_xetfs_download(server: ServerHandle, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    server.create_repo("org/hf-up", repo_type="dataset")
    write_tree(tmp_path / "src", FILES)
    api = huggingface_hub.HfApi(endpoint=server.url, token=server.token)
    api.upload_folder(repo_id="org/hf-up", repo_type="dataset", folder_path=tmp_path / "src")
    assert _xetfs(server, "download", "datasets/org/hf-up", "--to", str(tmp_path / "dst")) == 0
    assert tree_of(tmp_path / "dst", skip={".cache"}) == FILES

    before = server.metrics()[XORB_BYTES_METRIC]
    capsys.readouterr()
    assert _xetfs(server, "upload", "org/hf-up", str(tmp_path / "src"), "--repo-type", "dataset",
                  "--path-in-repo", "again/", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["xorb_bytes_uploaded"] == 0 and server.metrics()[XORB_BYTES_METRIC] == before
    assert stats["deduped_bytes"] >= len(FILES["model.safetensors"]) + len(FILES["weights/big.bin"])
