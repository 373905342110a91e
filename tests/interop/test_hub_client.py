"""Unmodified huggingface_hub 2.4.0 (+ hf_xet) against a real ``xetfs serve``: repos, uploads (regular and
Xet), listings, snapshot/hf_hub_download, HfFileSystem ranged reads (server-side reconstruction),
deletions, branches, history, stale parent commits, datasets."""
from __future__ import annotations

from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.files import write_tree
from xetfs.testing.server import ServerHandle, make_bytes, running_server

hub = required("huggingface_hub")
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError  # noqa: E402

MiB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture
def srv(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running_server(tmp_path) as s:
        yield s


def _folder(root: Path) -> dict[str, bytes]:
    files = {"README.md": b"# demo\n", "config.json": b'{"hidden_size": 8}\n',
             "weights/big.bin": make_bytes("float32", 6 * MiB, 5), "weights/small.bin": b"\x00\x01" * 50,
             "data/deep/text.txt": make_bytes("text", 20_000, 6)}
    write_tree(root, files)
    return files


def test_upload_folder_list_and_download(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    url = api.create_repo("t/demo")
    assert url.repo_id == "t/demo"
    api.create_repo("t/demo", exist_ok=True)
    files = _folder(tmp_path / "src")
    api.upload_folder(folder_path=tmp_path / "src", repo_id="t/demo")
    assert sorted(api.list_repo_files("t/demo")) == sorted(files)
    entries = {e.path: e for e in api.list_repo_tree("t/demo", recursive=True)}
    assert entries["weights/big.bin"].xet_hash and entries["weights/big.bin"].lfs.size == 6 * MiB
    assert entries["weights/small.bin"].lfs is not None            # binary sample -> Xet
    assert getattr(entries["README.md"], "lfs", None) is None      # small text -> regular
    assert {e.path for e in api.list_repo_tree("t/demo", path_in_repo="data")} == {"data/deep"}
    info = api.repo_info("t/demo")
    assert len(info.sha) == 40 and {s.rfilename for s in info.siblings} == set(files)
    (big,) = api.get_paths_info("t/demo", ["weights/big.bin"])
    assert big.lfs.sha256 == entries["weights/big.bin"].lfs.sha256

    snap = Path(snapshot_download("t/demo", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c1"))
    for name, data in files.items():
        assert (snap / name).read_bytes() == data, name
    for name in ("weights/big.bin", "config.json"):
        p = hf_hub_download("t/demo", name, endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c2")
        assert Path(p).read_bytes() == files[name]

    fs = HfFileSystem(endpoint=srv.url, token=srv.token)
    with fs.open("t/demo/weights/big.bin", "rb") as f:
        f.seek(5_000_000)
        assert f.read(1000) == files["weights/big.bin"][5_000_000:5_001_000]
    assert fs.cat_file("t/demo/weights/big.bin", start=10, end=70_000) == files["weights/big.bin"][10:70_000]
    assert {p["name"] for p in fs.ls("t/demo/weights")} == {"t/demo/weights/big.bin", "t/demo/weights/small.bin"}
    assert srv.metrics()["xetfs_hub_resolve_bytes_served_total"] > 0


def test_deletions_branches_history_and_stale_parent(srv: ServerHandle) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/hist")
    first = api.upload_file(path_or_fileobj=b"a", path_in_repo="x/a.txt", repo_id="t/hist")
    api.upload_file(path_or_fileobj=b"b", path_in_repo="x/b.txt", repo_id="t/hist")
    api.upload_file(path_or_fileobj=b"c", path_in_repo="c.txt", repo_id="t/hist")
    api.delete_file("c.txt", repo_id="t/hist")
    assert sorted(api.list_repo_files("t/hist")) == ["x/a.txt", "x/b.txt"]
    api.delete_folder("x", repo_id="t/hist")
    assert api.list_repo_files("t/hist") == []
    commits = api.list_repo_commits("t/hist")
    assert len(commits) == 6 and commits[-1].title == "initial commit"
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"z", path_in_repo="z.txt", repo_id="t/hist", parent_commit=first.oid)
    assert err.value.response.status_code == 412
    api.create_branch("t/hist", branch="dev", revision=first.oid)
    refs = api.list_repo_refs("t/hist")
    assert {b.name: b.target_commit for b in refs.branches}["dev"] == first.oid
    api.upload_file(path_or_fileobj=b"d", path_in_repo="d.txt", repo_id="t/hist", revision="dev")
    assert sorted(api.list_repo_files("t/hist", revision="dev")) == ["d.txt", "x/a.txt"]
    assert api.list_repo_files("t/hist") == []


def test_datasets_and_repo_deletion(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/ds", repo_type="dataset")
    data = make_bytes("random", 2 * MiB, 7)
    api.upload_file(path_or_fileobj=data, path_in_repo="train/part-0.bin", repo_id="t/ds", repo_type="dataset")
    p = hf_hub_download("t/ds", "train/part-0.bin", repo_type="dataset", endpoint=srv.url, token=srv.token,
                        cache_dir=tmp_path / "c")
    assert Path(p).read_bytes() == data
    api.delete_repo("t/ds", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("t/ds", repo_type="dataset")
